"""A YOLOv3 ssdconv cannot write as asked is refused in one line naming what and where, exit 2,
nothing written: unequal anchors for ncnn's native layer, the native layer with a caffe target
or an input size it would mis-scale, a head option given to an SSD, a YOLOv3 exported without
NMS."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
from test_bad_inputs import assert_user_error, no_model_files, run_cli
from test_yolo_models import _custom_yolo

from ssdconv import shipped

DEMO = [str(shipped.DEMO_YOLO_SYMBOL), "--classes", "circle,square,triangle,star"]


def _export(net, prefix, size: int) -> str:
    import mxnet as mx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net.hybridize()
        net(mx.nd.zeros((1, 3, size, size)))
        net.export(str(prefix))
    return f"{prefix}-symbol.json"


def test_native_head_needs_equal_anchors_per_level(tmp_path):
    anchors = [[12, 14, 20, 40], [40, 70, 70, 50, 60, 120], [110, 90, 160, 200, 300, 280]]
    symbol = _export(_custom_yolo(anchors, 40, ["a", "b"]), tmp_path / "unequal", 320)
    out = tmp_path / "out"
    proc = run_cli("convert", symbol, "--input-size", "320", "--target", "ncnn",
                   "--yolo-head", "native", "-o", str(out))
    assert_user_error(proc, "Yolov3DetectionOutput", "same number of anchors", "level 0 has 3",
                      "without --yolo-head native")
    assert no_model_files(out)
    # the exact head converts the same model
    ok = run_cli("convert", symbol, "--input-size", "320", "--target", "ncnn", "-o", str(out))
    assert ok.returncode == 0, ok.stderr


def test_native_head_is_ncnn_only(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("convert", *DEMO, "--target", "all", "--yolo-head", "native", "-o", str(out))
    assert_user_error(proc, "--yolo-head native", "--target ncnn")
    assert no_model_files(out)


def test_native_head_refuses_an_input_it_would_mis_scale(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("convert", *DEMO, "--input-size", "240", "--target", "ncnn", "--yolo-head",
                   "native", "-o", str(out))
    assert_user_error(proc, "level 0", "256x256", "240x240")
    assert no_model_files(out)


def test_yolo_head_option_on_an_ssd(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("convert", "ssd_300_mobilenet0.25_voc", "--seed", "0", "--target", "ncnn",
                   "--yolo-head", "native", "-o", str(out))
    assert_user_error(proc, "--yolo-head applies to a YOLOv3 detector", "an SSD detector")
    assert no_model_files(out)


def test_unknown_yolo_head(tmp_path):
    proc = run_cli("convert", *DEMO, "--yolo-head", "fast", "-o", str(tmp_path / "out"))
    assert_user_error(proc, "--yolo-head", "exact, native")


def test_yolov3_exported_without_nms(tmp_path):
    net = _custom_yolo([[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119],
                        [116, 90, 156, 198, 373, 326]], 40, ["a"], nms={"nms_thresh": 0})
    symbol = _export(net, tmp_path / "nonms", 320)
    out = tmp_path / "out"
    proc = run_cli("convert", symbol, "--input-size", "320", "-o", str(out))
    assert_user_error(proc, "without NMS", "set_nms(0.45)")
    assert no_model_files(out)


@pytest.mark.parametrize("head", ["exact", "native"])
def test_a_layer_named_like_a_head_blob(tmp_path, head):
    """A model layer already called `detection_out` (the head's detections blob) is refused
    before either head is written, rather than read in place of the detections."""
    symbol = json.loads(shipped.DEMO_YOLO_SYMBOL.read_text())
    relu = next(n for n in symbol["nodes"] if n["name"] == "mobilenet0_relu0_fwd")
    relu["name"] = "detection_out"
    prefix = tmp_path / "renamed"
    Path(f"{prefix}-symbol.json").write_text(json.dumps(symbol))
    shutil.copy(shipped.DEMO_YOLO_PARAMS, f"{prefix}-0000.params")
    out = tmp_path / "out"
    proc = run_cli("convert", f"{prefix}-symbol.json", "--classes", DEMO[2], "--target",
                   "ncnn", "--yolo-head", head, "-o", str(out))
    assert_user_error(proc, "'detection_out'", "rename it in the model")
    assert no_model_files(out)
