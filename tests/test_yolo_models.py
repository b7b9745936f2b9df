"""Every GluonCV zoo YOLOv3 (the six pretrained names and the three `_custom` builders) and two
custom YOLOv3s (other anchors, class counts and input sizes; one given only as an exported
symbol) convert to caffe-ssd and ncnn and pass the staged check in OpenCV DNN and ncnn: the
runtime's decode of its own raw outputs (2e-5), the three raw outputs within max(1e-4, 3 x
Gluon float32's own error) of float64 Gluon, and detections matched both ways above the
comparable score. The demo YOLOv3's mAP is the same in Gluon, OpenCV and ncnn to 1e-3."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from ncnn_rules import ncnnoptimize_leftovers
from test_models import _check as check_in_both_runtimes

from ssdconv import shipped
from ssdconv.convert import Options, convert
from ssdconv.demo.shapes_dataset import CLASSES, make_sample
from ssdconv.models import load_model, load_net
from ssdconv.verify.accuracy import evaluate
from ssdconv.verify.check import format_report, run_check

ZOO = [
    ("yolo3_darknet53_voc", None),
    ("yolo3_darknet53_coco", None),
    ("yolo3_mobilenet1.0_voc", None),
    ("yolo3_mobilenet1.0_coco", None),
    ("yolo3_mobilenet0.25_voc", None),
    ("yolo3_mobilenet0.25_coco", None),
    ("yolo3_darknet53_custom", ["person", "dog", "cat"]),
    ("yolo3_mobilenet1.0_custom", ["person", "car"]),
    ("yolo3_mobilenet0.25_custom", ["a", "b", "c", "d", "e"]),
]
BOTH = Options(targets=("caffe", "ncnn"))
DEMO_SUBSET = 60  # held-out test images; `ssdconv eval` gives the 500-image figure


def _check(conversion, images):
    """test_models' staged check; detections are required over the images, not on each:
    seeded random YOLOv3s saturate on some photos (every score ~1, so GluonCV's top-k leaves
    nothing comparable on that image). The decode stage is asserted on every one."""
    report = check_in_both_runtimes(conversion, images, each_image=False)
    for r in report.results:
        assert r.figures["box_err"] <= 2e-5 and r.figures["score_err"] <= 2e-5
    return report


@pytest.mark.slow
@pytest.mark.parametrize("name,classes", ZOO, ids=[z[0] for z in ZOO])
def test_zoo_yolov3(name, classes, tmp_path, sample_images):
    model = load_model(name, seed=0, classes=classes)
    conv = convert(model, tmp_path, BOTH)
    m = conv.manifest
    assert m["family"] == "yolov3" and m["label_offset"] == 1
    assert m["yolo"]["strides"] == [32.0, 16.0, 8.0]
    # GluonCV's anchors, read from the model: stride 32's are the largest
    assert m["yolo"]["anchors"][0] == [[116.0, 90.0], [156.0, 198.0], [373.0, 326.0]]
    assert len(m["blobs"]["outputs"]) == 3 and m["approximations"] == []
    assert m["yolo"]["proof"]["decode_max_rel_error"] <= 1e-4
    _check(conv, sample_images[:3])


def _custom_yolo(anchors, finest_grid: int, classes, nms=None):
    """A YOLOv3 of GluonCV's own class on a MobileNet 0.25 body, with these anchors; its grid
    offsets cover `finest_grid` cells at stride 8."""
    import mxnet as mx
    from gluoncv.model_zoo.mobilenet import get_mobilenet
    from gluoncv.model_zoo.yolo.yolo3 import YOLOV3

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mx.name.NameManager():
            base = get_mobilenet(0.25, pretrained=False)
            stages = [base.features[:33], base.features[33:69], base.features[69:-2]]
            net = YOLOV3(stages, [128, 64, 32], anchors, [8, 16, 32], classes=classes,
                         alloc_size=(finest_grid, finest_grid))
        if nms:
            net.set_nms(**nms)
        net.initialize(mx.init.Xavier())
    return net


def _seed_like_a_detector(model):
    """Seeded weights the way zoo conversions get them (`--seed`)."""
    from ssdconv.mxnet.seeded import seed_params

    constants = {n for n in model.graph.params if "anchor" in n or "offset" in n}
    seed_params(model.graph, 3, constants)
    return model


@pytest.mark.slow
def test_custom_yolov3_unequal_anchors_at_320_through_the_api(tmp_path, sample_images):
    """Two, three and four anchors per level, six classes, 320 px, NMS settings of its own
    (set_nms): read from the model, not assumed."""
    anchors = [[12, 14, 20, 40], [40, 70, 70, 50, 60, 120], [110, 90, 160, 200, 300, 280,
                                                              320, 160]]
    net = _custom_yolo(anchors, 40, [f"k{i}" for i in range(6)],
                       nms={"nms_thresh": 0.5, "nms_topk": 200, "post_nms": 50})
    model = _seed_like_a_detector(load_net(net, (320, 320), name="custom320"))
    conv = convert(model, tmp_path, BOTH)
    m = conv.manifest
    assert [len(a) for a in m["yolo"]["anchors"]] == [4, 3, 2]  # GluonCV's order: stride 32 first
    assert m["detection_output"] == {"nms_threshold": 0.5, "top_k": 200, "keep_top_k": 50,
                                     "confidence_threshold": 0.01}
    _check(conv, sample_images[:3])


@pytest.mark.slow
def test_custom_yolov3_from_exported_symbol_only_at_608(tmp_path, sample_images):
    """Other anchors and five classes, exported with net.export; only the symbol and params
    reach ssdconv, at 608 px (its grid offsets cover it)."""
    import mxnet as mx

    anchors = [[8, 10, 14, 26, 30, 20], [28, 56, 60, 40, 56, 110], [100, 80, 150, 180, 340, 300]]
    net = _custom_yolo(anchors, 76, [f"c{i}" for i in range(5)])
    seeded = _seed_like_a_detector(load_net(net, (608, 608), name="tmp"))
    for p in net.collect_params().values():
        p.set_data(mx.nd.array(seeded.graph.params[p.name]))
    net.hybridize()
    net(mx.nd.zeros((1, 3, 608, 608)))
    net.export(str(tmp_path / "custom608"))
    model = load_model(str(tmp_path / "custom608-symbol.json"), input_size=(608, 608))
    conv = convert(model, tmp_path / "out", BOTH)
    assert conv.manifest["input_shape"] == [1, 3, 608, 608]
    assert conv.manifest["yolo"]["anchors"][2] == [[8.0, 10.0], [14.0, 26.0], [30.0, 20.0]]
    _check(conv, sample_images[:2])


@pytest.mark.slow
def test_demo_yolov3_map_equal_in_exact_runtimes_bounded_in_approximate_ones():
    model = load_model(str(shipped.DEMO_YOLO_SYMBOL), classes=list(CLASSES))
    result = evaluate(model, lambda i: make_sample("test", i), DEMO_SUBSET,
                      runtimes=("gluon", "opencv", "ncnn", "onnxruntime", "openvino",
                                "ncnn-native", "ncnn-int8"),
                      calibration=lambda i: make_sample("train", i))
    maps = result.maps
    assert maps["gluon"] >= 0.7, maps  # a detector, not noise (0.81 on 500 images)
    assert abs(maps["opencv"] - maps["gluon"]) <= 1e-3, maps
    assert abs(maps["ncnn"] - maps["gluon"]) <= 1e-3, maps
    assert abs(maps["onnxruntime"] - maps["gluon"]) <= 1e-4, maps  # GluonCV's rows exactly
    assert abs(maps["openvino"] - maps["gluon"]) <= 1e-4, maps
    # ncnn's own layer, an approximation: measured, in the README; loosely bounded here
    assert 0.3 <= maps["ncnn-native"] < maps["gluon"], maps
    # int8 with the prediction convs float: 0.022 below Gluon here (0.036 with them int8)
    assert 0 < maps["gluon"] - maps["ncnn-int8"] <= 0.03, maps


def test_demo_yolov3_native_head_checks_against_its_own_arithmetic(tmp_path, sample_images):
    model = load_model(str(shipped.DEMO_YOLO_SYMBOL), classes=list(CLASSES))
    conv = convert(model, tmp_path, Options(targets=("ncnn",), yolo_head="native"))
    m = json.loads((tmp_path / "shapes_yolo3.json").read_text())
    assert m["head_options"] == {"yolo_head": "native"} and m["yolo"]["head"] == "native"
    assert [a["runtimes"] for a in m["approximations"]] == [["ncnn"]]
    assert "Yolov3DetectionOutput" in (tmp_path / "shapes_yolo3.param").read_text()
    report = run_check(conv, sample_images)
    assert report.ok, format_report(report)
    for r in report.results:
        assert r.det.max_score_diff <= 1e-5 and r.det.matched == r.det.compared_gluon
        found = r.figures["gluon_found"]
        assert 0 <= found <= r.figures["gluon_compared"]
    # the informational distance is measured, not assumed: the native head loses some
    assert sum(r.figures["gluon_found"] for r in report.results) < \
        sum(r.figures["gluon_compared"] for r in report.results)


def test_demo_yolov3_exact_head_in_both_runtimes(tmp_path, sample_images):
    model = load_model(str(shipped.DEMO_YOLO_SYMBOL), classes=list(CLASSES))
    conv = convert(model, tmp_path, BOTH)
    report = _check(conv, sample_images)
    diffs = [r.det.max_score_diff for r in report.results]
    assert max(diffs) <= 2e-6, diffs
    # nothing left for ncnnoptimize (its rules, without the tool: tests/ncnn_rules.py)
    assert not ncnnoptimize_leftovers(conv.files["param"])


@pytest.mark.slow
def test_zoo_yolov3_with_save_parameters_weights_and_new_classes(tmp_path, sample_images):
    """GluonCV's fine-tuning flow: a zoo YOLOv3, reset_class, save_parameters; converted from
    the zoo name with --params and --classes (the file's class count is read from it)."""
    import mxnet as mx

    from ssdconv.mxnet.load import reset_classes, zoo_net

    classes = ["person", "car", "bike"]
    net = zoo_net("yolo3_mobilenet0.25_voc")
    reset_classes(net, classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net.initialize(mx.init.Xavier(), force_reinit=True)
        net(mx.nd.zeros((1, 3, 320, 320)))
    net.save_parameters(str(tmp_path / "mine.params"))
    model = load_model("yolo3_mobilenet0.25_voc", params=str(tmp_path / "mine.params"),
                       classes=classes, input_size=(320, 320))
    conv = convert(model, tmp_path / "out", BOTH)
    assert conv.manifest["classes"] == classes
    assert conv.manifest["notes"][0].endswith("mine.params")
    report = run_check(conv, sample_images[:2])
    assert report.ok, format_report(report)


def test_yolov3_decode_stage_catches_a_wrong_anchor(tmp_path, sample_images):
    """The decode stage is not vacuous: the same conversion with one anchor changed in the
    caffemodel's Scale weights fails it in OpenCV."""
    from ssdconv.backend.caffe import caffe_ssd_pb2 as pb

    model = load_model(str(shipped.DEMO_YOLO_SYMBOL), classes=list(CLASSES))
    conv = convert(model, tmp_path, Options(targets=("caffe",)))
    net = pb.NetParameter()
    path = tmp_path / "shapes_yolo3.caffemodel"
    net.ParseFromString(path.read_bytes())
    (layer,) = [la for la in net.layer if la.name.startswith("yolo_size")]
    values = np.array(layer.blobs[0].data, np.float32)
    values[0] *= 1.01
    del layer.blobs[0].data[:]
    layer.blobs[0].data.extend(values.tolist())
    path.write_bytes(net.SerializeToString())
    report = run_check(conv, sample_images[:1])
    (result,) = report.results
    assert not result.stages_ok and result.figures["box_err"] > 1e-4


def test_verify_with_the_demo_yolov3_preset_takes_images_as_images(tmp_path):
    """`ssdconv verify --config PRESET IMAGE`: the preset names the model, IMAGE is an image."""
    import subprocess
    import sys

    preset = shipped.DEMO_DIR / "shapes_yolo3.yaml"
    image = str(shipped.photos()[2])
    proc = subprocess.run([sys.executable, "-m", "ssdconv", "verify", "--config", str(preset),
                           image], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "verdict: PASS" in proc.stdout and "decode" in proc.stdout
