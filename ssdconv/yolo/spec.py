"""What a recognised GluonCV YOLOv3 head is, as numbers read from the model.

Every value here comes from the source graph (anchors and grid offsets from its constant
parameters, strides from its scalar multiplies, NMS settings from its `_contrib_box_nms` and
the slice after it), never from GluonCV's defaults; `ssdconv.yolo.decode.prove` then checks
them against the model's own pre-NMS output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class YoloLevel:
    """One output level, in GluonCV's order (stride 32, 16, 8 for the zoo models)."""

    index: int
    conv: int  # source node index of the prediction conv
    output: int  # source node index of the level's (1, C*H*W*A, 6) rows
    height: int
    width: int
    stride: float
    anchors: tuple[tuple[float, float], ...]  # (w, h) in input pixels, per anchor
    offsets: np.ndarray  # (H, W, 2) grid offsets (x, y) per cell, as the model holds them

    @property
    def num_anchors(self) -> int:
        return len(self.anchors)

    @property
    def num_boxes(self) -> int:
        return self.height * self.width * self.num_anchors


@dataclass(frozen=True)
class YoloNms:
    """GluonCV's box_nms settings (`YOLOV3.set_nms`) as the graph holds them."""

    nms_threshold: float  # overlap_thresh: suppress same-class boxes with IoU above it
    valid_threshold: float  # valid_thresh: keep scores strictly above it
    topk: int  # candidates (over all classes) entering NMS; -1: all
    post_nms: int  # detections kept after NMS; -1: all


@dataclass(frozen=True)
class YoloSpec:
    levels: tuple[YoloLevel, ...]
    num_classes: int
    image_h: int
    image_w: int
    nms: YoloNms
    nms_node: int  # source node index of the box_nms

    @property
    def num_boxes(self) -> int:
        return sum(lv.num_boxes for lv in self.levels)
