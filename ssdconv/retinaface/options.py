"""RetinaFace's own options, for the one option table (`ssdconv.options`). A module of its own so
the command line reads it without importing the family (which imports MXNet)."""

from __future__ import annotations

from .. import values
from ..option import Option

NAME = "retinaface"  # the family's name: the manifest's `family`, the options' owner
# insightface's inference anchors (retinaface.py, network 'net3'): per stride its scales;
# base size 16 and ratio 1 for all (facts §12.1.4)
DEFAULT_ANCHORS = "32:32,16;16:8,4;8:2,1"


def anchors(value) -> str:
    """STRIDE:SCALE,SCALE;... (each stride's anchor scales, in output order); the syntax is
    checked here, before any model loads, and the scales against the predictors' channels
    when the head is recognised (`ssdconv.retinaface.anchors`)."""
    text = values.text(value)
    from .anchors import parse_scales

    parse_scales(text)
    return text


OPTIONS = (NAME, (
    Option("retinaface_anchors", DEFAULT_ANCHORS, anchors,
           "RetinaFace anchors: STRIDE:SCALE,...;... per output stride (default insightface's "
           "32:32,16;16:8,4;8:2,1, base size 16, ratio 1)", flag="--retinaface-anchors",
           commands=("convert", "verify", "inspect")),
    Option("retinaface_score", 0.8, values.fraction,
           "RetinaFace: the face score the decode keeps (default 0.8, insightface's test.py and "
           "ncnn's example)", flag="--retinaface-score", commands=("convert", "verify")),
    Option("retinaface_nms", 0.4, values.fraction,
           "RetinaFace: the decode's NMS IoU threshold (default 0.4)", flag="--retinaface-nms",
           commands=("convert", "verify")),
))
