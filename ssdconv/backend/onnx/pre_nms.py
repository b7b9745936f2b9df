"""`--onnx-nms none`: the ONNX model ends at the boxes and per-class scores GluonCV's box_nms
reads, for runtimes without NonMaxSuppression/TopK (Rockchip's toolkit, most NPUs).

Three things, one contract: `without_nms` turns the IR's gluon head into its `nms="none"` form
(outputs `boxes` [1, N, 4] and `scores` [1, N, C]); `manifest_section` says in the manifest how
GluonCV's box_nms input rows are made from them and with which NMS parameters GluonCV runs
box_nms (NMS is the user's then); `gluon_rows` is that recipe in numpy, which the runners use,
so the check proves the documented recipe, not a private one.

The rows (facts §11.1): box_nms reads [1, R, 6] rows [id, score, x1, y1, x2, y2], R = C*N, in
groups: SSD has one group (every anchor), YOLOv3 one per level. A group of n boxes starting at
box o gives rows c*n + j = [id, scores[o + j, c], boxes[o + j]] (class-major), groups in order.
SSD's id is c where the score passed MultiPerClassDecoder's mask (score > 0 after it), else -1;
YOLOv3's is always c.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ...ir.graph import Graph

NMS_CHOICES = ("box_nms", "none")
OUTPUTS = ("boxes", "scores")  # the blobs of an nms="none" model
# their manifest roles (and the runners' keys): not "boxes"/"scores", which a stock head's
# decoded blobs are (ncnn's YOLOv3), in another layout
ROLES = ("pre_nms_boxes", "pre_nms_scores")
DETECTION_ROLES = ("ids", "scores", "bboxes")  # GluonCV's three outputs (GLUON_OUTPUTS)
IDS_MASKED = "c where scores[o + j, c] > 0, else -1"
IDS_ALL = "c"


def _head_node(graph: Graph):
    node = graph.producer(graph.roles["ids"])
    if node is None or node.op not in ("SsdDetections", "YoloDetections"):
        raise RuntimeError(f"the gluon head's ids blob {graph.roles['ids']!r} is not written by "
                           "SsdDetections/YoloDetections")
    return node


def without_nms(graph: Graph) -> Graph:
    """A copy of `graph` whose gluon head stops before box_nms: outputs `boxes`, `scores` (then
    the raw tensors, as before), roles likewise. `graph` itself is not changed."""
    node = _head_node(graph)
    taken = {b for n in graph if n is not node for b in n.outputs} | set(graph.inputs)
    clash = [b for b in OUTPUTS if b in taken]
    if clash:
        raise RuntimeError(f"blob names {clash} are taken; the pre-NMS outputs need them")
    old = list(node.outputs)
    head = dataclasses.replace(node, attrs={**node.attrs, "nms": "none"}, outputs=list(OUTPUTS))
    nodes = [head if n is node else n for n in graph.nodes]
    outputs = list(OUTPUTS) + [b for b in graph.outputs if b not in old]
    roles = {**{r: b for r, b in graph.roles.items() if r not in DETECTION_ROLES},
             **dict(zip(ROLES, OUTPUTS))}
    return dataclasses.replace(graph, nodes=nodes, outputs=outputs, roles=roles,
                               shapes=dict(graph.shapes))


def _groups(node, shapes: dict) -> tuple[list[int], str]:
    """The row groups' box counts and the id rule of the head node."""
    if node.op == "SsdDetections":
        return [int(node.weights["anchors"].shape[0])], IDS_MASKED
    return ([int(shapes[blob][2]) * int(shapes[blob][3]) * len(anchors)
             for blob, anchors in zip(node.inputs, node.attrs["anchors"])], IDS_ALL)


def manifest_section(graph: Graph) -> dict:
    """The manifest's `onnx.pre_nms` for a `without_nms` graph: its outputs, their layout, how
    GluonCV's box_nms input rows are made from them, and GluonCV's NMS parameters."""
    node = graph.producer(OUTPUTS[0])
    a = node.attrs
    groups, ids = _groups(node, graph.shapes)
    ssd = node.op == "SsdDetections"
    n, c = sum(groups), int(a["num_classes"])
    return {
        "outputs": {"boxes": f"[1, {n}, 4] x1, y1, x2, y2 in input pixels, GluonCV's decoded "
                             "boxes" + ("" if ssd else " (not clipped)"),
                    "scores": f"[1, {n}, {c}] per class: " + (
                        "GluonCV's softmax foreground scores after MultiPerClassDecoder's "
                        f"mask (score > {a['class_threshold']:g}, else 0)" if ssd else
                        "GluonCV's sigmoid(class) * sigmoid(objectness)")},
        "groups": groups,
        "rows": "GluonCV's box_nms input [1, C*N, 6] (id, score, x1, y1, x2, y2): for each "
                "group of n boxes starting at box o (groups in order), rows c*n + j = [id, "
                "scores[o + j, c], boxes[o + j]] for c < C, j < n (class-major)",
        "ids": ids,
        # the score mask already applied (an SSD's class threshold); a score this close to it
        # may fall on either side in float32
        "mask_threshold": float(a["class_threshold"]) if ssd else None,
        "nms": "left to the user: the model ends before NonMaxSuppression/TopK",
        "gluoncv_nms": {
            "op": "mxnet.nd.contrib.box_nms(rows, overlap_thresh, valid_thresh, topk, "
                  "id_index=0, score_index=1, coord_start=2, force_suppress=False), then the "
                  "first post_nms rows; only when 0 < overlap_thresh < 1",
            "overlap_thresh": float(a["nms_threshold"]),
            "valid_thresh": float(0.01 if ssd else a["valid_threshold"]),
            "topk": int(a["nms_topk"]),
            "post_nms": int(a["post_nms"]),
        },
    }


def gluon_rows(boxes: np.ndarray, scores: np.ndarray, section: dict) -> np.ndarray:
    """GluonCV's box_nms input rows [C*N, 6] from `boxes` [.., N, 4] and `scores` [.., N, C]
    (batch 1), by the manifest's `onnx.pre_nms` recipe."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    scores = np.asarray(scores)
    scores = scores.reshape(-1, scores.shape[-1])
    c = scores.shape[1]
    out, start = [], 0
    for n in section["groups"]:
        s = scores[start:start + n].T.reshape(-1)  # class-major: c*n + j
        ids = np.repeat(np.arange(c, dtype=scores.dtype), n)
        if section["ids"] == IDS_MASKED:
            ids = np.where(s > 0, ids, -1).astype(scores.dtype)
        out.append(np.concatenate([ids[:, None], s[:, None],
                                   np.tile(boxes[start:start + n], (c, 1))], axis=1))
        start += n
    return np.concatenate(out, axis=0)
