"""The shipped demo model (trained on generated shapes) keeps its accuracy through conversion:
VOC07 mAP of OpenCV-caffe and ncnn fp32 within 0.001 of Gluon on held-out generated images,
onnxruntime's and OpenVINO's (GluonCV's rows exactly) within 1e-4,
and the model really detects (its Gluon mAP is far from chance)."""

from __future__ import annotations

import pytest

from ssdconv import shipped
from ssdconv.demo.shapes_dataset import CLASSES, make_sample
from ssdconv.models import load_model
from ssdconv.verify.accuracy import evaluate

SYMBOL = str(shipped.DEMO_SYMBOL)
SUBSET = 60  # the full figure (>= 500 images) is `ssdconv eval`; this keeps the suite quick


@pytest.mark.slow
def test_accuracy_survives_conversion():
    model = load_model(SYMBOL, classes=list(CLASSES))
    result = evaluate(model, lambda i: make_sample("test", i), SUBSET)
    maps = result.maps
    assert maps["gluon"] >= 0.7, maps  # a detector, not noise (0.85+ on the full set)
    assert abs(maps["opencv"] - maps["gluon"]) <= 0.001, maps
    assert abs(maps["ncnn"] - maps["gluon"]) <= 0.001, maps
    # ONNX with GluonCV's own post-processing: the same rows, so the same mAP
    assert abs(maps["onnxruntime"] - maps["gluon"]) <= 1e-4, maps
    assert abs(maps["openvino"] - maps["gluon"]) <= 1e-4, maps
    # the headless model in OpenCV, then the generated C tail: GluonCV's rows again
    assert abs(maps["opencv-headless"] - maps["gluon"]) <= 1e-4, maps
    assert maps["ncnn-fp16"] >= maps["gluon"] - 0.05, maps  # reported, loosely bounded
