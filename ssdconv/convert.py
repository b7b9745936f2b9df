"""The conversion pipeline: match the head, walk the backbone, synthesise the tail, run the
passes, prove the priors, emit, and write the manifest, all or nothing."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import __version__, values
from .errors import UserError
from .fileio import StagedDirectory
from .frontend.registry import ConvertContext
from .frontend.walk import walk
from .ir.graph import Graph
from .ir.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from .mxnet.load import LoadedModel
from .passes.pipeline import run_passes
from .ssd.anchors import prior_error
from .ssd.match import HeadMatch, match_head
from .ssd.priorbox import PRIOR_TOL
from .ssd.synth import BLOBS, name_layers_after_blobs, synthesise_tail

MANIFEST_KEYS = ("input_shape", "channel_order", "mean", "scale", "classes", "label_offset",
                 "blobs", "detection_output")  # what checking an existing conversion reads


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
    ncnn_int8: tuple[str, ...] = ()  # calibration images/folders: write the ncnn model int8

    def checked(self) -> Options:
        """These options with every value checked as the CLI checks it (API callers too)."""
        field_checks = {"targets": values.targets, "source_mean": values.source_mean,
                        "source_std": values.source_std,
                        "source_channel_order": values.channel_order, "relu6": values.relu6,
                        "skip_passes": values.skip_passes, "ncnn_fp16": values.flag,
                        "ncnn_int8": values.calibration}
        return replace(self, **{key: values.check(fn, getattr(self, key), f"option {key}")
                                for key, fn in field_checks.items()})


@dataclass
class Conversion:
    """A converted model in memory: the IR, the proven head, the manifest to publish, and the
    options it was made with (the check's reference preprocessing comes from them)."""

    model: LoadedModel
    head: HeadMatch
    graph: Graph
    manifest: dict
    options: Options
    files: dict[str, str] = field(default_factory=dict)


def build_ir(model: LoadedModel, options: Options) -> tuple[Graph, HeadMatch, dict]:
    """Everything up to, not including, writing files."""
    source = model.graph
    head = match_head(source)
    adapter = model.adapter
    graph = walk(source, [head.loc_concat.index, head.conf_softmax.index], adapter)
    ctx = ConvertContext(source)
    if adapter is not None:
        ctx.aliases[adapter.end] = source.input_name
    synthesise_tail(graph, head, ctx.blob)
    if adapter is not None:  # the graph normalises raw RGB pixels itself
        graph.preprocess = Preprocess.from_source(adapter.mean, adapter.std, "RGB")
    else:
        graph.preprocess = Preprocess.from_source(options.source_mean, options.source_std,
                                                  options.source_channel_order)
    done = run_passes(graph, options.skip_passes)
    name_layers_after_blobs(graph)
    return graph, head, done


def prove_priors(head: HeadMatch) -> dict:
    """Max prior error per level: OpenCV/ncnn float arithmetic and caffe-ssd's int-cast one."""
    spec = head.spec
    floats = [prior_error(lv, spec.image_h, spec.image_w, int_cast=False) for lv in spec.levels]
    casts = [prior_error(lv, spec.image_h, spec.image_w, int_cast=True) for lv in spec.levels]
    if max(floats) > PRIOR_TOL:
        worst = int(np.argmax(floats))
        raise UserError(f"anchor level {worst}: derived PriorBox parameters reproduce the "
                        f"model's anchors only to {max(floats):.3g} (contract {PRIOR_TOL:g}); "
                        "the anchor layout is not expressible")
    return {"float_max_error": max(floats), "caffe_int_cast_max_error": max(casts)}


def _class_names(model: LoadedModel, head: HeadMatch) -> list[str]:
    spec = head.spec
    classes = model.classes or [f"class{i}" for i in range(spec.num_classes)]
    if len(classes) != spec.num_classes:
        raise UserError(f"{len(classes)} class names given but the model predicts "
                        f"{spec.num_classes} classes; pass --classes with {spec.num_classes} names")
    return list(values.check(values.class_names, classes, "class names"))


def _manifest(model: LoadedModel, head: HeadMatch, graph: Graph, proof: dict, passes: dict,
              options: Options, approximations: list[dict], choices: list[str]) -> dict:
    spec = head.spec
    classes = _class_names(model, head)
    pre = graph.preprocess
    return {
        "ssdconv_version": __version__,
        "name": model.name,
        "source": model.graph.origin,
        "notes": [model.weights_line, *model.notes],
        "input_shape": list(graph.inputs[BLOBS["input"]]),
        **pre.as_dict(),
        "classes": classes,
        "label_offset": 1,
        "blobs": dict(BLOBS),
        "approximations": approximations,
        "choices": choices,
        "detection_output": {
            "nms_threshold": spec.nms.nms_threshold, "top_k": spec.nms.topk,
            "keep_top_k": spec.nms.post_nms, "confidence_threshold": spec.nms.class_thresh,
            "variance": list(spec.decoder.stds),
        },
        "priors": {
            "levels": [{"feature": [lv.height, lv.width], "anchors_per_cell": lv.per_cell,
                        "step": [lv.step_h, lv.step_w], "offset": lv.offset,
                        "groups": len(lv.groups),
                        "int_scale": [g.int_scale for g in lv.groups]} for lv in spec.levels],
            "proof": proof,
        },
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
    graph, head, _ = build_ir(model, options)
    return Conversion(model=model, head=head, graph=graph, manifest=manifest, options=options,
                      files=files)


def _output_stem(name: str | None, model: LoadedModel) -> str:
    """The checked file stem: the name asked for, else the model's own name."""
    if name is not None:
        return values.check(values.file_stem, name, "output name")
    try:
        return values.file_stem(model.name)
    except values.BadValue as exc:
        raise UserError(f"the model's name {model.name!r} cannot name the output files; pass "
                        f"--name, which {exc}") from None


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
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"output path {out} is a file, not a directory; pass -o DIR")
    calib_images = calibration_images(options)
    graph, head, passes = build_ir(model, options)
    proof = prove_priors(head)
    _class_names(model, head)  # a wrong class count is refused before anything is written
    approximations: list[dict] = []
    if proof["caffe_int_cast_max_error"] > PRIOR_TOL:
        approximations.append({
            "what": "caffe-ssd casts PriorBox sizes to int; no integer scale k <= 1000 makes "
                    "these sizes integral",
            "where": "PriorBox", "max_prior_error": proof["caffe_int_cast_max_error"],
            "runtimes": ["caffe-ssd"]})
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
        manifest = _manifest(model, head, graph, proof, passes, options, approximations, choices)
        manifest.update(extra)
        written = sorted(p.name for p in staging.iterdir() if not p.name.startswith("."))
        manifest["files"] = written + [f"{name}.json"]
        (staging / f"{name}.json").write_text(json.dumps(manifest, indent=2) + "\n")
        published = stage.publish(manifest["files"])
    files = {p.name.rsplit(".", 1)[1]: str(p) for p in published}
    return Conversion(model=model, head=head, graph=graph, manifest=manifest, options=options,
                      files=files)
