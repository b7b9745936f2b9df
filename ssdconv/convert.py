"""The conversion pipeline: recognise the head, walk the backbone, synthesise the tail, run the
passes, prove the head's constants, emit, and write the manifest, all or nothing.

Everything about the detector head is asked of the head its family recognised
(`ssdconv.family`); this module does not know which family it converts."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .errors import UserError
from .family import recognise
from .family.interface import Head, Proof
from .frontend.registry import ConvertContext
from .frontend.walk import walk
from .ir.graph import Graph
from .ir.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from .mxnet.load import LoadedModel
from .passes.pipeline import run_passes

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


def build_ir(model: LoadedModel, options: Options) -> tuple[Graph, Head, dict]:
    """Everything up to, not including, writing files."""
    source = model.graph
    head = recognise(source)
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


def _manifest(model: LoadedModel, head: Head, graph: Graph, proof: Proof, passes: dict,
              approximations: list[dict], choices: list[str]) -> dict:
    """The generic keys around the head's own section (`Head.manifest_section`)."""
    n = head.num_classes
    classes = model.classes or [f"class{i}" for i in range(n)]
    if len(classes) != n:
        raise UserError(f"{len(classes)} class names given but the model predicts "
                        f"{n} classes; pass --classes with {n} names")
    section = head.manifest_section(proof)
    pre = graph.preprocess
    return {
        "ssdconv_version": __version__,
        "name": model.name,
        "source": model.graph.origin,
        "family": head.family.name,
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
    options = options or Options()
    graph, head, _ = build_ir(model, options)
    return Conversion(model=model, head=head, graph=graph, manifest=manifest, options=options,
                      files=files, proof=head.prove())


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
    proof = head.prove()
    approximations: list[dict] = list(proof.approximations)
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

            info = write_ncnn(graph, staging, name, fp16=options.ncnn_fp16)
            choices += list(info.get("choices", []))
            extra["ncnn"] = {"layer_count": info.get("layer_count"), "fp16": options.ncnn_fp16}
        manifest = _manifest(model, head, graph, proof, passes, approximations, choices)
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
    return Conversion(model=model, head=head, graph=graph, manifest=manifest, options=options,
                      files=files, proof=proof)
