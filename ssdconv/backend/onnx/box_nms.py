"""MXNet's `_contrib_box_nms`, as GluonCV's SSD and YOLOv3 call it, as an exact ONNX subgraph.

GluonCV ends its detectors with

    box_nms(rows, overlap_thresh=t, valid_thresh=0.01, topk=nms_topk, id_index=0,
            score_index=1, coord_start=2, force_suppress=False)
    .slice_axis(axis=1, begin=0, end=post_nms)

and splits the result into ids [B, P, 1], scores [B, P, 1] and bboxes [B, P, 4], -1 padded. ONNX's
NonMaxSuppression alone is not that op: box_nms drops rows that are not valid (`score > v` and
`cls != -1`), sorts the rest stably by score, keeps the first `topk` of ALL classes *before* NMS,
suppresses per class with `iou > t`, and returns whole input rows, compacted, in score order.
This module builds that (facts §11.5) so an ONNX detector's outputs equal GluonCV's row for row:

1. valid mask (invalid scores become -inf), then the K candidates and their place in MXNet's
   stable order, from ops whose result does not depend on how a runtime orders equal values
   (`_stable_topk`; a deviation from the recipe's plain TopK, measured on OpenVINO);
2. NonMaxSuppression over the candidates, per class, with *rank* scores K, K-1, ... instead of
   the real ones: unique scores leave NMS no ties to break, so no runtime's NMS tie rule (or the
   order of its selected_indices, which ONNX leaves open) matters. The boxes go in unchanged
   with center_point_box=0: the runtime then reads x as y, and its IoU is the same float32
   products and sums as MXNet's, in swapped operand order, hence bit-identical;
3. a keep mask scattered from the selected indices (plus a dummy slot, so the scatter is never
   empty), and the kept candidates brought to the front by a TopK over unique integer keys;
4. the kept rows copied whole (bit-identical to the input), the rest -1, padded to P rows.

Measured (tests/test_onnx_box_nms.py): onnxruntime CPU equals MXNet bit for bit; so does
OpenVINO CPU with iou_rule="ge", score ties included. With the plain threshold OpenVINO's CPU
NMS suppresses at IoU == threshold (its `>=`). Inverted boxes (x2 < x1; GluonCV never makes
them) would differ: MXNet takes their area as 0, the runtimes do not.

All graph constants are initializers (TensorRT's parser wants K, the thresholds and the maximum
as initializers), and K is kept <= 3840 (TensorRT's TopK limit) unless the caller lifts it.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13  # GatherND batch_dims (12), Unsqueeze/Slice/Pad with input axes (13); no newer op needed
TRT_TOPK_MAX = 3840  # TensorRT's TopK: K < 3840 per operators.md, k <= 3840 per the layer doc

IouRule = Literal["gt", "ge"]


class Subgraph(NamedTuple):
    """Nodes and initializers to add to a graph; every name they create starts with the prefix."""

    nodes: list[onnx.NodeProto]
    initializers: list[onnx.TensorProto]


class _Builder:
    """Names every node, intermediate tensor and constant `prefix + name`, so that several
    subgraphs (one per output head, say) can live in one graph without clashes."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._names: set[str] = set()
        self._consts: dict[tuple, str] = {}

    def _name(self, name: str) -> str:
        full = self.prefix + name
        if full in self._names:
            raise RuntimeError(f"box_nms: name {full!r} used twice")
        self._names.add(full)
        return full

    def const(self, name: str, value, dtype) -> str:
        """An initializer; an equal one made before (same dtype, shape, bytes) is reused."""
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            self._consts[key] = self._name(name)
            self.inits.append(numpy_helper.from_array(arr, self._consts[key]))
        return self._consts[key]

    def op(self, op_type: str, inputs: list[str], name: str, outputs: list[str] | None = None,
           n_out: int = 1, **attrs) -> str | list[str]:
        """One node; its outputs are `outputs` (caller-given, unprefixed) or prefix+name[:i]."""
        node_name = self._name(name)
        if outputs is None:
            outputs = [node_name] if n_out == 1 else [self._name(f"{name}:{i}")
                                                       for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=node_name, **attrs))
        return outputs[0] if len(outputs) == 1 else outputs

    def result(self) -> Subgraph:
        return Subgraph(self.nodes, self.inits)


def _f32(x: float) -> np.float32:
    """A threshold as MXNet holds it: its op parameters are C++ floats."""
    return np.float32(x)


def iou_threshold(overlap_thresh: float, iou_rule: IouRule = "gt") -> np.float32:
    """The float32 NonMaxSuppression threshold that makes a runtime suppress exactly when MXNet
    does (`iou > f32(t)`).

    "gt": f32(t), for runtimes that suppress on `iou > threshold` (the ONNX spec, onnxruntime,
    TensorRT). "ge": nextafter(f32(t), +inf), for OpenVINO's CPU NMS, which suppresses on
    `iou >= threshold`: for float32 IoUs, `iou >= t+` is `iou > t`. No single value is exact on
    both kinds of runtime (a "ge" model keeps IoU == t+ on a "gt" runtime).
    """
    t = _f32(overlap_thresh)
    if iou_rule == "gt":
        return t
    if iou_rule == "ge":
        return np.nextafter(t, np.float32(np.inf))
    raise ValueError(f"iou_rule must be 'gt' or 'ge', not {iou_rule!r}")


def nms_runs(overlap_thresh: float, topk: int) -> bool:
    """Whether GluonCV's post-processing runs box_nms at all.

    GluonCV calls box_nms only if 0 < nms_thresh < 1; box_nms itself returns its input unchanged
    when topk == 0 (`topk < 1` after `topk < 0` means all rows). Either way the raw rows,
    unsorted and including cls -1 / score 0 rows, are what GluonCV slices and returns.
    """
    return 0 < overlap_thresh < 1 and topk != 0


def _sizes(n: int, topk: int, post_nms: int, max_k: int | None) -> tuple[int, int]:
    """K, the candidates box_nms considers, and P, the rows GluonCV returns."""
    if n < 1:
        raise ValueError(f"box_nms needs at least one row, got {n}")
    k = n if topk < 0 else min(n, topk)
    p = n if post_nms <= 0 else post_nms
    if p > n:
        # GluonCV's slice_axis(end=post_nms) fails in MXNet then ("Invalid end"): no result to match
        raise ValueError(f"post_nms={post_nms} exceeds the {n} rows; GluonCV's slice_axis fails")
    if max_k is not None and k > max_k:
        raise ValueError(f"box_nms keeps its top {k} candidates before NMS, more than the "
                         f"{max_k} TensorRT's TopK allows; set a smaller nms_topk on the model "
                         "(net.set_nms(nms_topk=400) is GluonCV's default) and export it again")
    return k, p


def _split(b: _Builder, src: str, ids: str, scores: str, bboxes: str) -> None:
    """GluonCV's ids/scores/bboxes = result[..., 0:1], [..., 1:2], [..., 2:6]."""
    axes = b.const("split_axes", [2], np.int64)
    for name, lo, hi in ((ids, 0, 1), (scores, 1, 2), (bboxes, 2, 6)):
        b.op("Slice", [src, b.const(f"split_{lo}", [lo], np.int64),
                       b.const(f"split_{hi}", [hi], np.int64), axes], f"split_{lo}_{hi}",
             outputs=[name])


def _stable_topk(b: _Builder, masked: str, n: int, k: int) -> tuple[str, str, str]:
    """MXNet's stable descending sort + topk, from ops whose results do not depend on how a
    runtime breaks ties.

    `masked` [B, N] holds the valid scores and -inf elsewhere. Returns, for the K candidates,
    `idx` [B, K] (their row indices, ascending), `cand_scores` [B, K] (their masked scores) and
    `rank` [B, K] (float32 0..K-1: their position in MXNet's order).

    The facts' recipe (§11.5 step 3) takes the indices straight from TopK(masked). That is
    ONNX's lower-index-first order on onnxruntime, but OpenVINO's TopK is built with
    stable=false and does reorder equal scores (measured: with the nextafter threshold, 13 of
    the 28 test cases differed from MXNet, all with tied scores), and TensorRT promises no tie
    order. TopK's *values* are the same on every runtime, though, and so is a TopK over unique
    keys. So: the K-th largest value v decides the set (every score > v, then the first
    K - #(> v) rows equal to v, by a CumSum), a TopK over the 1..N row positions of that set
    lists it in row order, and each candidate's rank is counted pairwise (#higher scores +
    #equal scores at lower rows) on K x K, exact in float32. Cost, measured on 174640 rows: the
    same time at K = 400; at K = 3840, 110 ms instead of 24 ms in onnxruntime (MXNet: 160 ms).
    """
    if n >= 2**24:  # row positions and counts are float32 integers
        raise ValueError(f"box_nms: {n} rows is more than float32 counts exactly (2**24)")
    i64, f32 = np.int64, np.float32
    vals = b.op("TopK", [masked, b.const("k", [k], i64)], "topk_values", n_out=2,
                axis=1, largest=1, sorted=1)[0]
    ax1 = b.const("ax1", [1], i64)
    kth = b.op("Slice", [vals, b.const("km1", [k - 1], i64), b.const("kk", [k], i64), ax1],
               "kth")  # [B, 1]
    above = b.op("Greater", [masked, kth], "above_kth")
    at = b.op("Equal", [masked, kth], "at_kth")
    n_above = b.op("ReduceSum", [b.op("Cast", [above], "above_f", to=TensorProto.FLOAT), ax1],
                   "n_above", keepdims=1)
    at_count = b.op("CumSum", [b.op("Cast", [at], "at_f", to=TensorProto.FLOAT),
                               b.const("axis1", 1, i64)], "at_count")
    room = b.op("Sub", [b.const("kf", float(k), f32), n_above], "room")
    chosen = b.op("Or", [above, b.op("And", [at, b.op("LessOrEqual", [at_count, room],
                                                        "at_fits")], "at_chosen")], "chosen")
    ones = b.op("ConstantOfShape", [b.op("Shape", [masked], "masked_shape")], "ones",
                value=numpy_helper.from_array(np.ones(1, f32)))
    position = b.op("CumSum", [ones, b.const("axis1", 1, i64)], "position")  # 1..N
    row_key = b.op("Where", [chosen, position, b.const("inf", np.inf, f32)], "row_key")
    idx = b.op("TopK", [row_key, b.const("k", [k], i64)], "candidates", n_out=2,
               axis=1, largest=0, sorted=1)[1]  # exactly K finite, unique keys
    cand_scores = b.op("GatherElements", [masked, idx], "cand_scores", axis=1)
    ax2 = b.const("ax2", [2], i64)
    mine = b.op("Unsqueeze", [cand_scores, ax2], "score_i")  # [B, K, 1]
    other = b.op("Unsqueeze", [cand_scores, ax1], "score_j")  # [B, 1, K]
    order = np.arange(k, dtype=i64)
    lower_row = b.op("Less", [b.const("j", order.reshape(1, 1, k), i64),
                              b.const("i", order.reshape(1, k, 1), i64)], "j_before_i")
    before = b.op("Or", [b.op("Greater", [other, mine], "gt_ij"),
                         b.op("And", [b.op("Equal", [other, mine], "eq_ij"), lower_row],
                              "tie_ij")], "j_sorts_first")
    rank = b.op("ReduceSum", [b.op("Cast", [before], "before_f", to=TensorProto.FLOAT),
                              ax2], "rank", keepdims=0)
    return idx, cand_scores, rank


def _nms_tail(b: _Builder, cand: str, match: str, rank: str, k: int, p: int,
              overlap_thresh: float, iou_rule: IouRule) -> str:
    """From the K candidates [B, K, 6], match [B, C, K] (candidate k is valid and of class c)
    and rank [B, K] (their place in MXNet's sorted order), box_nms's first P rows [B, P, 6]."""
    i64, f32 = np.int64, np.float32
    boxes = b.op("Slice", [cand, b.const("c2", [2], i64), b.const("c6", [6], i64),
                           b.const("ax2", [2], i64)], "nms_boxes")
    # unique scores K - rank (K..1): NMS sees no tie, so no runtime's NMS tie rule (nor the
    # order of selected_indices) matters; 0 (another class, or not valid) never passes 0.5
    kf = b.const("kf", float(k), f32)
    unique = b.op("Unsqueeze", [b.op("Sub", [kf, rank], "nms_rank"), b.const("ax1", [1], i64)],
                  "nms_rank_u")
    nms_scores = b.op("Where", [match, unique, b.const("zero_f", 0.0, f32)], "nms_scores")
    sel = b.op("NonMaxSuppression", [
        boxes, nms_scores,
        b.const("max_per_class", k, i64),  # >= K: it caps selections, never truncates here
        b.const("iou_threshold", iou_threshold(overlap_thresh, iou_rule), f32),
        b.const("score_threshold", 0.5, f32),
    ], "nms", center_point_box=0)
    # keep mask [B, K]: ScatterND of the selected (batch, box) pairs; each candidate is in one
    # class only, so the pairs are unique. A dummy (0, K) row keeps the scatter non-empty (and
    # absorbs TensorRT 8.2-8.4's -1 padded rows); its slot is dropped.
    pairs = b.op("Gather", [sel, b.const("cols_0_2", [0, 2], i64)], "sel_pairs", axis=1)
    pairs = b.op("Concat", [pairs, b.const("dummy", [[0, k]], i64)], "sel_pairs_dummy", axis=0)
    box_col = b.op("Gather", [pairs, b.const("one_i", 1, i64)], "sel_box", axis=1)
    ones = b.op("Cast", [b.op("GreaterOrEqual", [box_col, b.const("zero_i", 0, i64)],
                              "sel_box_ge0")], "sel_ones", to=TensorProto.FLOAT)
    batch = b.op("Slice", [b.op("Shape", [cand], "cand_shape"), b.const("s0", [0], i64),
                           b.const("s1", [1], i64)], "batch")
    zeros = b.op("ConstantOfShape", [b.op("Concat", [batch, b.const("k1", [k + 1], i64)],
                                          "zeros_shape", axis=0)], "zeros",
                 value=numpy_helper.from_array(np.zeros(1, f32)))
    scattered = b.op("ScatterND", [zeros, pairs, ones], "scatter")
    keep = b.op("Slice", [scattered, b.const("s0", [0], i64), b.const("kk", [k], i64),
                          b.const("ax1", [1], i64)], "keep")
    keep = b.op("Greater", [keep, b.const("half", 0.5, f32)], "keep_b")
    # compaction (nms_assign): key rank for kept, K + rank for dropped, unique exact integers,
    # so the ascending TopK is the kept candidates in MXNet's order, then the rest
    key = b.op("Where", [keep, rank, b.op("Add", [rank, kf], "rank_dropped")], "key")
    kp = min(p, k)
    key_vals, order = b.op("TopK", [key, b.const("kp", [kp], i64)], "order", n_out=2,
                           axis=1, largest=0, sorted=1)
    picked = b.op("GatherND", [cand, b.op("Unsqueeze", [order, b.const("ax2", [2], i64)],
                                          "order_u")], "picked", batch_dims=1)
    kept = b.op("Less", [key_vals, kf], "picked_kept")
    kept = b.op("Unsqueeze", [kept, b.const("ax2", [2], i64)], "picked_kept_u")
    out = b.op("Where", [kept, picked, b.const("minus1", -1.0, f32)], "compact")
    if p > kp:  # box_nms's output has all N rows; those past topk are -1
        out = b.op("Pad", [out, b.const("pads", [0, 0, 0, 0, p - kp, 0], i64),
                           b.const("minus1", -1.0, f32)], "pad", mode="constant")
    return out


def box_nms_nodes(rows: str, ids: str, scores: str, bboxes: str, *, num_rows: int,
                  num_classes: int, overlap_thresh: float, topk: int, post_nms: int,
                  valid_thresh: float = 0.01, iou_rule: IouRule = "gt",
                  prefix: str = "box_nms/", max_k: int | None = TRT_TOPK_MAX) -> Subgraph:
    """GluonCV's box_nms + slice_axis on `rows` [B, N, 6] float32 (`[cls, score, x1, y1, x2, y2]`
    in GluonCV's row order, which decides ties), written to `ids` [B, P, 1], `scores` [B, P, 1]
    and `bboxes` [B, P, 4].

    num_rows is N; num_classes is C, the class ids of valid rows must be integers in [0, C)
    (rows of another class are never kept; GluonCV's ids always are). overlap_thresh, topk
    (nms_topk, < 0 for all), post_nms (<= 0 for all N) and valid_thresh are GluonCV's values:
    P = post_nms or N. If GluonCV skips NMS (overlap_thresh not in (0, 1), or topk == 0) the
    outputs are the first P raw rows. iou_rule picks the NMS threshold for the target runtime
    (see `iou_threshold`). Every tensor, node and constant the subgraph adds is named
    `prefix + ...`; the three outputs get the given names.
    """
    b = _Builder(prefix)
    runs = nms_runs(overlap_thresh, topk)
    k, p = _sizes(num_rows, topk, post_nms, max_k if runs else None)  # no NMS: no TopK
    i64 = np.int64
    if not runs:
        raw = rows
        if p < num_rows:
            raw = b.op("Slice", [rows, b.const("r0", [0], i64), b.const("rp", [p], i64),
                                 b.const("ax1", [1], i64)], "raw")
        _split(b, raw, ids, scores, bboxes)
        return b.result()
    cls = b.op("Gather", [rows, b.const("i0", 0, i64)], "cls", axis=2)
    score = b.op("Gather", [rows, b.const("i1", 1, i64)], "score", axis=2)
    vt = b.const("valid_thresh", _f32(valid_thresh), np.float32)
    # MXNet: score > valid_thresh (strict, float32) and cls != background_id (-1)
    valid = b.op("And", [b.op("Greater", [score, vt], "above"),
                         b.op("Not", [b.op("Equal", [cls, b.const("bg", -1.0, np.float32)],
                                           "is_bg")], "not_bg")], "valid")
    masked = b.op("Where", [valid, score, b.const("ninf", -np.inf, np.float32)], "masked")
    idx, cand_scores, rank = _stable_topk(b, masked, num_rows, k)
    cand = b.op("GatherND", [rows, b.op("Unsqueeze", [idx, b.const("ax2", [2], i64)],
                                        "idx_u")], "cand", batch_dims=1)
    cand_valid = b.op("Greater", [cand_scores, vt], "cand_valid")  # -inf (invalid) is not > v
    cand_cls = b.op("Gather", [cand, b.const("i0", 0, i64)], "cand_cls", axis=2)
    classes = np.arange(num_classes, dtype=np.float32).reshape(1, num_classes, 1)
    ax1 = b.const("ax1", [1], i64)
    match = b.op("And", [
        b.op("Equal", [b.op("Unsqueeze", [cand_cls, ax1], "cand_cls_u"),
                       b.const("classes", classes, np.float32)], "is_class"),
        b.op("Unsqueeze", [cand_valid, ax1], "cand_valid_u")], "match")
    out = _nms_tail(b, cand, match, rank, k, p, overlap_thresh, iou_rule)
    _split(b, out, ids, scores, bboxes)
    return b.result()


def ssd_box_nms_nodes(class_scores: str, boxes: str, ids: str, scores: str, bboxes: str, *,
                      num_anchors: int, num_classes: int, overlap_thresh: float, topk: int,
                      post_nms: int, valid_thresh: float = 0.01, iou_rule: IouRule = "gt",
                      prefix: str = "box_nms/",
                      max_k: int | None = TRT_TOPK_MAX) -> Subgraph:
    """The same outputs as `box_nms_nodes` for GluonCV's SSD, without building its C*A*6 rows.

    class_scores [B, C*A] float32 are the foreground class probabilities, class-major
    (softmax[..., 1:] transposed to [B, C, A] and flattened: index c*A + a is SSD's row c*A + a);
    boxes [B, A, 4] the decoded corner boxes. GluonCV's MultiPerClassDecoder turns a score
    <= 0.01 into cls -1 / score 0, which box_nms then drops; box_nms's valid_thresh is 0.01 too,
    so one threshold, `valid_thresh`, stands for both. A candidate's row is rebuilt as
    [float(c), score, box[a]]: the same float32 values GluonCV's concat produces.
    """
    b = _Builder(prefix)
    n = num_classes * num_anchors
    runs = nms_runs(overlap_thresh, topk)
    k, p = _sizes(n, topk, post_nms, max_k if runs else None)  # no NMS: no TopK
    i64 = np.int64
    vt = b.const("valid_thresh", _f32(valid_thresh), np.float32)
    if not runs:  # GluonCV's raw rows 0..P-1: cls c or -1, score or 0
        r = np.arange(p)
        s = b.op("Slice", [class_scores, b.const("r0", [0], i64), b.const("rp", [p], i64),
                           b.const("ax1", [1], i64)], "raw_scores")
        s = b.op("Unsqueeze", [s, b.const("ax2u", [2], i64)], "raw_scores_u")
        mask = b.op("Greater", [s, vt], "raw_mask")
        b.op("Where", [mask, b.const("raw_cls", (r // num_anchors).astype(np.float32)
                                     .reshape(1, p, 1), np.float32),
                       b.const("minus1", -1.0, np.float32)], "raw_ids", outputs=[ids])
        b.op("Where", [mask, s, b.const("zero_f", 0.0, np.float32)], "raw_sc", outputs=[scores])
        b.op("Gather", [boxes, b.const("raw_anchor", r % num_anchors, i64)], "raw_boxes",
             outputs=[bboxes], axis=1)
        return b.result()
    valid = b.op("Greater", [class_scores, vt], "valid")
    masked = b.op("Where", [valid, class_scores, b.const("ninf", -np.inf, np.float32)], "masked")
    idx, cand_scores, rank = _stable_topk(b, masked, n, k)
    a_const = b.const("num_anchors", num_anchors, i64)
    cls_i = b.op("Div", [idx, a_const], "cand_cls_i")  # idx >= 0: integer division = floor
    anchor = b.op("Sub", [idx, b.op("Mul", [cls_i, a_const], "cls_x_a")], "cand_anchor")
    ax2 = b.const("ax2", [2], i64)
    cand_box = b.op("GatherND", [boxes, b.op("Unsqueeze", [anchor, ax2], "anchor_u")],
                    "cand_box", batch_dims=1)
    cls_f = b.op("Cast", [cls_i], "cand_cls", to=TensorProto.FLOAT)
    # invalid candidates get score -inf here; they are never kept, so never output
    cand = b.op("Concat", [b.op("Unsqueeze", [cls_f, ax2], "cand_cls_u"),
                           b.op("Unsqueeze", [cand_scores, ax2], "cand_score_u"), cand_box],
                "cand", axis=2)
    cand_valid = b.op("Greater", [cand_scores, vt], "cand_valid")
    ax1 = b.const("ax1", [1], i64)
    classes = np.arange(num_classes, dtype=np.int64).reshape(1, num_classes, 1)
    match = b.op("And", [
        b.op("Equal", [b.op("Unsqueeze", [cls_i, ax1], "cand_cls_iu"),
                       b.const("classes", classes, i64)], "is_class"),
        b.op("Unsqueeze", [cand_valid, ax1], "cand_valid_u")], "match")
    out = _nms_tail(b, cand, match, rank, k, p, overlap_thresh, iou_rule)
    _split(b, out, ids, scores, bboxes)
    return b.result()


def _model(sub: Subgraph, inputs: dict[str, list], outputs: dict[str, list],
           name: str) -> onnx.ModelProto:
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        sub.nodes, name,
        [helper.make_tensor_value_info(n, f, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, f, s) for n, s in outputs.items()],
        initializer=sub.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="ssdconv")
    model.ir_version = 8  # opset 13 needs IR >= 7; 8 is read by every runtime of the last years
    onnx.checker.check_model(model, full_check=True)
    return model


def _out_rows(n: int, post_nms: int) -> int:
    return n if post_nms <= 0 else post_nms


def box_nms_model(*, num_rows: int, batch: int = 1, **kwargs) -> onnx.ModelProto:
    """A standalone, checked model: input "rows" [batch, N, 6], outputs "ids", "scores",
    "bboxes". kwargs are `box_nms_nodes`'s (num_classes, overlap_thresh, topk, post_nms, ...)."""
    sub = box_nms_nodes("rows", "ids", "scores", "bboxes", num_rows=num_rows, **kwargs)
    p = _out_rows(num_rows, kwargs["post_nms"])
    return _model(sub, {"rows": [batch, num_rows, 6]},
                  {"ids": [batch, p, 1], "scores": [batch, p, 1], "bboxes": [batch, p, 4]},
                  "box_nms")


def ssd_box_nms_model(*, num_anchors: int, num_classes: int, batch: int = 1,
                      **kwargs) -> onnx.ModelProto:
    """A standalone, checked model of `ssd_box_nms_nodes`: inputs "class_scores" [batch, C*A] and
    "boxes" [batch, A, 4], outputs "ids", "scores", "bboxes"."""
    sub = ssd_box_nms_nodes("class_scores", "boxes", "ids", "scores", "bboxes",
                            num_anchors=num_anchors, num_classes=num_classes, **kwargs)
    n = num_anchors * num_classes
    p = _out_rows(n, kwargs["post_nms"])
    return _model(sub, {"class_scores": [batch, n], "boxes": [batch, num_anchors, 4]},
                  {"ids": [batch, p, 1], "scores": [batch, p, 1], "bboxes": [batch, p, 4]},
                  "ssd_box_nms")


def _iou(a: np.ndarray, b: np.ndarray) -> np.float32:
    """MXNet's corner IoU in float32, operation for operation (bounding_box-inl.h)."""
    f = np.float32
    a, b = a.astype(f), b.astype(f)

    def side(lo: int, hi: int) -> np.float32:
        w = f(min(a[hi], b[hi]) - max(a[lo], b[lo]))
        return w if w > 0 else f(0)

    def area(r: np.ndarray) -> np.float32:
        w, h = f(r[2] - r[0]), f(r[3] - r[1])
        return f(0) if w < 0 or h < 0 else f(w * h)

    inter = f(side(0, 2) * side(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return f(inter / f(f(area(a) + area(b)) - inter))


def explain_differences(got: np.ndarray, want: np.ndarray,
                        overlap_thresh: float) -> list[tuple[int, str]]:
    """Why a runtime's box_nms rows `got` [P, 6] differ from MXNet's `want` [P, 6], row by row.

    Returns (position, reason) for every position whose rows differ in any bit. A row is "lone"
    if only one side has it; rows on both sides are "common". The reason is judged on want[i]
    if lone, else on got[i] if lone, else on the common row:

    - "iou==t": a lone row overlaps a same-class row of the other side, scoring at least as
      high, at IoU exactly f32(t) (or the float32 above it): a runtime suppressing on `>=`
      (OpenVINO's CPU NMS with the plain threshold) drops what MXNet's `>` keeps;
    - "follows": a lone row is suppressed (IoU > t, same class, higher score) by a row that is
      lone on the other side: a consequence of an earlier difference;
    - "cut": a lone row that scores no higher than the last of the other side's P rows, all
      real: an earlier difference pushed it past the post_nms window;
    - "tie": a lone row has the score of a lone row of the other side (equal scores, another
      row chosen), or a common row is out of order only among equal scores;
    - "moved": a common row in the same order on both sides, only shifted by lone rows;
    - "unexplained": none of these; a real difference.

    For reports (a main product lists "tie" and "iou==t" rows as ties, not failures). It reads
    the rows only, so it explains and does not prove; the tests prove by re-running MXNet.
    """
    t = _f32(overlap_thresh)
    at_t = (t, np.nextafter(t, np.float32(np.inf)))
    got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
    sides = {"got": [r for r in got if not (r == -1).all()],
             "want": [r for r in want if not (r == -1).all()]}
    keys = {side: [r.tobytes() for r in rows] for side, rows in sides.items()}
    other = {"got": "want", "want": "got"}
    common = {side: [r for r in keys[side] if r in keys[other[side]]] for side in sides}
    lone = {side: [r for r in sides[side] if r.tobytes() not in keys[other[side]]]
            for side in sides}

    def judge_lone(side: str, x: np.ndarray) -> str:
        peers = [y for y in sides[other[side]] if y[0] == x[0] and y[1] >= x[1]]
        ious = [_iou(x[2:6], y[2:6]) for y in peers]
        if any(v in at_t for v in ious):
            return "iou==t"
        if any(v > t and y.tobytes() not in keys[side] for v, y in zip(ious, peers)):
            return "follows"
        rest = sides[other[side]]
        if len(rest) == len(got) and x[1] <= rest[-1][1]:
            return "cut"
        if any(y[1] == x[1] for y in lone[other[side]]):
            return "tie"
        return "unexplained"

    def judge_common(x: np.ndarray) -> str:
        i, j = common["got"].index(x.tobytes()), common["want"].index(x.tobytes())
        if i == j:
            return "moved"
        lo, hi = min(i, j), max(i, j)
        scores = {np.frombuffer(r, np.float32)[1] for r in common["got"][lo:hi + 1]}
        return "tie" if len(scores) == 1 else "unexplained"

    out: list[tuple[int, str]] = []
    for i in np.flatnonzero((got.view(np.int32) != want.view(np.int32)).any(-1)):
        g, w = got[i], want[i]
        if not (w == -1).all() and w.tobytes() not in keys["got"]:
            reason = judge_lone("want", w)
        elif not (g == -1).all() and g.tobytes() not in keys["want"]:
            reason = judge_lone("got", g)
        else:
            reason = judge_common(g if not (g == -1).all() else w)
        out.append((int(i), reason))
    return out
