"""Recognise an insightface RetinaFace deploy symbol by its outputs' structure, never by names.

Per output stride (facts §12.1.1):
* the face classifier: a Convolution with 2A channels -> `Reshape (0, 2, -1, 0)` -> `softmax`
  (axis 1) or `SoftmaxActivation` (mode channel) -> `Reshape (0, 2A, -1, 0)`, an output;
* the box predictor: a Convolution with 4A channels on the same feature map, an output;
* optionally the landmark predictor: a Convolution with 10A channels there, an output.
A is read from the channels; the stride from the feature map's size against the input's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import UserError
from ..family.interface import NoMatch
from ..mxnet.source import SourceGraph, SourceNode

RESHAPE_OPS = ("Reshape", "reshape")
SOFTMAX_OPS = ("softmax", "SoftmaxActivation")
STRIDES = (2, 4, 8, 16, 32, 64, 128)


@dataclass(frozen=True)
class FaceLevel:
    """One stride's predictors: output node indices and the anchors per cell (A)."""

    stride: int
    height: int
    width: int
    anchors: int
    cls: int  # the output Reshape (0, 2A, -1, 0)
    cls_conv: int
    bbox: int  # the box Convolution (an output)
    landmark: int | None  # the landmark Convolution (an output), if the model has them


def _shape(node: SourceNode) -> tuple[int, ...]:
    return tuple(int(x) for x in node.attrs.tuple("shape"))


def _input(g: SourceGraph, node: SourceNode) -> SourceNode:
    return g.nodes[node.inputs[0][0]]


def _is_channel_softmax(node: SourceNode) -> bool:
    if node.op == "SoftmaxActivation":
        return node.attrs.str("mode", "instance") == "channel"
    return node.op == "softmax" and node.attrs.int("axis", -1) == 1


def _cls_chain(g: SourceGraph, out: SourceNode) -> SourceNode | None:
    """The class Convolution of `out` when `out` ends the reshape-softmax-reshape chain."""
    if out.op not in RESHAPE_OPS or len(_shape(out)) != 4:
        return None
    soft = _input(g, out)
    if not _is_channel_softmax(soft):
        return None
    first = _input(g, soft)
    if first.op not in RESHAPE_OPS or _shape(first) != (0, 2, -1, 0):
        return None
    conv = _input(g, first)
    return conv if conv.op == "Convolution" else None


def _stride(g: SourceGraph, h: int, w: int) -> int | None:
    """The stride whose ceil-rounded feature map of the input is (h, w) (insightface's 3x3/s2/p1
    convolutions round up), or None."""
    ih, iw = g.image_size
    return next((s for s in STRIDES if (math.ceil(ih / s), math.ceil(iw / s)) == (h, w)), None)


def match_levels(g: SourceGraph) -> list[FaceLevel] | NoMatch:
    """Every stride's predictors, in the order the graph outputs them; NoMatch when no output
    is a face classifier; a UserError for a RetinaFace-like graph missing a predictor."""
    outputs = [g.nodes[i] for i, _ in g.heads]
    classes = [(o, c) for o in outputs if (c := _cls_chain(g, o)) is not None]
    if not classes:
        return NoMatch("no output Reshape (0, 2A, -1, 0) of a channel softmax of a Reshape "
                       "(0, 2, -1, 0) of a convolution (a face classifier)")
    convs = [o for o in outputs if o.op == "Convolution"]
    levels = []
    for out, conv in classes:
        _, channels, h, w = g.shape(conv.index)
        a = channels // 2
        stride = _stride(g, h, w)
        where = f"{g.origin}: RetinaFace-like output {out.name}"
        if channels % 2 or _shape(out)[1] != channels or stride is None:
            raise UserError(f"{where}: its class convolution {conv.name} has {channels} "
                            f"channels on a {h}x{w} map of a {g.image_size} input; a face "
                            "classifier has 2A channels at a stride of the input")
        same_map = [c for c in convs if g.shape(c.index)[2:] == (h, w)]
        bbox = [c for c in same_map if g.shape(c.index)[1] == 4 * a]
        marks = [c for c in same_map if g.shape(c.index)[1] == 10 * a]
        if len(bbox) != 1:
            raise UserError(f"{where} (stride {stride}, A={a}): "
                            f"{'no' if not bbox else len(bbox)} box predictor output(s) with "
                            f"{4 * a} channels on its {h}x{w} map; export the symbol with every "
                            "stride's face_rpn_bbox_pred output")
        if len(marks) > 1:
            raise UserError(f"{where} (stride {stride}): {len(marks)} landmark outputs with "
                            f"{10 * a} channels on one map; one is expected")
        levels.append(FaceLevel(stride, h, w, a, out.index, conv.index, bbox[0].index,
                                marks[0].index if marks else None))
    strays = {o.index for o in outputs} - {i for lv in levels
                                           for i in (lv.cls, lv.bbox, lv.landmark)}
    if strays:
        names = ", ".join(sorted(g.nodes[i].name for i in strays))
        raise UserError(f"{g.origin}: RetinaFace-like outputs, but {names} belong(s) to no "
                        "stride's predictors; export the symbol of the nine face outputs")
    if len({lv.stride for lv in levels}) != len(levels):
        raise UserError(f"{g.origin}: two RetinaFace class outputs at one stride")
    if len({lv.landmark is None for lv in levels}) != 1:
        raise UserError(f"{g.origin}: some strides have landmark outputs and some do not")
    return levels


def looks_like_retinaface(nodes: list[SourceNode]) -> bool:
    """Whether an exported symbol holds the face classifier chain (no shapes needed)."""
    by_index = {n.index: n for n in nodes}
    for n in nodes:
        if n.op in SOFTMAX_OPS and n.inputs and _is_channel_softmax(n):
            src = by_index[n.inputs[0][0]]
            if src.op in RESHAPE_OPS and _shape(src) == (0, 2, -1, 0):
                return True
    return False
