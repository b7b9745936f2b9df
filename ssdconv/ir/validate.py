"""Structural checks on an IR graph, run after every pass and on entry to every backend.

A pass that leaves a dangling blob, a duplicate producer, an unknown op, a missing attribute or
an attribute outside the op's contract (`ssdconv.ir.ops`) is a bug in ssdconv; this catches it
at the pass that caused it rather than in a runtime far away, and makes it the same internal
error in both backends.
"""

from __future__ import annotations

from collections.abc import Callable

from .graph import Graph, Node
from .ops import OP_SPECS
from .shapes import infer_shapes


def _eltwise(node: Node) -> str | None:
    coeffs = tuple(node.attrs["coeffs"] or ())
    if coeffs and (node.attrs["operation"] != "sum" or len(coeffs) != len(node.inputs)):
        return f"coeffs {coeffs} need a sum over {len(coeffs)} inputs"
    return None


def _priorbox(node: Node) -> str | None:
    k = node.attrs["int_scale"]
    if k != int(k) or int(k) < 1:
        return f"int_scale must be a positive integer, not {k}"
    if len(node.attrs["variance"]) != 4:
        return f"variance {node.attrs['variance']} does not have four values"
    return None


def _scale(node: Node) -> str | None:
    if len(node.inputs) not in (1, 2):
        return f"reads {len(node.inputs)} blobs, not 1 (weights) or 2 (x, factors)"
    if len(node.inputs) == 2 and (node.attrs["bias"] or node.weights):
        return "takes its factors from a second input: no weights and bias False"
    return None


def _upsample(node: Node) -> str | None:
    s = node.attrs["scale"]
    if isinstance(s, bool) or s != int(s) or int(s) < 2:
        return f"scale must be an integer >= 2, not {s!r}"
    return None


def _yolov3_detection_output(node: Node) -> str | None:
    a, levels = node.attrs, len(node.inputs)
    if min(levels, int(a["num_box"]), int(a["num_class"])) < 1:
        return (f"needs inputs, num_box and num_class >= 1, not {levels}, {a['num_box']}, "
                f"{a['num_class']}")
    if len(a["anchors_scale"]) != levels or any(s <= 0 for s in a["anchors_scale"]):
        return f"anchors_scale {a['anchors_scale']} is not one positive stride per input"
    anchors = len(a["biases"]) // 2
    if len(a["biases"]) % 2:
        return f"biases {a['biases']} are not (w, h) pairs"
    mask = tuple(a["mask"])
    if len(mask) != levels * int(a["num_box"]) or any(
            m != int(m) or not 0 <= m < anchors for m in mask):
        return f"mask {mask} is not num_box anchor indices below {anchors} per input"
    return None


GLUON_NMS = ("box_nms", "none")  # a gluon head's optional `nms` attr


def _gluon_head(node: Node) -> str | None:
    """Its optional `nms`: box_nms (three outputs, GluonCV's) or none (boxes and scores)."""
    nms = node.attrs.get("nms", "box_nms")
    if nms not in GLUON_NMS:
        return f"nms={nms!r} is not one of {GLUON_NMS}"
    want = 3 if nms == "box_nms" else 2
    if len(node.outputs) != want:
        return f"writes {len(node.outputs)} blobs, not {want} (nms={nms})"
    return None


# The parts of an op's contract the table cannot say: a message when a node breaks it.
_CONTRACTS: dict[str, Callable[[Node], str | None]] = {
    "Eltwise": _eltwise,
    "PriorBox": _priorbox,
    "Scale": _scale,
    "SsdDetections": _gluon_head,
    "Upsample": _upsample,
    "YoloDetections": _gluon_head,
    "Yolov3DetectionOutput": _yolov3_detection_output,
}


def _contract(node: Node, spec: dict) -> str | None:
    """What is wrong with `node` against its op's attributes, choices and inputs, or None."""
    missing = [a for a in spec["attrs"] if a not in node.attrs]
    if missing:
        return f"lacks attrs {missing}"
    for attr, allowed in spec.get("choices", {}).items():
        if node.attrs[attr] not in allowed:
            return f"{attr}={node.attrs[attr]!r} is not one of {allowed}"
    if "inputs" in spec and len(node.inputs) != spec["inputs"]:
        return f"reads {len(node.inputs)} blobs, not {spec['inputs']}"
    check = _CONTRACTS.get(node.op)
    return check(node) if check else None


def validate(graph: Graph, after: str = "") -> None:
    """Raise RuntimeError naming the first inconsistency; refresh shapes when all is well."""
    where = f" after {after}" if after else ""
    produced: set[str] = set(graph.inputs)
    names: set[str] = set()
    for node in graph.nodes:
        spec = OP_SPECS.get(node.op)
        if spec is None:
            raise RuntimeError(f"unknown IR op {node.op} at {node.name}{where}")
        if node.name in names:
            raise RuntimeError(f"duplicate node name {node.name}{where}")
        names.add(node.name)
        fault = _contract(node, spec)
        if fault:
            raise RuntimeError(f"{node.name} ({node.op}) {fault}{where}")
        for b in node.inputs:
            if b not in produced:
                raise RuntimeError(f"{node.name} reads {b}, which nothing before it writes{where}")
        for b in node.outputs:
            if b in produced and node.op != "Input":
                raise RuntimeError(f"blob {b} written twice ({node.name}){where}")
            produced.add(b)
    for b in graph.outputs:
        if b not in produced:
            raise RuntimeError(f"graph output {b} is never written{where}")
    infer_shapes(graph)
