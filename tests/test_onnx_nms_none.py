"""`--onnx-nms none`: the ONNX model ends at GluonCV's decoded boxes and per-class scores, with
none of the ops NPU toolchains commonly lack, and the check proves, in onnxruntime and OpenVINO
against the real MXNet graph, that the manifest's recipe rebuilds the rows GluonCV's box_nms
reads: every row, in order, ids equal, scores and boxes (pixels) within max(1e-4, 3 x Gluon
float32's own distance from float64) of float64 Gluon, the raw tensors' rule.

Measured (2 photos, both runtimes): scores within 6e-7 and boxes within 5e-5 px of float64
Gluon (demo SSD and YOLOv3), against bounds of 1e-4 and 1e-4..1.4e-4 px.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from test_bad_inputs import assert_user_error, run_cli

from ssdconv import shipped
from ssdconv.backend.onnx.pre_nms import gluon_rows
from ssdconv.convert import Options, convert
from ssdconv.demo.shapes_dataset import CLASSES
from ssdconv.models import load_model
from ssdconv.verify.check import format_report, run_check
from ssdconv.verify.gluon_runner import GluonRunner
from ssdconv.verify.images import load_rgb
from ssdconv.verify.runners import runners_for

NO_NMS = Options(targets=("onnx",), onnx_nms="none")
DEMO_SSD = shipped.DEMO_DIR / "shapes_ssd-symbol.json"
DEMO_YOLO = shipped.DEMO_DIR / "shapes_yolo3-symbol.json"
RUNTIMES = {"onnxruntime", "openvino"}
# what NPU toolchains (Rockchip's RKNN, most others) commonly lack
NPU_MISSING = {"NonMaxSuppression", "TopK", "GatherND", "ScatterND", "Loop", "If", "NonZero"}


def demo(which: str):
    path = DEMO_SSD if which == "ssd" else DEMO_YOLO
    return load_model(str(path), classes=list(CLASSES), input_size=(256, 256))


def minimal_opset_ssd(name: str = "ssd_300_mobilenet0.25_voc", size: int = 300):
    """A seeded zoo SSD built with GluonCV's minimal_opset decoder (raw ops, glibc's expf), as
    its pretrained zoo models are; `load_model(name, seed=...)` builds the box_decode form."""
    import mxnet as mx

    from ssdconv.models import _constants
    from ssdconv.mxnet.load import load_block, zoo_net
    from ssdconv.mxnet.seeded import seed_params

    net = zoo_net(name)
    net.bbox_decoder._minimal_opset = True  # before the first forward (test_models.py)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net.initialize()
        seeded = load_block(net, (size, size), name="x")
        seed_params(seeded.graph, 0, _constants(net))
        for p in net.collect_params().values():
            p.set_data(mx.nd.array(seeded.graph.params[p.name]))
        model = load_block(net, (size, size), name="minimal", classes=list(net.classes))
    assert not any(n.op == "_contrib_box_decode" for n in model.graph.nodes)
    return model


def check_pre_nms(conversion, images) -> list:
    """The staged check in both runtimes: PASS, each result's pre-NMS stage judged on every
    row within its bounds, ids equal; returns the pre-NMS figures."""
    report = run_check(conversion, images)
    text = format_report(report)
    assert {r.runtime for r in report.results} == RUNTIMES, text
    assert report.ok, text
    assert "pre-NMS" in text and "verdict: PASS" in text, text
    figures = []
    for r in report.results:
        assert r.det is None and r.pre_nms is not None and r.pre_nms.ok, text
        f = r.pre_nms.figures
        assert f["score_err"] <= f["score_bound"] and f["box_err_px"] <= f["box_bound_px"], text
        assert f["id_mismatches"] == 0, text
        # from float32 Gluon: scores to a few ulps; boxes as far as float32 Gluon is from
        # float64 (seeded YOLOv3 boxes are thousands of pixels wide: ~1e-2 px there)
        assert f["score_diff32"] <= 1e-5 and f["box_diff32_px"] <= f["box_bound_px"], text
        figures.append(f)
    return figures


def assert_npu_friendly(conversion, boxes: int, classes: int) -> None:
    model = onnx.load(conversion.files["onnx"])
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert not ops & NPU_MISSING, sorted(ops & NPU_MISSING)
    outs = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim]
            for o in model.graph.output}
    assert list(outs)[:2] == ["boxes", "scores"]
    assert outs["boxes"] == [1, boxes, 4] and outs["scores"] == [1, boxes, classes]
    assert len(outs) > 2  # the raw tensors stay outputs


@pytest.mark.parametrize("which,boxes", [("ssd", None), ("yolo", 192 + 768 + 3072)])
def test_demo_model_without_nms(which, boxes, tmp_path, sample_images):
    conv = convert(demo(which), tmp_path, NO_NMS)
    section = conv.manifest["onnx"]
    pre = section["pre_nms"]
    boxes = boxes or pre["groups"][0]
    assert_npu_friendly(conv, boxes, len(CLASSES))
    assert section["nms"] == "none" and conv.manifest["head_options"]["onnx_nms"] == "none"
    assert section["blobs"]["pre_nms_boxes"] == "boxes"
    assert "ids" not in section["blobs"] and section["openvino_iou_threshold"] == {}
    assert sum(pre["groups"]) == boxes and (len(pre["groups"]) == 3) == (which == "yolo")
    assert pre["gluoncv_nms"] == {**pre["gluoncv_nms"], "overlap_thresh": 0.45,
                                  "valid_thresh": 0.01, "topk": 400, "post_nms": 100}
    assert "left to the user" in pre["nms"]
    check_pre_nms(conv, sample_images[:2])


def test_documented_rows_are_gluoncvs_box_nms_input(tmp_path, sample_images):
    """The recipe, applied by a user to onnxruntime's outputs, gives box_nms's float32 input
    rows of the real MXNet graph: ids exactly, scores and boxes to a few float32 ulps."""
    conv = convert(demo("ssd"), tmp_path, NO_NMS)
    runner, = runners_for(conv, ("onnxruntime",))
    rgb = load_rgb(sample_images[0], 256, 256)
    rt = runner.run(rgb)
    want = GluonRunner.for_conversion(conv).run(rgb, pre_nms=True)["pre_nms32"]
    got = gluon_rows(rt["pre_nms_boxes"], rt["pre_nms_scores"], conv.manifest["onnx"]["pre_nms"])
    assert got.shape == want.shape == (len(CLASSES) * rt["pre_nms_boxes"].shape[0], 6)
    assert np.array_equal(got[:, 0], want[:, 0]) and (got[:, 0] == -1).any()
    np.testing.assert_allclose(got[:, 1:], want[:, 1:], rtol=0, atol=1e-4)


# both SSD decoder forms (box_decode: built without pretrained weights; minimal_opset: as
# GluonCV's pretrained zoo models), and a YOLOv3; each a few seconds, so none is `sweep`
@pytest.mark.parametrize("name", ["ssd_300_mobilenet0.25_voc", "minimal_opset",
                                  "yolo3_mobilenet0.25_voc"])
def test_zoo_model_without_nms(name, tmp_path, sample_images):
    model = minimal_opset_ssd() if name == "minimal_opset" else load_model(name, seed=0)
    conv = convert(model, tmp_path, NO_NMS)
    pre = conv.manifest["onnx"]["pre_nms"]
    assert_npu_friendly(conv, sum(pre["groups"]), 20)
    check_pre_nms(conv, sample_images[:1])


def test_preset_key(tmp_path, sample_images):
    preset = tmp_path / "p.yaml"
    preset.write_text(f"model: {DEMO_YOLO}\nclasses: [{', '.join(CLASSES)}]\n"
                      "input_size: [256, 256]\ntarget: onnx\nonnx_nms: none\n")
    proc = run_cli("convert", "--config", str(preset), "-o", str(tmp_path / "out"),
                   "--verify", sample_images[0])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pre-NMS" in proc.stdout and "verdict: PASS" in proc.stdout, proc.stdout


def test_cli_convert_verify_prints_the_pre_nms_stage(tmp_path, sample_images):
    proc = run_cli("convert", str(DEMO_SSD), "--classes", ",".join(CLASSES), "--input-size",
                   "256", "--target", "onnx", "--onnx-nms", "none", "-o", str(tmp_path / "out"),
                   "--verify", sample_images[0])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pre-NMS" in proc.stdout and "verdict: PASS" in proc.stdout, proc.stdout


def test_onnx_nms_for_another_target_is_refused(tmp_path):
    proc = run_cli("convert", str(DEMO_YOLO), "--classes", ",".join(CLASSES),
                   "--input-size", "256", "--target", "caffe", "--onnx-nms", "none",
                   "-o", str(tmp_path / "out"))
    assert_user_error(proc, "--onnx-nms", "add --target onnx")
    assert not (tmp_path / "out").exists()


def test_a_bad_onnx_nms_value_is_refused(tmp_path):
    proc = run_cli("convert", str(DEMO_YOLO), "--classes", ",".join(CLASSES),
                   "--input-size", "256", "--target", "onnx", "--onnx-nms", "soft",
                   "-o", str(tmp_path / "out"))
    assert_user_error(proc, "--onnx-nms", "box_nms, none", "soft")
    assert not (tmp_path / "out").exists()
