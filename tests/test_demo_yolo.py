"""The shipped demo YOLOv3 (samples/demo/shapes_yolo3-*) is the graph the YOLOv3 converter must
get right, small, and a detector: its exported symbol holds GluonCV's YOLOv3 head (three
prediction convs with A*(5+C) channels, the decode, per-class box_nms), the neck's BatchNorm +
LeakyReLU 0.1 and repeat-built upsample, and the backbone's depthwise convolutions; the anchors
in its params file are the ones yolo_model.py declares; it scores far above chance."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from ssdconv import shipped
from ssdconv.demo.shapes_dataset import CLASSES
from ssdconv.demo.yolo_model import ANCHORS, STRIDES

PER_ANCHOR = 5 + len(CLASSES)


def _nodes() -> list[dict]:
    return [n for n in json.loads(shipped.DEMO_YOLO_SYMBOL.read_text())["nodes"]
            if n["op"] != "null"]


def test_symbol_has_the_yolov3_head_neck_and_backbone_ops():
    nodes = _nodes()
    ops = Counter(n["op"] for n in nodes)
    predictions = [n for n in nodes if n["op"] == "Convolution"
                   and n["attrs"]["num_filter"] == str(3 * PER_ANCHOR)]
    assert len(predictions) == 3 and all("yolooutputv3" in n["name"] for n in predictions)
    assert ops["_contrib_box_nms"] == 1
    nms = next(n["attrs"] for n in nodes if n["op"] == "_contrib_box_nms")
    assert (nms["overlap_thresh"], nms["topk"], nms["force_suppress"]) == ("0.45", "400", "False")
    for op, count in {"sigmoid": 9, "exp": 3, "tile": 3, "_arange": 3, "repeat": 4,
                      "slice_like": 5}.items():  # decode per level; upsample x2; crops
        assert ops[op] == count, (op, ops[op])
    leaky = [n["attrs"] for n in nodes if n["op"] == "LeakyReLU"]
    assert leaky and all(a["act_type"] == "leaky" and float(a["slope"]) == 0.1 for a in leaky)
    assert ops["BatchNorm"] >= len(leaky) + 20  # the neck's and the backbone's
    assert any(int(n["attrs"].get("num_group", 1)) > 1 for n in nodes
               if n["op"] == "Convolution"), "no depthwise convolution"


def test_params_are_small_and_hold_the_declared_anchors():
    import mxnet as mx

    assert shipped.DEMO_YOLO_PARAMS.stat().st_size < 6e6
    params = mx.nd.load(str(shipped.DEMO_YOLO_PARAMS))
    anchors = [v.asnumpy().ravel().tolist() for k, v in sorted(params.items())
               if "anchor_" in k]
    # stored in GluonCV's output order: stride 32 first
    assert anchors == [list(map(float, a)) for a in ANCHORS[::-1]]
    offsets = [v for k, v in params.items() if "offset_" in k]
    assert all(v.shape == (1, 1, 32, 32, 2) for v in offsets)  # the stride-8 map of 256 px
    assert list(STRIDES) == [8, 16, 32]


@pytest.mark.slow
def test_exported_yolo_detects():
    from ssdconv.demo.evaluate import evaluate_map, load_exported
    from ssdconv.demo.yolo_model import val_transform

    net = load_exported(str(shipped.DEMO_YOLO_PREFIX))
    result = evaluate_map(net, "test", count=48, transform=val_transform())
    assert result.map >= 0.5, result  # a detector, not noise
    assert np.all(np.array(list(result.per_class.values())) > 0.2), result.per_class
