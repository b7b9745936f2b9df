"""The ONNX lowerings of the families' gluon heads (`SsdDetections`, `YoloDetections`):
GluonCV's own post-processing, exactly, from the subgraph builders beside this module.

Registered on import (the backend imports this module before it writes), beside the body
lowerings of `lower`, so the body writer stays unaware of detector families. A node with
`nms="none"` (`--onnx-nms none`, `pre_nms.without_nms`) is written up to the boxes and scores
box_nms would read, from the same decode subgraphs.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ...ir.graph import Node
from .. import Refused
from .lower import Builder, lowers
from .ssd_head import ssd_head_nodes, ssd_pre_nms_nodes
from .yolo_head import yolo_head_nodes, yolo_pre_nms_nodes


def _take(b: Builder, build, *args, **kwargs) -> None:
    """The builder's nodes and initializers into `b`, named under a fresh prefix; a limit it
    refuses (a top-k over TensorRT's 3840) is the node's refusal."""
    try:
        sub = build(*args, prefix=b.fresh(b.node.name) + "/", **kwargs)
    except ValueError as exc:
        raise Refused(str(exc)) from None
    b.nodes.extend(sub.nodes)
    b.initializers.extend(sub.initializers)


@lowers("YoloDetections")
def _yolo_detections(node: Node, b: Builder) -> None:
    a = node.attrs
    levels = [SimpleNamespace(height=b.shape(blob)[2], width=b.shape(blob)[3], stride=stride,
                              anchors=anchors, offsets=offsets)
              for blob, stride, anchors, offsets in zip(node.inputs, a["strides"], a["anchors"],
                                                        a["offsets"], strict=True)]
    if a.get("nms", "box_nms") == "none":
        boxes, scores = node.outputs
        _take(b, yolo_pre_nms_nodes, node.inputs, boxes, scores, levels=levels,
              num_classes=a["num_classes"])
        return
    nms = SimpleNamespace(nms_threshold=a["nms_threshold"], valid_threshold=a["valid_threshold"],
                          topk=a["nms_topk"], post_nms=a["post_nms"])
    ids, scores, bboxes = node.outputs
    _take(b, yolo_head_nodes, node.inputs, ids, scores, bboxes, levels=levels,
          num_classes=a["num_classes"], nms=nms)


@lowers("SsdDetections")
def _ssd_detections(node: Node, b: Builder) -> None:
    a = node.attrs
    loc, logits = node.inputs
    anchors = node.weights["anchors"]
    box_preds = b.op("Reshape", [loc, b.const("box_shape", [1, anchors.shape[0], 4], np.int64)])
    if a.get("nms", "box_nms") == "none":
        boxes, scores = node.outputs
        _take(b, ssd_pre_nms_nodes, box_preds, logits, boxes, scores, anchors=anchors,
              stds=a["stds"], clip=None, num_classes=a["num_classes"],
              class_thresh=a["class_threshold"], decoder=a["decoder"])
        return
    ids, scores, bboxes = node.outputs
    _take(b, ssd_head_nodes, box_preds, logits, ids, scores, bboxes, anchors=anchors,
          stds=a["stds"], clip=None, num_classes=a["num_classes"],
          nms_thresh=a["nms_threshold"], nms_topk=a["nms_topk"], post_nms=a["post_nms"],
          class_thresh=a["class_threshold"], decoder=a["decoder"])
