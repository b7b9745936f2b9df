"""Recognise a GluonCV YOLOv3 head in a source graph by its structure, never by node names.

What is looked for (gluoncv/model_zoo/yolo/yolo3.py, `YOLOOutputV3` and `YOLOV3`):

* NMS: `_contrib_box_nms` (id_index 0, score_index 1, coord_start 2) reading a Concat(dim=1)
  of one `Reshape(0, -1, 6)` per level, and the `slice_axis(axis=1, 0, post_nms)` after it;
* per level, the prediction conv: `Convolution -> Reshape(0, A*(5+C), -1) -> transpose(0,2,1)
  -> Reshape(0, -1, A, 5+C)`, among that level's ancestors;
* per level, its constants: the anchors (a (1, 1, A, 2) parameter multiplied with an `exp`),
  the grid offsets (a (1, 1, G, G, 2) parameter read by `slice_like`) and the stride (the
  `_mul_scalar` after the offsets are added).

What the decode does with these is not assumed from the structure: `ssdconv.yolo.decode.prove`
checks it against the model's own pre-NMS rows.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError
from ..family.interface import NoMatch
from ..mxnet.source import SourceGraph, SourceNode
from .spec import YoloLevel, YoloNms, YoloSpec

NMS_OPS = ("_contrib_box_nms", "_contrib_box_non_maximum_suppression", "box_nms")
RESHAPE_OPS = ("Reshape", "reshape")
CONCAT_OPS = ("Concat", "concat")
ROW_WIDTH = 6  # GluonCV's rows: class id, score, x1, y1, x2, y2


def _shape_attr(node: SourceNode) -> tuple[int, ...]:
    return tuple(int(x) for x in node.attrs.tuple("shape"))


def _input(g: SourceGraph, node: SourceNode, pos: int = 0) -> SourceNode:
    return g.nodes[node.inputs[pos][0]]


def _is_rows(node: SourceNode) -> bool:
    return node.op in RESHAPE_OPS and _shape_attr(node) == (0, -1, ROW_WIDTH)


def _level_rows(g: SourceGraph, nms: SourceNode) -> list[SourceNode] | None:
    """The per-level row tensors box_nms reads (one Reshape(0,-1,6) each), or None."""
    src = _input(g, nms)
    if _is_rows(src):
        return [src]
    if src.op not in CONCAT_OPS or src.attrs.int("dim", 1) != 1:
        return None
    levels = [g.nodes[i] for i, _ in src.inputs]
    return levels if all(_is_rows(n) for n in levels) else None


def _prediction(g: SourceGraph, ancestors: set[int]) -> list[tuple[SourceNode, int, int]]:
    """(conv, A, 5+C) for every `conv -> Reshape(0,K,-1) -> transpose(0,2,1) ->
    Reshape(0,-1,A,5+C)` chain among `ancestors`."""
    found = []
    for i in sorted(ancestors):
        node = g.nodes[i]
        if node.op not in RESHAPE_OPS:
            continue
        shape = _shape_attr(node)
        if len(shape) != 4 or shape[:2] != (0, -1):
            continue
        t = _input(g, node)
        if t.op != "transpose" or tuple(int(a) for a in t.attrs.tuple("axes")) != (0, 2, 1):
            continue
        flat = _input(g, t)
        if flat.op not in RESHAPE_OPS or _shape_attr(flat) != (0, shape[2] * shape[3], -1):
            continue
        conv = _input(g, flat)
        if conv.op == "Convolution":
            found.append((conv, shape[2], shape[3]))
    return found


def _param(g: SourceGraph, node: SourceNode, pos: int) -> np.ndarray | None:
    src = _input(g, node, pos)
    if src.op == "null" and src.name in g.params:
        return np.asarray(g.params[src.name])
    return None


def _anchors(g: SourceGraph, ancestors: set[int], count: int) -> np.ndarray | None:
    """The (A, 2) anchor constant multiplied with the exp of the size logits."""
    for i in sorted(ancestors):
        node = g.nodes[i]
        if node.op != "broadcast_mul" or len(node.inputs) != 2:
            continue
        for const_pos, other_pos in ((1, 0), (0, 1)):
            value = _param(g, node, const_pos)
            if (value is not None and value.shape == (1, 1, count, 2)
                    and _input(g, node, other_pos).op == "exp"):
                return value.reshape(count, 2).astype(np.float64)
    return None


def _offsets_and_stride(g: SourceGraph, ancestors: set[int]) -> tuple[np.ndarray, float] | None:
    """The (G, G', 2) grid constant read by slice_like, and the scalar the offset centres are
    multiplied by (the stride)."""
    for i in sorted(ancestors):
        node = g.nodes[i]
        if node.op != "slice_like":
            continue
        value = _param(g, node, 0)
        if value is None or value.ndim != 5 or value.shape[-1] != 2:
            continue
        for reshape in g.consumers(node.index):
            for add in g.consumers(reshape.index):
                if add.op not in ("broadcast_add", "elemwise_add"):
                    continue
                for mul in g.consumers(add.index):
                    if mul.op == "_mul_scalar" and mul.index in ancestors:
                        return value[0, 0].astype(np.float64), mul.attrs.float("scalar")
    return None


def _nms_settings(g: SourceGraph, nms: SourceNode) -> YoloNms:
    a = nms.attrs
    layout = (a.int("id_index", -1), a.int("score_index", 1), a.int("coord_start", 2))
    if layout != (0, 1, 2):
        raise UserError(f"{g.origin}: {nms.name} ({nms.op}) reads rows as (id {layout[0]}, "
                        f"score {layout[1]}, coords {layout[2]}); GluonCV's YOLOv3 rows are "
                        "(0, 1, 2): this is not a YOLOv3 head ssdconv can express")
    if a.bool("force_suppress", False):
        raise UserError(f"{g.origin}: {nms.name} has force_suppress=True (NMS across classes); "
                        "DetectionOutput suppresses per class, as GluonCV's YOLOv3 does by "
                        "default: export with force_suppress=False")
    if a.str("in_format", "corner") != "corner" or a.str("out_format", "corner") != "corner":
        raise UserError(f"{g.origin}: {nms.name} uses center box format; GluonCV's YOLOv3 "
                        "uses corners")
    post = -1
    for cons in g.consumers(nms.index):
        if cons.op == "slice_axis" and cons.attrs.int("axis") == 1 and \
                cons.attrs.int("begin", 0) == 0:
            end = cons.attrs.str("end", "None")
            post = -1 if end in ("None", "") else int(end)
    return YoloNms(nms_threshold=a.float("overlap_thresh", 0.5),
                   valid_threshold=a.float("valid_thresh", 0.0), topk=a.int("topk", -1),
                   post_nms=post)


def _level(g: SourceGraph, index: int, rows: SourceNode) -> tuple[YoloLevel, int]:
    """One level's spec and class count, or a UserError naming what its head lacks."""
    ancestors = g.ancestors([rows.index])
    preds = _prediction(g, ancestors)
    where = f"{g.origin}: YOLOv3 output level {index} ({rows.name})"
    if len(preds) != 1:
        raise UserError(f"{where}: expected one prediction conv reshaped to (0, -1, A, 5+C), "
                        f"found {len(preds)}; ssdconv converts GluonCV's YOLOOutputV3 heads")
    conv, count, width = preds[0]
    anchors = _anchors(g, ancestors, count)
    grid = _offsets_and_stride(g, ancestors)
    if anchors is None or grid is None:
        what = "the anchor constant (1, 1, A, 2)" if anchors is None else \
            "the grid offset constant and stride"
        raise UserError(f"{where}: {what} not found; ssdconv converts GluonCV's YOLOOutputV3 "
                        "heads, whose decode reads them")
    offsets, stride = grid
    _, channels, h, w = g.shape(conv.index)
    if offsets.shape[0] < h or offsets.shape[1] < w:
        raise UserError(f"{where}: the grid offsets cover {offsets.shape[0]}x"
                        f"{offsets.shape[1]} cells, the feature map is {h}x{w}: the input "
                        "size is too large for this model (--input-size)")
    level = YoloLevel(index=index, conv=conv.index, output=rows.index, height=h, width=w,
                      stride=float(stride), anchors=tuple((float(a), float(b)) for a, b in anchors),
                      offsets=offsets[:h, :w].copy())
    return level, width - 5


def match_head(g: SourceGraph) -> YoloSpec | NoMatch:
    """The YOLOv3 head of `g`, NoMatch when `g` has none, or a UserError for a YOLOv3 head that
    cannot be expressed."""
    for nms in (n for n in g.nodes if n.op in NMS_OPS):
        levels = _level_rows(g, nms)
        if levels is None:
            continue
        if not _prediction(g, g.ancestors([levels[0].index])):
            continue  # box_nms over rows of some other detector
        specs = [_level(g, i, rows) for i, rows in enumerate(levels)]
        classes = {c for _, c in specs}
        if len(classes) != 1:
            raise UserError(f"{g.origin}: YOLOv3 levels predict different class counts "
                            f"{sorted(classes)}")
        h, w = g.image_size
        return YoloSpec(levels=tuple(s for s, _ in specs), num_classes=classes.pop(),
                        image_h=h, image_w=w, nms=_nms_settings(g, nms), nms_node=nms.index)
    for n in g.nodes:
        if _is_rows(n) and _prediction(g, g.ancestors([n.index])):
            raise UserError(f"{g.origin}: a YOLOv3 head without NMS (no _contrib_box_nms after "
                            f"{n.name}): GluonCV skips NMS when nms_thresh is not in (0, 1); call "
                            "net.set_nms(0.45) before exporting")
    return NoMatch("a _contrib_box_nms over per-level YOLOOutputV3 rows (Reshape(0, -1, 6))")
