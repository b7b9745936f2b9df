"""The conversion pipeline: recognise the head, walk the backbone, synthesise the tail, run the
passes, prove the head's constants, emit, and write the manifest, all or nothing.

Everything about the detector head is asked of the head its family recognised
(`ssdconv.family`); this module does not know which family it converts."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import __version__, values
from .errors import UserError
from .family import families, recognise
from .family.interface import Head, Proof
from .fileio import StagedDirectory
from .frontend.registry import ConvertContext
from .frontend.walk import walk
from .ir.graph import Graph
from .ir.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from .mxnet.load import LoadedModel
from .passes.pipeline import run_passes

# what checking an existing conversion reads (and the blobs of the head's manifest section)
MANIFEST_KEYS = ("input_shape", "channel_order", "mean", "scale", "classes", "label_offset",
                 "blobs")


@dataclass
class Options:
    """Conversion settings (CLI flags and config files end up here)."""

    targets: tuple[str, ...] = ("caffe",)
    source_mean: tuple[float, float, float] = IMAGENET_MEAN
    source_std: tuple[float, float, float] = IMAGENET_STD
    source_channel_order: str = "RGB"
    relu6: str = "compose"
    skip_passes: tuple[str, ...] = ()
    ncnn_fp16: bool = False
    ncnn_example: bool = False
    ncnn_int8: tuple[str, ...] = ()  # calibration images/folders: write the ncnn model int8
    yolo_head: str = "exact"  # a head option (DetectorFamily.head_options): YOLOv3's ncnn head

    def checked(self) -> Options:
        """These options with every value checked as the CLI checks it (API callers too)."""
        field_checks = {"targets": values.targets, "source_mean": values.source_mean,
                        "source_std": values.source_std,
                        "source_channel_order": values.channel_order, "relu6": values.relu6,
                        "skip_passes": values.skip_passes, "ncnn_fp16": values.flag,
                        "ncnn_example": values.flag, "ncnn_int8": values.calibration,
                        "yolo_head": values.yolo_head}
        return replace(self, **{key: values.check(fn, getattr(self, key), f"option {key}")
                                for key, fn in field_checks.items()})


@dataclass
class Conversion:
    """A converted model in memory: the IR, the recognised head, the manifest to publish, the
    options it was made with (the check's reference preprocessing comes from them) and what the
    head proved."""

    model: LoadedModel
    head: Head
    graph: Graph
    manifest: dict
    options: Options
    files: dict[str, str] = field(default_factory=dict)
    proof: Proof | None = None


HEAD_OPTION_FLAGS = {"yolo_head": "--yolo-head"}  # head option -> its CLI flag, for messages


def configure_head(head: Head, options: Options) -> None:
    """Give the head its options (`DetectorFamily.head_options`); an option another family
    owns, set away from its default, is refused: it would be silently ignored."""
    own = set(head.family.head_options)
    defaults = Options()
    for family in families():
        for name in family.head_options:
            if name not in own and getattr(options, name) != getattr(defaults, name):
                raise UserError(f"{HEAD_OPTION_FLAGS.get(name, name)} applies to {family.kind}; "
                                f"this model is {head.family.kind}: drop it")
    head.configure(options)


def head_options(head: Head, options: Options) -> dict:
    """The head options a conversion was made with (the manifest's `head_options`)."""
    return {name: getattr(options, name) for name in head.family.head_options}


def build_ir(model: LoadedModel, options: Options) -> tuple[Graph, Head, dict]:
    """Everything up to, not including, writing files."""
    source = model.graph
    head = recognise(source)
    configure_head(head, options)
    adapter = model.adapter
    graph = walk(source, head.walk_roots, adapter)
    ctx = ConvertContext(source)
    if adapter is not None:
        ctx.aliases[adapter.end] = source.input_name
    head.synthesise(graph, ctx.blob)
    if adapter is not None:  # the graph normalises raw RGB pixels itself
        graph.preprocess = Preprocess.from_source(adapter.mean, adapter.std, "RGB")
    else:
        graph.preprocess = Preprocess.from_source(options.source_mean, options.source_std,
                                                  options.source_channel_order)
    done = run_passes(graph, options.skip_passes)
    head.after_passes(graph)
    return graph, head, done


def _class_names(model: LoadedModel, head: Head) -> list[str]:
    n = head.num_classes
    classes = model.classes or [f"class{i}" for i in range(n)]
    if len(classes) != n:
        raise UserError(f"{len(classes)} class names given but the model predicts "
                        f"{n} classes; pass --classes with {n} names")
    return list(values.check(values.class_names, classes, "class names"))


def _manifest(model: LoadedModel, head: Head, graph: Graph, proof: Proof, passes: dict,
              approximations: list[dict], choices: list[str], options: Options) -> dict:
    """The generic keys around the head's own section (`Head.manifest_section`)."""
    classes = _class_names(model, head)
    section = head.manifest_section(proof)
    pre = graph.preprocess
    return {
        "ssdconv_version": __version__,
        "name": model.name,
        "source": model.graph.origin,
        "family": head.family.name,
        "head_options": head_options(head, options),
        "notes": [model.weights_line, *model.notes],
        "input_shape": list(graph.inputs[section["blobs"]["input"]]),
        **pre.as_dict(),
        "classes": classes,
        "label_offset": section.pop("label_offset"),
        "blobs": section.pop("blobs"),
        "approximations": approximations,
        "choices": choices,
        **section,
        "passes": passes,
        "layer_counts": graph.op_counts(),
    }


def load_conversion(model: LoadedModel, manifest_path: str | os.PathLike,
                    options: Options | None = None) -> Conversion:
    """An existing conversion (its manifest and the files beside it) paired with the model it
    came from, for checking without writing anything."""
    path = Path(values.check(values.input_file, str(manifest_path), "manifest"))
    try:
        manifest = json.loads(path.read_text())
        listed = manifest["files"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path} is not an ssdconv manifest (no 'files' list)") from None
    if not isinstance(listed, list) or not all(
            isinstance(f, str) and "." in f and os.path.basename(f) == f for f in listed):
        raise UserError(f"{path} is not an ssdconv manifest ('files' must list file names "
                        "beside it)")
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        raise UserError(f"{path} is not a complete ssdconv manifest (no {', '.join(missing)}); "
                        "convert again")
    files = {}
    for fname in listed:
        full = path.parent / fname
        if not full.is_file():
            raise UserError(f"{full} is listed in {path.name} but missing")
        files[fname.rsplit(".", 1)[1]] = str(full)
    options = options or Options()
    written = tuple(t for t, ext in (("caffe", "prototxt"), ("ncnn", "param")) if ext in files)
    recorded = manifest.get("head_options", {})
    if isinstance(recorded, dict):  # the head is rebuilt as it was converted, for its files
        options = replace(options, targets=written or options.targets,
                          **{k: v for k, v in recorded.items() if k in HEAD_OPTION_FLAGS})
        options = options.checked()
    graph, head, _ = build_ir(model, options)
    proof = head.prove()
    family = manifest.get("family", head.family.name)  # manifests before the seam had none
    if family != head.family.name:
        raise UserError(f"{path} is the manifest of a {family} conversion, but the model is "
                        f"{head.family.kind}; pass the manifest written for this model")
    roles = [r for r in head.manifest_section(proof)["blobs"]
             if not isinstance(manifest["blobs"], dict) or r not in manifest["blobs"]]
    if roles:
        raise UserError(f"{path} is not a complete ssdconv manifest (no blobs {', '.join(roles)})"
                        "; convert again")
    return Conversion(model=model, head=head, graph=graph, manifest=manifest, options=options,
                      files=files, proof=proof)


def _output_stem(name: str | None, model: LoadedModel) -> str:
    """The checked file stem: the name asked for, else the model's own name."""
    if name is not None:
        return values.check(values.file_stem, name, "output name")
    try:
        return values.file_stem(model.name)
    except values.BadValue as exc:
        raise UserError(f"the model's name {model.name!r} cannot name the output files; pass "
                        f"--name, which {exc}") from None


def _example_program(options: Options, name: str) -> str | None:
    """The C++ example's program name when --ncnn-example is asked for (checked before any
    work: it needs the ncnn target and a stem CMake accepts), else None."""
    if not options.ncnn_example:
        return None
    if "ncnn" not in options.targets:
        raise UserError("--ncnn-example writes a C++ program for the ncnn model: add "
                        "--target ncnn (or all)")
    from .backend.ncnn.example import program_name

    return program_name(name)


def _write_example(manifest: dict, staging: Path, name: str, program: str) -> None:
    """NAME_example.cpp + CMakeLists.txt, generated from the manifest, into the staging folder
    (published with the model, listed in the manifest's files)."""
    from .backend.ncnn.example import example_files

    for fname, text in example_files(manifest, f"{name}.param", f"{name}.bin", program,
                                     f"{name}.json").items():
        (staging / fname).write_text(text, encoding="utf-8")
def calibration_images(options: Options) -> list[str]:
    """The images --ncnn-int8 names, listed and checked before any work (none without it)."""
    if not options.ncnn_int8:
        return []
    if "ncnn" not in options.targets:
        raise UserError("--ncnn-int8 quantises the ncnn model: add --target ncnn (or all)")
    from .verify.images import list_images

    return list_images(list(options.ncnn_int8))


def _calibration(graph: Graph, images: list[str], options: Options):
    """The int8 calibration the ncnn writer runs on its float model (None without int8)."""
    if not images:
        return None
    from .verify.calibrate import NcnnCalibration

    ((input_blob, shape),) = graph.inputs.items()
    return NcnnCalibration(images, graph.preprocess.as_dict(), input_blob, shape,
                           sources=options.ncnn_int8)


def convert(model: LoadedModel, out_dir: str | os.PathLike, options: Options | None = None,
            name: str | None = None) -> Conversion:
    """Convert a loaded model and write `out_dir/NAME.*` for each target.

    All or nothing: the files are prepared in a hidden staging directory inside `out_dir` and
    published together at the end, so a failure or an interruption leaves an earlier conversion
    there byte-identical, and two conversions into one folder never mix their files."""
    options = (options or Options()).checked()
    name = _output_stem(name, model)
    example = _example_program(options, name)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"output path {out} is a file, not a directory; pass -o DIR")
    calib_images = calibration_images(options)
    graph, head, passes = build_ir(model, options)
    proof = head.prove()
    _class_names(model, head)  # a wrong class count is refused before anything is written
    approximations: list[dict] = list(proof.approximations) + head.approximations()
    if options.ncnn_fp16 and "ncnn" in options.targets:
        approximations.append({
            "what": "ncnn convolution weights stored as fp16 (--ncnn-fp16)",
            "where": "every Convolution/ConvolutionDepthWise", "runtimes": ["ncnn"]})
    with StagedDirectory(out) as stage:
        staging = stage.path
        choices: list[str] = []
        extra: dict = {}
        if "caffe" in options.targets:
            from .backend.caffe.emit import write_caffe

            info = write_caffe(graph, staging, name, relu6=options.relu6)
            choices += list(info.get("choices", []))
        if "ncnn" in options.targets:
            from .backend.ncnn.emit import write_ncnn

            int8 = _calibration(graph, calib_images, options)
            info = write_ncnn(graph, staging, name, fp16=options.ncnn_fp16,
                              skip=options.skip_passes, int8=int8)
            choices += list(info.get("choices", []))
            approximations += info.get("approximations", [])
            extra["ncnn"] = {"layer_count": info.get("layer_count"), "fp16": options.ncnn_fp16,
                             "int8": bool(options.ncnn_int8),
                             "rewrites": info.get("rewrites", {})}
            if example:
                extra["ncnn"]["example"] = example
        manifest = _manifest(model, head, graph, proof, passes, approximations, choices,
                             options)
        manifest.update(extra)
        if example:
            _write_example(manifest, staging, name, example)
        written = sorted(p.name for p in staging.iterdir() if not p.name.startswith("."))
        manifest["files"] = written + [f"{name}.json"]
        (staging / f"{name}.json").write_text(json.dumps(manifest, indent=2) + "\n")
        published = stage.publish(manifest["files"])
    files = {p.name.rsplit(".", 1)[1]: str(p) for p in published}
    return Conversion(model=model, head=head, graph=graph, manifest=manifest, options=options,
                      files=files, proof=proof)
