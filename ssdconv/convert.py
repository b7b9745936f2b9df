"""The conversion pipeline: match the head, walk the backbone, synthesise the tail, run the
passes, prove the priors, emit, and write the manifest, all or nothing."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .backend.ncnn.fuse import REWRITE_NAMES as NCNN_REWRITES
from .errors import UserError
from .frontend.registry import ConvertContext
from .frontend.walk import walk
from .ir.graph import Graph
from .ir.preprocess import Preprocess
from .mxnet.load import LoadedModel
from .passes.pipeline import run_passes
from .ssd.anchors import PRIOR_TOL, prior_error
from .ssd.match import HeadMatch, match_head
from .ssd.synth import BLOBS, synthesise_tail

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
TARGETS = ("caffe", "ncnn")


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


@dataclass
class Conversion:
    """A converted model in memory: the IR, the proven head, and the manifest to publish."""

    model: LoadedModel
    head: HeadMatch
    graph: Graph
    manifest: dict
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
    done = run_passes(graph, options.skip_passes, backend_passes=NCNN_REWRITES)
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


def _manifest(model: LoadedModel, head: HeadMatch, graph: Graph, proof: dict, passes: dict,
              options: Options, approximations: list[dict], choices: list[str]) -> dict:
    spec = head.spec
    classes = model.classes or [f"class{i}" for i in range(spec.num_classes)]
    if len(classes) != spec.num_classes:
        raise UserError(f"{len(classes)} class names given but the model predicts "
                        f"{spec.num_classes} classes; pass --classes with {spec.num_classes} names")
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
    path = Path(manifest_path)
    if not path.is_file():
        raise UserError(f"manifest {path} does not exist; pass the NAME.json written by convert")
    try:
        manifest = json.loads(path.read_text())
        listed = manifest["files"]
    except (ValueError, KeyError):
        raise UserError(f"{path} is not an ssdconv manifest (no 'files' list)") from None
    files = {}
    for fname in listed:
        full = path.parent / fname
        if not full.is_file():
            raise UserError(f"{full} is listed in {path.name} but missing")
        files[fname.rsplit(".", 1)[1]] = str(full)
    graph, head, _ = build_ir(model, options or Options())
    return Conversion(model=model, head=head, graph=graph, manifest=manifest, files=files)


def convert(model: LoadedModel, out_dir: str | os.PathLike, options: Options | None = None,
            name: str | None = None) -> Conversion:
    """Convert a loaded model and write `out_dir/NAME.*` for each target."""
    options = options or Options()
    unknown = set(options.targets) - set(TARGETS)
    if unknown:
        raise UserError(f"unknown target(s) {sorted(unknown)}; choose from caffe, ncnn, all")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"output path {out} is a file, not a directory; pass -o DIR")
    graph, head, passes = build_ir(model, options)
    proof = prove_priors(head)
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
    name = name or model.name
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".ssdconv-", dir=out))
    try:
        choices: list[str] = []
        extra: dict = {}
        if "caffe" in options.targets:
            from .backend.caffe.emit import write_caffe

            info = write_caffe(graph, staging, name, relu6=options.relu6)
            choices += list(info.get("choices", []))
        if "ncnn" in options.targets:
            from .backend.ncnn.emit import write_ncnn

            info = write_ncnn(graph, staging, name, fp16=options.ncnn_fp16,
                              skip=options.skip_passes)
            choices += list(info.get("choices", []))
            extra["ncnn"] = {"layer_count": info.get("layer_count"), "fp16": options.ncnn_fp16,
                             "rewrites": info.get("rewrites", {})}
        manifest = _manifest(model, head, graph, proof, passes, options, approximations, choices)
        manifest.update(extra)
        written = sorted(p.name for p in staging.iterdir() if not p.name.startswith("."))
        manifest["files"] = written + [f"{name}.json"]
        (staging / f"{name}.json").write_text(json.dumps(manifest, indent=2) + "\n")
        files = {}
        for fname in manifest["files"]:
            os.replace(staging / fname, out / fname)
            files[fname.rsplit(".", 1)[1]] = str(out / fname)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Conversion(model=model, head=head, graph=graph, manifest=manifest, files=files)
