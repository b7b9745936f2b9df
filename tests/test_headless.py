"""--headless: the network up to its raw prediction maps, for NPU toolchains, with the generated
C tail beside it (ssdconv/headless, ssdconv/tail).

Real parts only: the headless caffe model runs in OpenCV, the ONNX one in onnxruntime and
OpenVINO, the ncnn one in ncnn; their maps are compared with float64 MXNet (the check's raw
stage) and with the full model's own maps in the same runtime (bit for bit: the same layers),
and the compiled C tail's rows with GluonCV's row for row. The constraint lint reads the
written prototxt/ONNX files, and names what the full (headed) model breaks.

Measured here (AVX-512, OpenCV 4.11, onnxruntime 1.31.1, OpenVINO 2026.4.1, ncnn): on the demo
SSD and demo YOLOv3 every runtime's headless maps are within 1.1e-5 of float64 MXNet (bound
1e-4) and the C tail's rows equal GluonCV's (100 of 100 SSD rows, 53 and 23 YOLOv3 rows on two
photos), scores within 1.3e-6, boxes within 1e-3 px.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from test_bad_inputs import assert_user_error, run_cli

from ssdconv import shipped
from ssdconv.backend.caffe.npu_lint import lint as lint_caffe
from ssdconv.backend.onnx.npu_lint import lint as lint_onnx
from ssdconv.convert import Options, convert
from ssdconv.models import load_model
from ssdconv.verify.check import run_check
from ssdconv.verify.images import load_rgb
from ssdconv.verify.runners import runners_for

ALL = ("caffe", "ncnn", "onnx")
SCORE_DIFF = 2e-6  # measured 1.3e-6: runtimes' convs differ from MXNet's by ulps
BOX_DIFF_PX = 1e-3


def _demo(which: str):
    if which == "ssd":
        return load_model(str(shipped.DEMO_SYMBOL), params=str(shipped.DEMO_PARAMS))
    return load_model(str(shipped.DEMO_YOLO_SYMBOL), params=str(shipped.DEMO_YOLO_PARAMS))


@pytest.fixture(scope="module", params=["ssd", "yolo"])
def headless(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"headless_{request.param}")
    return convert(_demo(request.param), out, Options(targets=ALL, headless=True))


def test_writes_the_maps_the_tail_and_the_constants(headless):
    m = headless.manifest
    name = m["name"]
    files = set(m["files"])
    assert {f"{name}_postprocess.c", f"{name}_postprocess.h"} <= files
    assert set(m["headless"]["tail_files"]) == {f"{name}_postprocess.c", f"{name}_postprocess.h"}
    assert m["label_offset"] == 0  # the tail's rows carry GluonCV's class ids
    assert m["headless"]["npu_constraints"] == {"caffe": [], "onnx": []}
    layers = m["layer_counts"]
    assert not {"PriorBox", "DetectionOutput", "Softmax", "Permute", "Flatten"} & set(layers)
    # caffe and ncnn list outputs in layer order (RKNN's load_caffe returns them so): the
    # output layers come last, in the manifest's order
    from ssdconv.verify.blobs import raw_blobs

    order = list(raw_blobs(m).values())
    wanted = [raw_blobs(m)[o["role"]] for o in m["headless"]["outputs"]]
    prototxt = open(headless.files["prototxt"]).read()
    tops = re.findall(r'top: "([^"]+)"', prototxt)
    assert tops[-len(wanted):] == wanted and sorted(order) == sorted(wanted)
    param = open(headless.files["param"]).read().split("\n")
    assert [ln.split()[1] for ln in param[2:] if ln.strip()][-len(wanted):] == wanted
    if m["family"] == "ssd":
        assert {f"{name}_priors.txt", f"{name}_priors.f32"} <= files
        assert [o["role"] for o in m["headless"]["outputs"][:4]] == \
            ["loc.0", "conf.0", "loc.1", "conf.1"]  # HiSilicon's report-node order
    else:
        assert f"{name}_anchors.txt" in files
        assert len(m["blobs"]["outputs"]) == 3


def test_every_runtime_with_the_c_tail_is_gluoncv_row_for_row(headless, sample_images):
    report = run_check(headless, sample_images[:2])
    assert report.ok
    runtimes = {r.runtime for r in report.results}
    assert runtimes == {"opencv", "ncnn", "onnxruntime", "openvino"}
    for r in report.results:
        det = r.det
        assert det is not None and not det.unmatched_gluon and not det.unmatched_runtime
        assert det.matched == det.compared_gluon > 0
        assert det.max_score_diff <= SCORE_DIFF and det.max_box_diff_px <= BOX_DIFF_PX
        assert all(t.err <= t.bound for t in r.raw.tensors.values())


def test_maps_equal_the_full_models_own(headless, tmp_path, sample_images):
    """The headless model is the full model's network, cut: in one runtime its outputs are the
    full model's internal maps of the same name, bit for bit."""
    full = convert(headless.model, tmp_path, Options(targets=("caffe", "ncnn")))
    rgb = load_rgb(sample_images[0], *headless.manifest["input_shape"][2:])
    cut = {r.name: r for r in runners_for(headless, ("opencv", "ncnn"))}
    whole = {r.name: r for r in runners_for(full, ("opencv", "ncnn"))}
    names = [b for k, b in headless.manifest["blobs"].items() if k != "input"]
    names = [n for group in names for n in (group if isinstance(group, list) else [group])]
    for runtime in ("opencv", "ncnn"):  # the runtimes that hand out inner blobs
        got = cut[runtime].inner.run(rgb)
        inside = whole[runtime].blobs(rgb, names)
        assert set(inside) == set(names), runtime
        roles = {b: r for r, b in _roles(headless.manifest).items()}
        for blob in names:
            a = np.asarray(got[roles[blob]], np.float32).reshape(-1)
            b = np.asarray(inside[blob], np.float32).reshape(-1)
            assert np.array_equal(a, b), (runtime, blob, float(np.abs(a - b).max()))


def _roles(manifest: dict) -> dict[str, str]:
    from ssdconv.verify.blobs import raw_blobs

    return raw_blobs(manifest)


def test_lint_names_what_the_full_model_breaks(tmp_path):
    """The headed models break the constraints, and the lint names each breach; the headless
    ones (above) pass: the lint can fail."""
    full = convert(_demo("ssd"), tmp_path, Options(targets=("caffe", "onnx")))
    shape = full.manifest["input_shape"]
    caffe = lint_caffe(full.files["prototxt"], full.files["caffemodel"], shape)
    assert any("PriorBox" in f for f in caffe) and any("DetectionOutput" in f for f in caffe)
    assert any("mbox_conf_flatten" in f and "2-D" in f for f in caffe)
    onnx = lint_onnx(full.files["onnx"])
    assert any("TopK" in f for f in onnx) and any("NonMaxSuppression" in f for f in onnx)


def test_lint_names_permute_orders_power_exponents_and_reshapes(tmp_path):
    """NNIE's Permute order, RKNN's Power exponents and NNIE's 4-D Reshape rule, each named."""
    text = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "swap" type: "Permute" bottom: "data" top: "swap" permute_param { order: 0 order: 3 order: 1 order: 2 } }
layer { name: "nhwc" type: "Permute" bottom: "data" top: "nhwc" permute_param { order: 0 order: 2 order: 3 order: 1 } }
layer { name: "root" type: "Power" bottom: "data" top: "root" power_param { power: 0.7 } }
layer { name: "square" type: "Power" bottom: "data" top: "square" power_param { power: 2 } }
layer { name: "flat" type: "Reshape" bottom: "data" top: "flat" reshape_param { shape { dim: 1 dim: -1 } } }
"""  # noqa: E501
    proto = tmp_path / "bad.prototxt"
    proto.write_text(text)
    from ssdconv.backend.caffe import npu_lint

    found = npu_lint.lint(str(proto), None, [1, 3, 8, 8])
    joined = "\n".join(found)
    assert "swap order 0,3,1,2" in joined and "nhwc" not in joined
    assert "root exponent 0.7" in joined and "square" not in joined
    assert "Reshape flat dims [1, -1]" in joined and "tensor flat is 2-D" in joined
    assert len(found) == 4, found


def test_manifest_reloads_for_verify(headless, sample_images):
    """`ssdconv verify --converted` rebuilds the headless head from the manifest."""
    model = "ssd" if headless.manifest["family"] == "ssd" else "yolo"
    symbol, params = ((shipped.DEMO_SYMBOL, shipped.DEMO_PARAMS) if model == "ssd"
                      else (shipped.DEMO_YOLO_SYMBOL, shipped.DEMO_YOLO_PARAMS))
    path = os.path.join(os.path.dirname(headless.files["prototxt"]),
                        f"{headless.manifest['name']}.json")
    proc = run_cli("verify", str(symbol), "--params", str(params), "--target", "caffe",
                   "--converted", path, sample_images[0])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "row for row" in proc.stdout and "verdict: PASS" in proc.stdout


@pytest.mark.parametrize("extra,needles", [
    (("--yolo-head", "native", "--target", "ncnn"), ("--yolo-head native", "--headless")),
    (("--headless-layout", "nhwc"), ("--headless-layout nhwc", "nchw only")),
    (("--target", "onnx", "--onnx-nms", "none"), ("--onnx-nms", "headless")),
])
def test_options_a_headless_model_makes_meaningless_are_refused(extra, needles, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("convert", str(shipped.DEMO_YOLO_SYMBOL), "--params",
                   str(shipped.DEMO_YOLO_PARAMS), "--headless", *extra, "-o", str(out))
    assert_user_error(proc, *needles)
    assert not out.exists() or not os.listdir(out)


def test_a_network_without_post_processing_is_refused(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("convert", "squeezenet1.1", "--seed", "0", "--headless", "-o", str(out))
    assert_user_error(proc, "--headless", "drop --headless")
    assert not out.exists() or not os.listdir(out)


def test_nhwc_maps_are_the_permuted_maps(tmp_path, sample_images):
    """--headless-layout nhwc: each SSD map permuted (0,2,3,1) (NNIE's report nodes); the lint
    accepts that one order; the C tail reads it and still gives GluonCV's rows."""
    conv = convert(_demo("ssd"), tmp_path, Options(targets=("caffe", "onnx"), headless=True,
                                                   headless_layout="nhwc"))
    m = conv.manifest
    assert m["layer_counts"]["Permute"] == 2 * len(m["blobs"]["loc"])
    assert m["headless"]["npu_constraints"] == {"caffe": [], "onnx": []}
    loc0 = m["headless"]["outputs"][0]["shape"]
    assert loc0[1] == loc0[2] and loc0[3] % 4 == 0  # [1, H, W, A*4]
    report = run_check(conv, sample_images[:1])
    assert report.ok and all(r.det.matched == r.det.compared_gluon for r in report.results)
    json.dumps(m)  # the manifest stays plain JSON


def _example_tools_missing() -> str | None:
    from test_ncnn_example import _build_tools_missing

    return _build_tools_missing()


@pytest.mark.skipif(_example_tools_missing() is not None, reason=str(_example_tools_missing()))
@pytest.mark.parametrize("which", ["ssd", "yolo"])
def test_built_example_calls_the_c_tail(which, tmp_path, sample_images):
    """--ncnn-example with --headless: the C++ program runs the headless ncnn model, then the
    generated NAME_postprocess.c; it prints what the Python ncnn runner + the same tail give."""
    import subprocess

    import cv2
    from test_ncnn_example import build_example

    conv = convert(_demo(which), tmp_path, Options(targets=("ncnn",), headless=True,
                                                   ncnn_example=True))
    build_example(tmp_path)
    (runner,) = runners_for(conv, ("ncnn",))
    classes = conv.manifest["classes"]
    _, _, h, w = conv.manifest["input_shape"]
    for path in sample_images[:2]:
        proc = subprocess.run([str(tmp_path / f"{conv.manifest['name']}_example"), path],
                              capture_output=True, text=True, check=True)
        lines = [ln.split() for ln in proc.stdout.splitlines()]
        rows = runner.run(load_rgb(path, h, w))
        ih, iw = cv2.imread(path).shape[:2]
        assert len(lines) == len(rows["det_labels"]) > 0
        for parts, label, score, box in zip(lines, rows["det_labels"], rows["det_scores"],
                                            rows["det_boxes"]):
            assert parts[0] == classes[label]
            assert abs(float(parts[1]) - score) <= 1e-6
            want = np.asarray(box) * [iw, ih, iw, ih]
            assert np.abs(np.asarray(parts[2:], float) - want).max() <= 5e-3


def test_an_output_name_that_is_no_c_identifier_prefixes_the_symbols_safely():
    """The files keep the output name; the C symbols take it with every other character as _
    (a zoo name such as ssd_300_mobilenet0.25_voc, or a name starting with a digit)."""
    from ssdconv.tail import c_prefix

    assert c_prefix("ssd_300_mobilenet0.25_voc") == "ssd_300_mobilenet0_25_voc"
    assert c_prefix("3d-model") == "_3d_model"
    assert c_prefix("shapes_ssd") == "shapes_ssd"


def test_onnx_maps_are_the_full_onnx_models_box_predictions(tmp_path, sample_images):
    """In onnxruntime, which hands out only a model's outputs: the headless SSD's loc maps,
    permuted (0,2,3,1) and concatenated as GluonCV does, are the full ONNX model's `loc` output
    (the box predictions its GluonCV head decodes) bit for bit."""
    model = _demo("ssd")
    cut = convert(model, tmp_path / "cut", Options(targets=("onnx",), headless=True))
    full = convert(model, tmp_path / "full", Options(targets=("onnx",)))
    rgb = load_rgb(sample_images[0], *cut.manifest["input_shape"][2:])
    (headless,) = runners_for(cut, ("onnxruntime",))
    (whole,) = runners_for(full, ("onnxruntime",))
    maps = headless.inner.run(rgb)
    shapes = {o["role"]: o["shape"] for o in cut.manifest["headless"]["outputs"]}
    loc = np.concatenate([
        np.asarray(maps[f"loc.{i}"], np.float32).reshape(shapes[f"loc.{i}"][1:])
        .transpose(1, 2, 0).reshape(-1) for i in range(len(cut.manifest["blobs"]["loc"]))])
    want = np.asarray(whole.run(rgb)["loc"], np.float32).reshape(-1)
    assert loc.shape == want.shape and np.array_equal(loc, want)


LINT_CI = ["ssd_300_vgg16_atrous_voc", "yolo3_mobilenet0.25_voc"]  # Normalize, ceil pools; YOLO
LINT_SWEEP = ["ssd_512_vgg16_atrous_voc", "ssd_300_resnet34_v1b_voc", "ssd_512_resnet18_v1_voc",
              "ssd_512_resnet50_v1_voc", "ssd_512_resnet101_v2_voc",
              "ssd_512_resnet152_v2_voc", "ssd_300_mobilenet0.25_voc",
              "ssd_512_mobilenet1.0_voc", "ssd_300_mobilenet1.0_lite_coco",
              "yolo3_darknet53_voc", "yolo3_mobilenet1.0_voc"]


@pytest.mark.parametrize("name", [*LINT_CI, *(pytest.param(n, marks=pytest.mark.sweep)
                                              for n in LINT_SWEEP)])
def test_every_zoo_architecture_headless_passes_the_lint(name, tmp_path):
    """Every GluonCV SSD architecture and the YOLOv3s, headless: nothing in the written
    prototxt or ONNX breaks an NPU constraint (both layouts for an SSD)."""
    model = load_model(name, seed=0)
    layouts = ("nchw", "nhwc") if name.startswith("ssd") else ("nchw",)
    for layout in layouts:
        conv = convert(model, tmp_path / layout, Options(targets=("caffe", "onnx"),
                                                         headless=True, headless_layout=layout))
        assert conv.manifest["headless"]["npu_constraints"] == {"caffe": [], "onnx": []}, name
