"""The ncnn target behind the backend seam: NAME.param + NAME.bin (+ NAME.table when int8, the
C++ example when asked), run by the ncnn Python package (`runner.NcnnRunner`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ... import values
from ...option import Option
from ..interface import Backend, EvalVariant, Runner, RunSettings, Written


@dataclass
class _Prepared:
    """What `prepare` checked: the int8 calibration images and the example's program name."""

    calibration_images: list[str]
    example: str | None


class NcnnBackend(Backend):
    name = "ncnn"
    runtimes = ("ncnn",)
    extensions = ("param", "bin")
    options = (
        Option("ncnn_fp16", False, values.flag, "store ncnn conv weights as fp16",
               flag="--ncnn-fp16", kind="switch", commands=("convert",),
               needs="stores the ncnn model's convolution weights as fp16"),
        Option("ncnn_example", False, values.flag,
               "also write NAME_example.cpp + CMakeLists.txt: a C++ program running the ncnn "
               "model on an image", flag="--ncnn-example", kind="switch", commands=("convert",),
               needs="writes a C++ program for the ncnn model"),
        Option("ncnn_int8", (), values.calibration,
               "write the ncnn model int8, calibrated on these images (an image or a folder; "
               "repeat to add more)", flag="--ncnn-int8", kind="append", metavar="CALIB",
               commands=("convert", "verify"), needs="quantises the ncnn model"),
    )
    eval_variants = (
        EvalVariant("ncnn-fp16", {"ncnn_fp16": True}),
        EvalVariant("ncnn-int8", {}, calibration_option="ncnn_int8"),
    )


    def prepare(self, options, name: str) -> _Prepared:
        example = None
        if options.ncnn_example and name is not None:
            from .example import program_name

            example = program_name(name)
        return _Prepared(calibration_images(options), example)

    def approximations(self, options) -> list[dict]:
        if not options.ncnn_fp16:
            return []
        return [{"what": "ncnn convolution and inner-product weights stored as fp16 (--ncnn-fp16)",
                 "where": "every Convolution/ConvolutionDepthWise/InnerProduct",
                 "runtimes": ["ncnn"]}]

    def write(self, graph, staging: Path, name: str, options,
              prepared: _Prepared) -> Written:
        from .emit import write_ncnn

        int8 = _calibration(graph, prepared.calibration_images, options)
        info = write_ncnn(graph, staging, name, fp16=options.ncnn_fp16,
                          skip=options.skip_passes, int8=int8)
        section = {"layer_count": info.get("layer_count"), "fp16": options.ncnn_fp16,
                   "int8": bool(options.ncnn_int8), "rewrites": info.get("rewrites", {})}
        if prepared.example:
            section["example"] = prepared.example
        return Written(files={"param": info["param"], "bin": info["bin"]}, section=section,
                       approximations=list(info.get("approximations", [])),
                       choices=list(info.get("choices", [])))

    def finish(self, manifest: dict, staging: Path, name: str, prepared: _Prepared) -> None:
        """NAME_example.cpp + CMakeLists.txt, generated from the manifest: a family's own
        program where it registered one (`example.register_example`), else a detector's
        (naming a `detections` blob) draws its boxes, a plain network's prints its outputs."""
        if not prepared.example:
            return
        from .example import EXAMPLE_WRITERS, example_files
        from .example_plain import plain_example_files

        # a headless model's program calls its C tail (`ssdconv.headless.example`)
        write = EXAMPLE_WRITERS.get("headless" if manifest.get("headless")
                                    else manifest.get("family", ""))
        if write is None:
            write = example_files if "detections" in manifest["blobs"] else plain_example_files
        for fname, text in write(manifest, f"{name}.param", f"{name}.bin",
                                         prepared.example, f"{name}.json").items():
            (staging / fname).write_text(text, encoding="utf-8")

    def runners(self, files: dict[str, str], manifest: dict, settings: RunSettings,
                runtimes: tuple[str, ...] | None = None) -> list[Runner]:
        from .runner import NcnnRunner

        return [NcnnRunner(files["param"], files["bin"], manifest, settings.threads,
                           exact=not settings.deployed)]


def calibration_images(options) -> list[str]:
    """The images --ncnn-int8 names, listed and checked before any work (none without it)."""
    if not options.ncnn_int8:
        return []
    from ...verify.images import list_images

    return list_images(list(options.ncnn_int8))


def _calibration(graph, images: list[str], options):
    """The int8 calibration the ncnn writer runs on its float model (None without int8)."""
    if not images:
        return None
    from .calibrate import NcnnCalibration

    ((input_blob, shape),) = graph.inputs.items()
    return NcnnCalibration(images, graph.preprocess.as_dict(), input_blob, shape,
                           sources=options.ncnn_int8)


BACKEND = NcnnBackend()
