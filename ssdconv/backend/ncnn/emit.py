"""The ncnn emitter: IR graph -> NAME.param + NAME.bin, written together or not at all.

Why in this order: the graph is validated, then every node is converted (and every refusal
collected) before a byte is written, so an unsupported model reports all its problems at once and
leaves no files; an IR breaking its contract is an internal error, as in the caffe backend (the
rule is in `ssdconv.backend`). Graph inputs without an Input node get one
(`Graph.with_input_nodes`, as for caffe). Blob
names are the IR's, so users extract the same names from ncnn as from Caffe. ncnn lets a blob be
read by one layer only (a second reader loads fine but `extract` later fails with -100), so each
blob with several readers gets a `Split` whose copies are named `<blob>_splitncnn_<i>`; the
original name stays the producer's output and remains extractable.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...fileio import AtomicOutputs
from ...ir.graph import Graph
from ...ir.validate import validate
from ...registry import NameAllocator
from .. import Refusals, Refused
from . import tables
from .convert import CONVERTERS, Context
from .fuse import fuse_layers
from .int8 import Calibration, make_int8, scale_table
from .writer import NcnnLayer, format_bin, format_param


def insert_splits(layers: list[NcnnLayer]) -> list[NcnnLayer]:
    """Give every blob read more than once a Split right after its producer; returns new list."""
    readers: dict[str, list[tuple[NcnnLayer, int]]] = {}
    for layer in layers:
        for slot, blob in enumerate(layer.inputs):
            readers.setdefault(blob, []).append((layer, slot))
    fresh = NameAllocator({b for x in layers for b in (*x.inputs, *x.outputs)}
                          | {x.name for x in layers}).fresh
    out: list[NcnnLayer] = []
    for layer in layers:
        out.append(layer)
        for blob in layer.outputs:
            uses = readers.get(blob, [])
            if len(uses) < 2:
                continue
            copies = [fresh(f"{blob}_splitncnn_{i}") for i in range(len(uses))]
            for (reader, slot), copy in zip(uses, copies, strict=True):
                reader.inputs[slot] = copy
            name = fresh(f"splitncnn_{blob}")
            out.append(NcnnLayer(tables.SPLIT_TYPE, name, [blob], copies))
    return out


def build_layers(graph: Graph) -> tuple[list[NcnnLayer], list[str]]:
    """Convert every node; raise `UnsupportedError` listing all refusals. Returns (layers,
    choices), choices being one line per non-obvious but exact decision."""
    graph = graph.with_input_nodes()
    validate(graph, after="the passes (ncnn backend)")
    ctx = Context(graph)
    layers: list[NcnnLayer] = []
    refusals = Refusals("the ncnn backend")
    for node in graph:
        with refusals.of(node):
            convert = CONVERTERS.get(node.op)
            if convert is None:
                raise Refused("no ncnn converter for this op")
            layers.extend(convert(node, ctx))
    refusals.raise_any()
    return insert_splits(layers), ctx.choices


def write_ncnn(graph: Graph, out_dir: str | os.PathLike, name: str, fp16: bool = False,
               skip: tuple[str, ...] = (), int8: Calibration | None = None) -> dict:
    """Write `name`.param and `name`.bin into `out_dir` atomically.

    fp16 stores float convolution weights as float16 (ncnn flag 0x01306B47); everything else
    stays float32. ncnnoptimize's rewrites (`fuse.REWRITES`) run unless named in `skip`; the
    graph's inputs and outputs stay extractable. With `int8`, a calibration of the float model,
    the convolutions are written int8 (int8.py) and `name`.table holds their scales in
    ncnn2table's format. Returns {"param", "bin", "layer_count", "choices", "rewrites",
    "approximations"}, rewrites being {name: how many times it fired}.
    """
    layers, choices = build_layers(graph)
    keep = {*graph.inputs, *graph.outputs}
    layers, rewrites = fuse_layers(layers, keep=keep, skip=skip)
    approximations = [make_int8(layers, int8, frozenset(keep))] if int8 is not None else []
    if fp16:
        choices.append("convolution weights stored as float16; other data float32")
    param_text = format_param(layers)
    weights = format_bin(layers, fp16=fp16)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with AtomicOutputs(out) as files:
        param_path = files.write(f"{name}.param", param_text)
        bin_path = files.write(f"{name}.bin", weights)
        if int8 is not None:
            files.write(f"{name}.table", scale_table(layers))
        files.commit()
    return {
        "param": str(param_path),
        "bin": str(bin_path),
        "layer_count": len(layers),
        "choices": choices,
        "rewrites": rewrites,
        "approximations": approximations,
    }
