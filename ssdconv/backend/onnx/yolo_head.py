"""GluonCV's YOLOv3 post-processing (decode, rows, box_nms) as an exact ONNX subgraph.

From the raw prediction convs `[B, A*(5+C), H, W]` of every level (GluonCV's order: stride 32
first) to GluonCV's own `ids [B, P, 1]`, `scores [B, P, 1]`, `bboxes [B, P, 4]`, row for row.
Per level it is `YOLOOutputV3.hybrid_forward` (gluoncv/model_zoo/yolo/yolo3.py) op for op:

    pred    Reshape(0, A*K, -1) -> Transpose(0, 2, 1) -> Reshape(0, -1, A, K)     K = 5 + C
    centre  (sigmoid(t_xy) + offset) * stride      offset [1, HW, 1, 2] as the model holds it
    half    exp(t_wh) * anchor / 2                 anchor [1, 1, A, 2] in input pixels
    box     concat(centre - half, centre + half)   corners x1, y1, x2, y2, not clipped
    score   sigmoid(t_cls) * sigmoid(t_obj)
    rows    [id, score, box] transposed to class-major [B, C, HW, A, 6] -> [B, C*HW*A, 6]

and the levels' rows concatenated, so row `layer_off + c*(HW*A) + hw*A + a` is GluonCV's row of
the same index (facts §11.1; row order decides score ties, which are common: sigmoid saturates
to 1.0f). The rows then go through `box_nms_nodes` with GluonCV's settings.

Float32 operation order. Every arithmetic step is the one MXNet performs, on the same operands,
in the same order: `(s + offset) * stride` (not `s*stride + offset*stride`, equal only for
power-of-two strides), `(e * anchor) / 2`, `centre - half`, `centre + half`, `s_cls * s_obj`;
these are IEEE-exact in every runtime, so given MXNet's own sigmoid and exp values the rows are
MXNet's bit for bit (tests/test_onnx_yolo_head.py proves it by feeding them in, for the zoo
strides 32/16/8 and for strides 24 and 12). One runtime rewrite had to be blocked: OpenVINO's CPU
plugin turns `Mul(Add(x, const), const)` into `fma(x, stride, offset*stride)` (measured: 209 of
840 values differ at stride 12), exact only for power-of-two strides; for any other stride the
Add and the Mul get a Reshape pair between them, which it does not look through. Ids are the
float32 class indices, broadcast (GluonCV's `scores*0 + arange` is the same for every finite
score, and a sigmoid output is always finite unless the input is NaN).

Sigmoid and exp are where the runtimes differ from MXNet, whose CPU sigmoid is `1.0f / (1.0f +
expf(-x))` with glibc's expf (measured bit-equal to glibc on 400k values). Measured on 400k
values in [-30, 30] against MXNet: onnxruntime's Exp is off by 1 ulp on 6.6% of them and
OpenVINO's by up to 3 ulps on ~60%; onnxruntime's Sigmoid kernel is accurate in absolute terms
only (relative error 5.1 at x = -30, 0.25 at x = -15: small scores, which the 0.01 threshold and
the score order read, come out wrong), OpenVINO's within 4 ulps. So sigmoid is written as
`Reciprocal(1 + Exp(-x))`, as MXNet computes it (and as the body writer does): at most 4 ulps
(2.6e-7 relative) from MXNet in onnxruntime, 4 ulps (3.1e-7) in OpenVINO, and exact for
x >= 15. Scores and boxes therefore differ from GluonCV's by a few float32 ulps; where that
reorders rows of equal (or ulp-close) scores, or moves a score across the 0.01 threshold, the
runtime's rows differ from GluonCV's as a tie, not as an error (the tests name and count them).

The ONNX ops are opset 13 (`box_nms.OPSET`); every constant is an initializer; all names start
with `prefix` (the NMS's with `prefix + "nms/"`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import onnx

from ...ir.shapes import gluon_post_nms
from .box_nms import (
    OPSET,
    TRT_TOPK_MAX,
    IouRule,
    Subgraph,
    _Builder,
    _model,
    _out_rows,
    box_nms_nodes,
)

__all__ = ["OPSET", "Subgraph", "level_offsets", "yolo_head_from_spec", "yolo_head_model",
           "yolo_head_nodes"]


class Level(Protocol):
    """What the decode needs of one level; `ssdconv.yolo.spec.YoloLevel` is one."""

    height: int
    width: int
    stride: float
    anchors: Sequence[Sequence[float]]  # (w, h) in input pixels, per anchor


class Nms(Protocol):
    """GluonCV's box_nms settings; `ssdconv.yolo.spec.YoloNms` is one."""

    nms_threshold: float
    valid_threshold: float
    topk: int
    post_nms: int


def level_offsets(level: Level) -> np.ndarray:
    """The level's grid offsets (H, W, 2) as (x, y) per cell: the model's own constant when the
    level carries one (`YoloLevel.offsets`, read by the matcher), else GluonCV's
    (`offset[h, w] = (w, h)`, yolo3.py `YOLOOutputV3.__init__`)."""
    h, w = level.height, level.width
    given = getattr(level, "offsets", None)
    if given is not None:
        off = np.asarray(given, np.float64)
        if off.shape != (h, w, 2):
            raise ValueError(f"offsets of shape {off.shape} for a {h}x{w} level")
        return off
    grid_x, grid_y = np.meshgrid(np.arange(w), np.arange(h))
    return np.stack([grid_x, grid_y], axis=-1).astype(np.float64)


def _power_of_two(x: float) -> bool:
    return x > 0 and math.frexp(x)[0] == 0.5


def _sigmoid(b: _Builder, x: str, name: str) -> str:
    """MXNet's CPU sigmoid, `1.0f / (1.0f + expf(-x))`, op for op (see the module doc)."""
    e = b.op("Exp", [b.op("Neg", [x], f"{name}_neg")], f"{name}_exp")
    return b.op("Reciprocal", [b.op("Add", [e, b.const("one", 1.0, np.float32)], f"{name}_den")],
                name)


def _level_decode(b: _Builder, pred: str, level: Level, num_classes: int,
                  tag: str) -> tuple[str, str]:
    """One level's decoded boxes [B, HW, A, 4] and class scores [B, HW, A, C] from its
    prediction conv output (`YOLOOutputV3.hybrid_forward`, module doc)."""
    i64, f32 = np.int64, np.float32
    a = len(level.anchors)
    k = 5 + num_classes
    hw = level.height * level.width
    if a < 1 or level.height < 1 or level.width < 1:
        raise ValueError(f"yolo_head: level {tag} has {a} anchors on {level.height}x"
                         f"{level.width} cells")
    flat = b.op("Reshape", [pred, b.const(f"{tag}shape_flat", [0, a * k, -1], i64)],
                f"{tag}flat")
    cells = b.op("Transpose", [flat], f"{tag}cells", perm=[0, 2, 1])  # [B, HW, A*K]
    p = b.op("Reshape", [cells, b.const(f"{tag}shape_pred", [0, hw, a, k], i64)], f"{tag}pred")
    ax3 = b.const("ax3", [3], i64)

    def part(name: str, lo: int, hi: int) -> str:
        return b.op("Slice", [p, b.const(f"at_{lo}", [lo], i64), b.const(f"at_{hi}", [hi], i64),
                              ax3], f"{tag}{name}")

    t_xy, t_wh, t_obj, t_cls = (part("t_xy", 0, 2), part("t_wh", 2, 4), part("t_obj", 4, 5),
                                part("t_cls", 5, k))
    offsets = level_offsets(level).reshape(1, hw, 1, 2)
    anchors = np.asarray(level.anchors, np.float64).reshape(1, 1, a, 2)
    for what, v in (("offsets", offsets), ("anchors", anchors), ("stride", level.stride)):
        if not np.array_equal(np.asarray(v, np.float64), np.asarray(v, f32).astype(np.float64)):
            raise ValueError(f"yolo_head: level {tag} {what} are not float32 values; the model "
                             "holds them as float32 (give them as the matcher read them)")
    cell_xy = b.op("Add", [_sigmoid(b, t_xy, f"{tag}sig_xy"),
                           b.const(f"{tag}offsets", offsets, f32)], f"{tag}cell_xy")
    stride = b.const(f"{tag}stride", level.stride, f32)
    if _power_of_two(level.stride):
        centre = b.op("Mul", [cell_xy, stride], f"{tag}centre")
    else:  # a Reshape between the Add and the Mul keeps OpenVINO from fusing them (module doc)
        flat_xy = b.op("Reshape", [cell_xy, b.const("shape_flat2", [0, -1], i64)],
                       f"{tag}cell_xy_flat")
        centre = b.op("Reshape", [b.op("Mul", [flat_xy, stride], f"{tag}centre_flat"),
                                  b.const(f"{tag}shape_xy", [0, hw, a, 2], i64)],
                      f"{tag}centre")
    size = b.op("Mul", [b.op("Exp", [t_wh], f"{tag}exp_wh"),
                        b.const(f"{tag}anchors", anchors, f32)], f"{tag}size")
    half = b.op("Div", [size, b.const("two", 2.0, f32)], f"{tag}half")
    box = b.op("Concat", [b.op("Sub", [centre, half], f"{tag}lo"),
                          b.op("Add", [centre, half], f"{tag}hi")], f"{tag}box", axis=3)
    score = b.op("Mul", [_sigmoid(b, t_cls, f"{tag}sig_cls"), _sigmoid(b, t_obj, f"{tag}sig_obj")],
                 f"{tag}score")  # [B, HW, A, C]
    return box, score


def _level_rows(b: _Builder, pred: str, level: Level, num_classes: int, tag: str) -> str:
    """One level's GluonCV rows [B, C*H*W*A, 6] from its prediction conv output."""
    i64, f32 = np.int64, np.float32
    box, score = _level_decode(b, pred, level, num_classes, tag)
    # class-major: [B, C, HW, A, 1] scores, their ids, and the box repeated per class
    score = b.op("Unsqueeze", [b.op("Transpose", [score], f"{tag}score_cmajor",
                                    perm=[0, 3, 1, 2]), b.const("ax4", [4], i64)],
                 f"{tag}score_u")
    per_class = b.const(f"class_reps_{num_classes}", [1, num_classes, 1, 1, 1], i64)
    classes = np.arange(num_classes, dtype=f32).reshape(1, num_classes, 1, 1, 1)
    ids = b.op("Expand", [b.const("class_ids", classes, f32),
                          b.op("Shape", [score], f"{tag}score_shape")], f"{tag}ids")
    boxes = b.op("Expand", [b.op("Unsqueeze", [box, b.const("ax1", [1], i64)], f"{tag}box_u"),
                            per_class], f"{tag}boxes")
    rows = b.op("Concat", [ids, score, boxes], f"{tag}rows5", axis=4)
    return b.op("Reshape", [rows, b.const("shape_rows", [0, -1, 6], i64)], f"{tag}rows")


def yolo_head_nodes(predictions: Sequence[str], ids: str, scores: str, bboxes: str, *,
                    levels: Sequence[Level], num_classes: int, nms: Nms,
                    iou_rule: IouRule = "gt", prefix: str = "yolo_head/",
                    rows: str | None = None, max_k: int | None = TRT_TOPK_MAX) -> Subgraph:
    """GluonCV's YOLOv3 decode, rows and box_nms from the raw prediction convs.

    predictions: one tensor name per level, `[B, A*(5+C), H, W]` float32, in GluonCV's level
    order (stride 32 first; `YoloSpec.levels` order). levels: per level its height, width,
    stride and anchors ((w, h) pixels), and optionally `offsets` (H, W, 2): `YoloSpec.levels`.
    num_classes: C. nms: nms_threshold, valid_threshold, topk, post_nms as GluonCV's box_nms
    and slice use them: `YoloSpec.nms`. iou_rule and max_k as in `box_nms_nodes` ("ge" for
    OpenVINO's CPU NMS). Writes `ids`/`scores` [B, P, 1] and `bboxes` [B, P, 4], P = post_nms
    (or N); `rows`, if given, names the pre-NMS rows [B, N, 6] (GluonCV's box_nms input) so a
    caller can expose them.
    """
    if len(predictions) != len(levels) or not levels:
        raise ValueError(f"yolo_head: {len(predictions)} prediction tensors for {len(levels)} "
                         "levels")
    if num_classes < 1:
        raise ValueError(f"yolo_head: num_classes {num_classes}")
    b = _Builder(prefix)
    per_level = [_level_rows(b, pred, lv, num_classes, f"l{i}/")
                 for i, (pred, lv) in enumerate(zip(predictions, levels))]
    n = num_classes * sum(lv.height * lv.width * len(lv.anchors) for lv in levels)
    if rows is None:
        rows = b.prefix + "rows"
        b._name("rows")
    if len(per_level) == 1:
        b.op("Identity", per_level, "rows_out", outputs=[rows])
    else:
        b.op("Concat", per_level, "rows_out", outputs=[rows], axis=1)
    sub = box_nms_nodes(rows, ids, scores, bboxes, num_rows=n, num_classes=num_classes,
                        overlap_thresh=nms.nms_threshold, topk=nms.topk,
                        post_nms=gluon_post_nms(nms.nms_threshold, nms.post_nms),
                        valid_thresh=nms.valid_threshold, iou_rule=iou_rule,
                        prefix=prefix + "nms/", max_k=max_k)
    return Subgraph(b.nodes + sub.nodes, b.inits + sub.initializers)


def yolo_pre_nms_nodes(predictions: Sequence[str], boxes: str, scores: str, *,
                       levels: Sequence[Level], num_classes: int,
                       prefix: str = "yolo_head/") -> Subgraph:
    """GluonCV's YOLOv3 decode without its rows and box_nms (`--onnx-nms none`: for runtimes
    without NonMaxSuppression/TopK), from the same per-level decode as `yolo_head_nodes`.

    Writes `boxes` [B, N, 4] (corners, input pixels, not clipped) and `scores` [B, N, C]
    (sigmoid(class) * sigmoid(objectness)), N = sum over levels of H*W*A, levels in
    `predictions` order, each level cell-major then anchor (row hw*A + a). GluonCV's box_nms
    input is, level by level, that level's n = H*W*A boxes class-major: row c*n + j =
    [c, scores[o + j, c], boxes[o + j]] (o: the earlier levels' boxes), the levels' rows
    concatenated. Arguments as `yolo_head_nodes`."""
    if len(predictions) != len(levels) or not levels:
        raise ValueError(f"yolo_head: {len(predictions)} prediction tensors for {len(levels)} "
                         "levels")
    b = _Builder(prefix)
    i64 = np.int64
    flat_boxes, flat_scores = [], []
    for i, (pred, lv) in enumerate(zip(predictions, levels)):
        box, score = _level_decode(b, pred, lv, num_classes, f"l{i}/")
        flat_boxes.append(b.op("Reshape", [box, b.const("shape_boxes", [0, -1, 4], i64)],
                               f"l{i}/boxes"))
        flat_scores.append(b.op("Reshape", [score, b.const("shape_scores", [0, -1, num_classes],
                                                           i64)], f"l{i}/scores"))
    for parts, out, what in ((flat_boxes, boxes, "boxes"), (flat_scores, scores, "scores")):
        if len(parts) == 1:
            b.op("Identity", parts, f"{what}_out", outputs=[out])
        else:
            b.op("Concat", parts, f"{what}_out", outputs=[out], axis=1)
    return Subgraph(b.nodes, b.inits)


def _spec_of(head_or_spec):
    """A YoloSpec from a recognised `YoloHead` (its `.spec`) or a YoloSpec itself."""
    return getattr(head_or_spec, "spec", head_or_spec)


def yolo_head_from_spec(head_or_spec, predictions: Sequence[str], ids: str = "ids",
                        scores: str = "scores", bboxes: str = "bboxes", **kwargs) -> Subgraph:
    """`yolo_head_nodes` with levels, num_classes and nms from ssdconv's recognised head
    (`ssdconv.family.recognise(graph)`, a YoloHead, or its `YoloSpec`). predictions are the
    tensors of `head.raw_outputs()` / `spec.levels[i].conv`, in that order; kwargs are
    iou_rule, prefix, rows, max_k."""
    spec = _spec_of(head_or_spec)
    return yolo_head_nodes(predictions, ids, scores, bboxes, levels=spec.levels,
                           num_classes=spec.num_classes, nms=spec.nms, **kwargs)


def yolo_head_model(head_or_spec, *, batch: int = 1, with_rows: bool = False,
                    **kwargs) -> onnx.ModelProto:
    """A standalone, checked (`full_check`) model of the head: inputs "prediction0".. (the raw
    conv outputs [batch, A*(5+C), H, W], GluonCV's level order), outputs "ids", "scores",
    "bboxes" and, with_rows, the pre-NMS "rows" [batch, N, 6]. kwargs: iou_rule, prefix,
    max_k."""
    spec = _spec_of(head_or_spec)
    c = spec.num_classes
    preds = {f"prediction{i}": [batch, len(lv.anchors) * (5 + c), lv.height, lv.width]
             for i, lv in enumerate(spec.levels)}
    n = c * sum(lv.height * lv.width * len(lv.anchors) for lv in spec.levels)
    p = _out_rows(n, gluon_post_nms(spec.nms.nms_threshold, spec.nms.post_nms))
    outputs = {"ids": [batch, p, 1], "scores": [batch, p, 1], "bboxes": [batch, p, 4]}
    if with_rows:
        outputs["rows"] = [batch, n, 6]
    sub = yolo_head_from_spec(spec, list(preds), rows="rows" if with_rows else None, **kwargs)
    return _model(sub, preds, outputs, "yolo_head")
