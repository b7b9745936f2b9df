"""Synthesise GluonCV's YOLOv3 decode and NMS in IR, from layers caffe-ssd, OpenCV and ncnn
all have, with the same float operations as GluonCV wherever a float op is involved.

From the three raw prediction convs (kept as they are: the manifest's `outputs`):

    per level  Permute(0,2,3,1) -> Reshape(1, H*W*A, 5+C)          (cell row-major, anchor)
    all        Concat(axis 1) -> Slice(axis 2 at 2, 4, 5): t_xy, t_wh, t_obj, t_cls
    centres    Sigmoid(t_xy) -> Reshape(1, 2N) -> Scale(stride, bias offset*stride)
    sizes      Exp(t_wh) -> Reshape(1, 2N) -> Scale(anchor) -> Power(scale 0.5) = half
    corners    Eltwise(centre - half), Eltwise(centre + half) -> Concat -> Scale(1/W, 1/H)
    scores     Scale(Sigmoid(t_cls), by Sigmoid(t_obj)) with a zero class 0 before them
    NMS        DetectionOutput CENTER_SIZE, share_location, background 0, per-class NMS

Why each choice:

* Per-position constants (grid offsets, strides, anchors) are per-element Scale weights on a
  (1, 2N) blob, a layer every runtime has (caffe-ssd has no constant-tensor layer); `sigmoid
  * stride + offset * stride` equals GluonCV's `(sigmoid + offset) * stride` bit for bit when
  the stride is a power of two (scaling by 2^k commutes with rounding); other strides get
  GluonCV's two steps.
* DetectionOutput decodes CENTER_SIZE boxes only in ncnn (and in caffe2ncnn's conversion of
  this prototxt), so the decoded corners are handed over as its *priors*, with zero location
  offsets and unit variances: the decode becomes `centre(prior) -/+ size(prior) / 2`, which
  returns the corners to within one rounding of their magnitude.
* Class 0 is an all-zero background column, as in SSD: ncnn's DetectionOutput always treats
  class 0 as background, and caffe-ssd's with background_label_id -1 aborts (facts §9.3), so
  labels stay 1-based like the SSDs' (manifest label_offset 1).
* Corners are normalised to 0..1 (the SSD row format) before NMS: the IoU, a ratio, is the
  same up to float32 rounding, which the check reports where it matters (ties at the NMS
  threshold).
* GluonCV keeps its top-k candidates over all classes before NMS, DetectionOutput top_k per
  class: the check compares detections where both keep the same candidates.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import UserError
from ..family.interface import GLUON_OUTPUTS
from ..ir.graph import Graph, Node
from ..registry import NameAllocator
from .spec import YoloSpec

BLOBS = {
    "input": "data",
    "boxes": "yolo_boxes",
    "scores": "yolo_scores",
    "detections": "detection_out",
}
LOC = "yolo_loc"


def _power_of_two(x: float) -> bool:
    return x > 0 and math.frexp(x)[0] == 0.5


class _Tail:
    """Appends nodes to the graph, each named after its one output blob: the manifest's blobs
    by their fixed names, the others by fresh names (a model's own layer may hold one)."""

    def __init__(self, graph: Graph, source: str) -> None:
        self.graph = graph
        self.source = source
        self.fresh = NameAllocator.for_graph(graph).fresh

    def add(self, name: str, op: str, inputs: list[str], attrs: dict | None = None,
            weights: dict | None = None, outputs: list[str] | None = None) -> str:
        if name not in BLOBS.values():
            name = self.fresh(name)
        self.graph.nodes.append(Node(name, op, list(inputs), outputs or [name], attrs or {},
                                     weights or {}, source=self.source))
        return name

    def scale(self, name: str, x: str, scale: np.ndarray, bias: np.ndarray | None = None) -> str:
        weights = {"scale": np.asarray(scale, np.float64)}
        if bias is not None:
            weights["bias"] = np.asarray(bias, np.float64)
        return self.add(name, "Scale", [x], {"bias": bias is not None}, weights)

    def power(self, name: str, x: str, scale: float, shift: float = 0.0) -> str:
        return self.add(name, "Power", [x], {"power": 1.0, "scale": scale, "shift": shift})


def _per_position(spec: YoloSpec) -> dict[str, np.ndarray]:
    """Per (box, x/y) constants, flattened in the converted order: stride, grid offset,
    anchor size."""
    strides, offsets, anchors = [], [], []
    for lv in spec.levels:
        cells = lv.height * lv.width
        strides.append(np.full((lv.num_boxes, 2), lv.stride))
        offsets.append(np.repeat(lv.offsets.reshape(cells, 2), lv.num_anchors, axis=0))
        anchors.append(np.tile(np.asarray(lv.anchors, np.float64), (cells, 1)))
    return {k: np.concatenate(v).reshape(-1)
            for k, v in (("stride", strides), ("offset", offsets), ("anchor", anchors))}


def _centres(t: _Tail, sig_xy: str, spec: YoloSpec, const: dict[str, np.ndarray]) -> str:
    if all(_power_of_two(lv.stride) for lv in spec.levels):
        return t.scale("yolo_centre", sig_xy, const["stride"], const["offset"] * const["stride"])
    shifted = t.scale("yolo_centre_cells", sig_xy, np.ones_like(const["offset"]), const["offset"])
    return t.scale("yolo_centre", shifted, const["stride"])


def _refuse_taken(graph: Graph, names: list[str]) -> None:
    """The head's manifest blobs must be new names: a model layer or blob already called so
    would be overwritten or read in their place."""
    taken = [b for b in names
             if graph.producer(b) is not None or any(nd.name == b for nd in graph.nodes)]
    if taken:
        raise UserError(f"the model has a layer or blob named {taken[0]!r}, a name the YOLOv3 "
                        "head's manifest blobs need; rename it in the model")


def synthesise_tail(graph: Graph, spec: YoloSpec, raw_blobs: list[str], source: str) -> None:
    """Append the decode and DetectionOutput after the raw conv blobs; set the graph outputs.
    `source` (the box_nms node) is the provenance of every layer added."""
    _refuse_taken(graph, [b for role, b in BLOBS.items() if role != "input"])
    t = _Tail(graph, source)
    n, c = spec.num_boxes, spec.num_classes
    rows = []
    for lv, blob in zip(spec.levels, raw_blobs):
        perm = t.add(f"yolo_level{lv.index}_perm", "Permute", [blob], {"order": (0, 2, 3, 1)})
        rows.append(t.add(f"yolo_level{lv.index}_rows", "Reshape", [perm],
                          {"dims": (0, lv.num_boxes, 5 + c)}))
    joined = t.add("yolo_rows", "Concat", rows, {"axis": 1}) if len(rows) > 1 else rows[0]
    parts = [t.fresh(p) for p in ("yolo_t_xy", "yolo_t_wh", "yolo_t_obj", "yolo_t_cls")]
    t.add("yolo_split", "Slice", [joined], {"axis": 2, "slice_points": (2, 4, 5)}, outputs=parts)
    t_xy, t_wh, t_obj, t_cls = parts
    const = _per_position(spec)

    sig_xy = t.add("yolo_sig_xy", "Sigmoid", [t_xy])
    flat_xy = t.add("yolo_sig_xy_flat", "Reshape", [sig_xy], {"dims": (0, 2 * n)})
    centre = _centres(t, flat_xy, spec, const)
    exp_wh = t.add("yolo_exp_wh", "Exp", [t_wh])
    flat_wh = t.add("yolo_exp_wh_flat", "Reshape", [exp_wh], {"dims": (0, 2 * n)})
    size = t.scale("yolo_size", flat_wh, const["anchor"])
    half = t.power("yolo_half", size, 0.5)
    lo = t.add("yolo_lo", "Eltwise", [centre, half], {"operation": "sum", "coeffs": (1.0, -1.0)})
    hi = t.add("yolo_hi", "Eltwise", [centre, half], {"operation": "sum", "coeffs": (1.0, 1.0)})
    lo3 = t.add("yolo_lo_pairs", "Reshape", [lo], {"dims": (0, n, 2)})
    hi3 = t.add("yolo_hi_pairs", "Reshape", [hi], {"dims": (0, n, 2)})
    corners = t.add("yolo_corners", "Concat", [lo3, hi3], {"axis": 2})
    flat = t.add("yolo_corners_flat", "Reshape", [corners], {"dims": (0, 4 * n)})
    unit = np.tile([1.0 / spec.image_w, 1.0 / spec.image_h], 2 * n)
    normed = t.scale("yolo_corners_norm", flat, unit)
    row = t.add("yolo_corners_row", "Reshape", [normed], {"dims": (0, 1, 4 * n)})
    ones = t.power("yolo_unit_variance", row, 0.0, 1.0)
    boxes = t.add(BLOBS["boxes"], "Concat", [row, ones], {"axis": 1})
    loc = t.power(LOC, normed, 0.0)

    sig_obj = t.add("yolo_sig_obj", "Sigmoid", [t_obj])
    obj = t.add("yolo_sig_obj_flat", "Reshape", [sig_obj], {"dims": (0, n)})
    sig_cls = t.add("yolo_sig_cls", "Sigmoid", [t_cls])
    score = t.add("yolo_score", "Scale", [sig_cls, obj], {"bias": False})
    background = t.power("yolo_background", sig_obj, 0.0)
    conf = t.add("yolo_conf", "Concat", [background, score], {"axis": 2})
    scores = t.add(BLOBS["scores"], "Flatten", [conf], {"axis": 1, "end_axis": -1})

    nms = spec.nms
    candidates = n * c
    t.add(BLOBS["detections"], "DetectionOutput", [loc, scores, boxes], {
        "num_classes": c + 1, "share_location": True, "background_label_id": 0,
        "nms_threshold": float(nms.nms_threshold),
        "top_k": int(nms.topk) if nms.topk > 0 else n,
        "keep_top_k": int(nms.post_nms) if nms.post_nms > 0 else candidates,
        "confidence_threshold": float(nms.valid_threshold), "code_type": "CENTER_SIZE"})
    graph.outputs = [BLOBS["detections"], *raw_blobs, BLOBS["boxes"], BLOBS["scores"]]
    graph.roles = {**BLOBS, "outputs": list(raw_blobs)}


def synthesise_native(graph: Graph, raw_blobs: list[str], attrs: dict, source: str) -> None:
    """ncnn's own Yolov3DetectionOutput on the raw conv blobs (`--yolo-head native`)."""
    out = BLOBS["detections"]
    _refuse_taken(graph, [out])
    graph.nodes.append(Node(out, "Yolov3DetectionOutput", list(raw_blobs), [out], dict(attrs),
                            source=source))
    graph.outputs = [out, *raw_blobs]
    graph.roles = {"input": BLOBS["input"], "outputs": list(raw_blobs), "detections": out}


def synthesise_gluon(graph: Graph, spec: YoloSpec, raw_blobs: list[str], source: str) -> None:
    """GluonCV's own decode and box_nms as one YoloDetections node on the raw conv blobs (a
    gluon head: ONNX writes it exactly); outputs GluonCV's ids, scores, bboxes, then the raw
    blobs."""
    outs = list(GLUON_OUTPUTS)
    _refuse_taken(graph, outs)
    nms = spec.nms
    graph.nodes.append(Node(
        "gluon_detections", "YoloDetections", list(raw_blobs), outs,
        {"num_classes": spec.num_classes,
         "anchors": tuple(tuple(tuple(float(v) for v in a) for a in lv.anchors)
                          for lv in spec.levels),
         "strides": tuple(float(lv.stride) for lv in spec.levels),
         "offsets": tuple(np.asarray(lv.offsets, np.float64) for lv in spec.levels),
         "nms_threshold": float(nms.nms_threshold), "nms_topk": int(nms.topk),
         "post_nms": int(nms.post_nms), "valid_threshold": float(nms.valid_threshold)},
        source=source))
    graph.outputs = [*outs, *raw_blobs]
    graph.roles = {"input": BLOBS["input"], **{k: k for k in outs}, "outputs": list(raw_blobs)}


def name_layers_after_blobs(graph: Graph) -> None:
    """Each manifest blob written by a layer of its name (OpenCV's forward takes layer names)."""
    for blob in BLOBS.values():
        producer = graph.producer(blob)
        if producer is not None:
            producer.name = blob
