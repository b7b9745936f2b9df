"""The ONNX target: NAME.onnx with GluonCV's own post-processing, run by onnxruntime and OpenVINO
and compared with GluonCV's detections row for row.

Each conversion here passes `onnx.checker.check_model(full_check=True)`, and the staged check
runs it in both runtimes: the raw tensors within max(1e-4, 3 x Gluon float32's own error) of
float64 Gluon, then GluonCV's ids, scores and bboxes row for row (same label at the same row,
score within 1e-3, box IoU >= 0.99); a row found at another position (equal scores within the
tolerance) is listed as a tie, never hidden. OpenVINO runs with the manifest's IoU threshold for
its `>=` NMS rule (the next float32 above MXNet's), which makes it exact too.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from test_bad_inputs import assert_user_error, run_cli

from ssdconv import shipped
from ssdconv.convert import Options, convert
from ssdconv.demo.shapes_dataset import CLASSES
from ssdconv.models import load_model
from ssdconv.verify.check import format_report, run_check

ONNX = Options(targets=("onnx",))
DEMO_YOLO = shipped.DEMO_DIR / "shapes_yolo3-symbol.json"
RUNTIMES = {"onnxruntime", "openvino"}


def demo_yolo():
    return load_model(str(DEMO_YOLO), classes=list(CLASSES), input_size=(256, 256))


def check_row_for_row(conversion, images, min_rows: int = 1):
    """The staged check in both runtimes: PASS, every image's rows compared, no row unmatched,
    and at least `min_rows` rows over the images."""
    report = run_check(conversion, images)
    text = format_report(report)
    assert {r.runtime for r in report.results} == RUNTIMES, text
    assert report.ok, text
    for r in report.results:
        assert r.det.cutoff == -np.inf and r.det.compared_gluon == r.det.compared_runtime, text
    assert sum(r.det.matched for r in report.results) >= min_rows, text
    return report


def test_demo_yolov3_detects_gluoncv_rows_in_both_runtimes(tmp_path, sample_images):
    conv = convert(demo_yolo(), tmp_path, ONNX)
    onnx.checker.check_model(onnx.load(conv.files["onnx"]), full_check=True)
    section = conv.manifest["onnx"]
    assert section["opset"] == 13
    assert section["blobs"]["ids"] == "ids" and len(section["blobs"]["outputs"]) == 3
    (name, value), = section["openvino_iou_threshold"].items()
    assert np.float32(value) == np.nextafter(np.float32(0.45), np.float32(1))
    assert set(conv.files) == {"onnx", "json"}
    report = check_row_for_row(conv, sample_images, min_rows=20)
    assert "row for row" in format_report(report)


def test_the_written_model_is_gluoncvs_three_outputs(tmp_path, sample_images):
    """ids [1, P, 1], scores [1, P, 1], bboxes [1, P, 4] in input pixels, -1 padded, then the
    raw tensors: code written for `ids, scores, bboxes = net(x)` runs on it unchanged."""
    import onnxruntime as ort

    conv = convert(demo_yolo(), tmp_path, ONNX)
    session = ort.InferenceSession(conv.files["onnx"], providers=["CPUExecutionProvider"])
    outs = session.get_outputs()
    assert [o.name for o in outs[:3]] == ["ids", "scores", "bboxes"]
    assert [o.shape for o in outs[:3]] == [[1, 100, 1], [1, 100, 1], [1, 100, 4]]
    from ssdconv.verify.images import load_rgb, network_input

    x = network_input(load_rgb(sample_images[0], 256, 256), conv.manifest)
    ids, scores, boxes = session.run(["ids", "scores", "bboxes"], {"data": x})
    padded = ids[0, :, 0] < 0
    assert padded.any() and (scores[0, padded] == -1).all() and (boxes[0, padded] == -1).all()
    assert boxes[0, ~padded].max() > 1.5  # pixels, not normalised


def test_an_option_of_another_target_is_refused(tmp_path):
    proc = run_cli("convert", str(DEMO_YOLO), "--classes", ",".join(CLASSES),
                   "--input-size", "256", "--target", "onnx", "--ncnn-fp16",
                   "-o", str(tmp_path / "out"))
    assert_user_error(proc, "--ncnn-fp16", "add --target ncnn")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage", ["truncated", "missing", "other"])
def test_a_file_a_runtime_cannot_load_is_one_line(tmp_path, damage):
    conv = convert(demo_yolo(), tmp_path / "conv", ONNX)
    path = tmp_path / "conv" / "shapes_yolo3.onnx"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:5000])
    elif damage == "missing":
        path.unlink()
    else:
        path.write_bytes(b"\x08\x07 not a model")
    proc = run_cli("verify", str(DEMO_YOLO), "--classes", ",".join(CLASSES),
                   "--input-size", "256", "--converted", conv.files["json"],
                   str(shipped.SAMPLES_DIR / "astronaut.jpg"))
    needle = "missing" if damage == "missing" else "cannot load"
    assert_user_error(proc, str(path) if damage != "missing" else "shapes_yolo3.onnx", needle)


def test_manifest_lists_the_onnx_section(tmp_path):
    conv = convert(demo_yolo(), tmp_path, ONNX)
    manifest = json.loads(open(conv.files["json"]).read())
    assert manifest["files"] == ["shapes_yolo3.onnx", "shapes_yolo3.json"]
    assert manifest["onnx"]["node_count"] > 100


# Every zoo SSD architecture (test_models' list), the three YOLOv3 sizes, and both demos' kinds
# of custom model. `make test` runs the REPRESENTATIVE ones (both decoder forms, Lite anchors,
# a 512 input, a non-square-multiple YOLOv3 input); `make test-all` runs every one (`sweep`).
SWEEP = [
    ("ssd_300_vgg16_atrous_voc", {}),
    ("ssd_512_vgg16_atrous_coco", {}),
    ("ssd_512_resnet18_v1_voc", {}),
    ("ssd_512_resnet50_v1_coco", {}),
    ("ssd_512_resnet101_v2_voc", {}),
    ("ssd_512_resnet152_v2_voc", {}),
    ("ssd_300_resnet34_v1b_custom", {"classes": ["person", "dog", "cat", "car"]}),
    ("ssd_512_mobilenet1.0_voc", {}),
    ("ssd_300_mobilenet0.25_coco", {}),
    ("ssd_300_mobilenet1.0_lite_coco", {}),
    ("yolo3_darknet53_voc", {}),
    ("yolo3_mobilenet1.0_coco", {}),
    ("yolo3_mobilenet0.25_voc", {"input_size": (300, 270)}),
    ("yolo3_mobilenet0.25_custom", {"classes": ["a", "b", "c"]}),
]
REPRESENTATIVE = {"ssd_300_vgg16_atrous_voc", "ssd_300_mobilenet1.0_lite_coco",
                  "ssd_512_mobilenet1.0_voc", "yolo3_mobilenet0.25_voc"}


@pytest.mark.parametrize("name,kw", [
    pytest.param(n, kw, id=n, marks=() if n in REPRESENTATIVE else (pytest.mark.sweep,))
    for n, kw in SWEEP])
def test_zoo_model_detects_gluoncv_rows(name, kw, tmp_path, sample_images):
    model = load_model(name, seed=1, **kw)
    conv = convert(model, tmp_path, ONNX)
    onnx.checker.check_model(onnx.load(conv.files["onnx"]), full_check=True)
    check_row_for_row(conv, sample_images[:2], min_rows=20)
