"""YOLOv3's own options, for the one option table (`ssdconv.options`). A module of its own so
the command line can read it without importing the family (which imports MXNet)."""

from __future__ import annotations

from .. import values
from ..option import Option

NAME = "yolov3"  # the family's name: the manifest's `family`, the options' owner
YOLO_HEADS = ("exact", "native")  # YOLOv3's ncnn head: GluonCV's decode and NMS, or ncnn's layer


def yolo_head(value) -> str:
    """exact (the head reproducing GluonCV's detections) or native (ncnn's own
    Yolov3DetectionOutput, an approximation: ssdconv.yolo.native)."""
    return values.choice(value, YOLO_HEADS)


OPTIONS = (NAME, (
    Option("yolo_head", "exact", yolo_head,
           "YOLOv3 in ncnn: exact (default: GluonCV's decode and per-class NMS) or native "
           "(ncnn's Yolov3DetectionOutput, as ncnn's examples use; an approximation, ncnn "
           "target only)", flag="--yolo-head", commands=("convert", "verify")),
))
