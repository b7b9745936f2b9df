"""The ONNX writer of the IR's body ops: IR graph -> NAME.onnx, written whole or not at all.

Why in this order, as the ncnn emitter: the graph is validated (a broken IR contract is an
internal error, `ssdconv.backend`), then every node is lowered (`lower.LOWERINGS`) and every
refusal collected, and one `UnsupportedError` lists them all before a byte is written. The
detection heads (PriorBox, DetectionOutput, Yolov3DetectionOutput) are refused here: the ONNX
target writes the family's own head, not caffe-ssd's or ncnn's.

The model: opset `OPSET` with the lowest IR version that carries it (older runtimes load it);
graph inputs are the IR's inputs, float32 NCHW with their static shapes; graph outputs are the
IR's outputs with their blob names and static shapes; every other IR blob keeps its name and is
declared with its shape (value_info), so users extract any IR blob by name and the checker's
strict shape inference proves each lowering gives the IR's shape. Weights are float32
initializers. The model passes `onnx.checker.check_model(full_check=True)` before it is written
(a failure there is a bug in ssdconv), and the same graph always gives the same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from ... import __version__
from ...fileio import AtomicOutputs
from ...ir.graph import Graph
from ...ir.validate import validate
from .. import Refusals
from .lower import OPSET, lower_node, new_name_allocator

__all__ = ["OPSET", "build_model", "write_onnx"]

IR_VERSION = helper.find_min_ir_version_for([helper.make_opsetid("", OPSET)])


def _tensor(blob: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(blob, TensorProto.FLOAT, [int(d) for d in shape])


def build_model(graph: Graph, name: str = "ssdconv") -> tuple[onnx.ModelProto, list[str]]:
    """Lower every node; raise `UnsupportedError` listing all refusals. Returns (model,
    choices), choices being one line per non-obvious but exact decision."""
    graph = graph.with_input_nodes()
    validate(graph, after="the passes (onnx backend)")
    fresh = new_name_allocator(graph).fresh
    choices: list[str] = []
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    refusals = Refusals("the onnx backend")
    for node in graph:
        with refusals.of(node):
            lowered = lower_node(node, graph, fresh, choices)
            nodes.extend(lowered.nodes)
            initializers.extend(lowered.initializers)
    refusals.raise_any()
    outer = {*graph.inputs, *graph.outputs}
    inner = [b for n in graph if n.op != "Input" for b in n.outputs if b not in outer]
    body = helper.make_graph(
        nodes, name,
        inputs=[_tensor(b, graph.shapes[b]) for b in graph.inputs],
        outputs=[_tensor(b, graph.shapes[b]) for b in graph.outputs],
        initializer=initializers,
        value_info=[_tensor(b, graph.shapes[b]) for b in inner],
    )
    model = helper.make_model(body, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="ssdconv", producer_version=__version__,
                              ir_version=IR_VERSION)
    return model, choices


def write_onnx(graph: Graph, out_dir: str | os.PathLike, name: str) -> dict:
    """Write `name`.onnx into `out_dir` atomically.

    Returns {"onnx", "opset", "node_count", "choices", "approximations"}; approximations is
    always empty (every op is lowered exactly or refused), kept for the writers' common shape.
    """
    model, choices = build_model(graph, name)
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise RuntimeError(f"the ONNX model ssdconv wrote is invalid: {exc}") from exc
    data = model.SerializeToString(deterministic=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with AtomicOutputs(out) as files:
        path = files.write(f"{name}.onnx", data)
        files.commit()
    return {
        "onnx": str(path),
        "opset": OPSET,
        "node_count": len(model.graph.node),
        "choices": choices,
        "approximations": [],
    }
