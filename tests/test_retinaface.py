"""insightface's RetinaFace as a third family (issue 19): mnet.25-style (both softmax forms)
and a reduced R50-style body built from the published architecture (tests/retinaface_models.py),
seeded so some anchors score as faces on the sample photos, exported as checkpoints and converted
from the exported symbol; proven in OpenCV DNN and ncnn (raw outputs within the bound, the faces
insightface's decode finds on them matched with float64 MXNet's), and the bad inputs refused in
one line."""

from __future__ import annotations

import json
import os

import pytest
import retinaface_models as rm
from test_bad_inputs import assert_user_error, no_model_files, run_cli
from test_ncnn_example import _build_tools_missing, build_example

from ssdconv.convert import Options, convert
from ssdconv.models import load_model
from ssdconv.verify.check import format_report, run_check

FACES = ("samples/astronaut.jpg", "samples/grace_hopper.jpg")
NAMES = [f"face_rpn_{k}_stride{s}" for s in (32, 16, 8)
         for k in ("cls_prob_reshape", "bbox_pred", "landmark_pred")]


def _assert_faces_proven(report, runtimes=("opencv", "ncnn")) -> None:
    text = format_report(report)
    assert report.ok and text.endswith("verdict: PASS"), text
    assert {r.runtime for r in report.results} == set(runtimes), text
    for r in report.results:
        faces = next(s for s in r.outputs if s.title == "faces")
        assert faces.ok and faces.figures["faces_reference"] > 0, text
        # measured up to 1.4e-2 px (a delta's float32 error times a 512-px anchor's width)
        assert faces.figures["max_box_diff_px"] < 5e-2, faces.text


@pytest.mark.parametrize("kind, softmax, size", [
    ("mnet25", "softmax", (320, 320)),
    ("mnet25", "SoftmaxActivation", (300, 340)),  # not multiples of 32: the Crops trim
    ("r50", "softmax", (300, 340)),
])
def test_retinaface_converts_and_passes_the_check(kind, softmax, size, tmp_path):
    symbol = rm.save_retinaface(tmp_path / "model", kind=kind, softmax=softmax, size=size)
    model = load_model(str(symbol), input_size=size)
    conversion = convert(model, tmp_path / "out", Options(targets=("caffe", "ncnn")))
    manifest = conversion.manifest
    assert manifest["family"] == "retinaface"
    roles = {f"{k}_stride{s}" for s in (32, 16, 8) for k in ("cls", "bbox", "landmark")}
    assert set(manifest["blobs"]) == roles | {"input"}
    assert sorted(manifest["blobs"][r] for r in roles) == sorted(NAMES)
    # what insightface and ncnn's example feed: RGB 0..255 (R50's data BatchNorm stays a layer)
    assert manifest["mean"] == [0.0] * 3 and manifest["scale"] == [1.0] * 3
    assert manifest["channel_order"] == "RGB"
    assert [a["scales"] for a in manifest["retinaface"]["anchors"]] == [[32, 16], [8, 4], [2, 1]]
    _assert_faces_proven(run_check(conversion, list(FACES)))


def test_without_landmarks(tmp_path):
    symbol = rm.save_retinaface(tmp_path / "m", kind="mnet25", landmarks=False)
    conversion = convert(load_model(str(symbol), input_size=(320, 320)), tmp_path / "out",
                         Options(targets=("caffe", "ncnn")))
    assert not conversion.manifest["retinaface"]["landmarks"]
    assert len(conversion.manifest["outputs"]) == 6
    _assert_faces_proven(run_check(conversion, list(FACES)))


def test_anchor_options_that_do_not_fit_are_refused(tmp_path):
    symbol = rm.save_retinaface(tmp_path / "m", kind="mnet25")
    out = tmp_path / "out"
    proc = run_cli("convert", str(symbol), "--input-size", "320,320", "-o", str(out),
                   "--retinaface-anchors", "32:32,16,8;16:8,4;8:2,1")
    assert_user_error(proc, "stride 32 3 anchor(s)", "have 2", "face_rpn_cls_score_stride32")
    proc = run_cli("convert", str(symbol), "--input-size", "320,320", "-o", str(out),
                   "--retinaface-anchors", "32:32,16;16:8,4")
    assert_user_error(proc, "no scales for stride 8")
    proc = run_cli("convert", str(symbol), "--input-size", "320,320", "-o", str(out),
                   "--retinaface-anchors", "32:x")
    assert_user_error(proc, "STRIDE:SCALE")
    assert no_model_files(out)


def test_a_stride_without_its_box_predictor_is_refused(tmp_path):
    symbol = rm.save_retinaface(tmp_path / "m", kind="mnet25")
    doc = json.loads(symbol.read_text() if hasattr(symbol, "read_text") else open(symbol).read())
    names = [n["name"] for n in doc["nodes"]]
    bbox16 = names.index("face_rpn_bbox_pred_stride16")
    doc["heads"] = [h for h in doc["heads"] if h[0] != bbox16]
    broken = tmp_path / "broken-symbol.json"
    broken.write_text(json.dumps(doc))
    (tmp_path / "broken-0000.params").write_bytes((tmp_path / "m-0000.params").read_bytes())
    out = tmp_path / "out"
    proc = run_cli("convert", str(broken), "--input-size", "320,320", "-o", str(out))
    assert_user_error(proc, "stride 16", "no box predictor output", "8 channels")
    assert no_model_files(out)


def test_a_live_net_in_every_runtime(tmp_path):
    """A live Gluon block (SymbolBlock of the mnet.25 graph, seeded) through the Python API,
    written for caffe, ncnn and ONNX and checked in OpenCV, ncnn, onnxruntime and OpenVINO."""
    import mxnet as mx

    from ssdconv.api import convert_net

    sym = rm.build("mnet25")
    arg, aux = rm.seeded_params(sym, (4, 3, 320, 320), 0)
    net = mx.gluon.SymbolBlock(sym, mx.sym.var("data"))
    params = net.collect_params()
    for name, value in {**arg, **aux}.items():
        params[name]._load_init(mx.nd.array(value), mx.cpu())
    result = convert_net(net, tmp_path, (320, 320), name="live",
                         targets=("caffe", "ncnn", "onnx"), verify_images=list(FACES))
    assert result.conversion.manifest["family"] == "retinaface"
    _assert_faces_proven(result.report, ("opencv", "ncnn", "onnxruntime", "openvino"))


def test_ncnn_int8_is_informational_with_its_cost_on_faces(tmp_path):
    symbol = rm.save_retinaface(tmp_path / "m", kind="mnet25")
    conversion = convert(load_model(str(symbol), input_size=(320, 320)), tmp_path / "out",
                         Options(targets=("ncnn",), ncnn_int8=("samples",)))
    report = run_check(conversion, list(FACES))
    text = format_report(report)
    assert report.ok and "informational only" in text, text
    for r in report.results:
        faces = next(s for s in r.outputs if s.title == "faces")
        assert faces.figures["faces_runtime"] > 0, text


@pytest.mark.skipif(_build_tools_missing() is not None, reason=str(_build_tools_missing()))
def test_built_example_runs_insightfaces_decode(tmp_path):
    """--ncnn-example for a RetinaFace: the C++ program, built against ncnn's library, runs
    insightface's decode on the ncnn model's outputs; its faces equal ssdconv's float64 model of
    that decode on the Python ncnn runner's outputs (fp32 both)."""
    import subprocess

    import numpy as np

    from ssdconv.backend import backend
    from ssdconv.backend.interface import RunSettings
    from ssdconv.retinaface.decode import insightface_faces
    from ssdconv.verify.images import load_rgb

    symbol = rm.save_retinaface(tmp_path / "m", kind="mnet25")
    conversion = convert(load_model(str(symbol), input_size=(320, 320)), tmp_path / "out",
                         Options(targets=("ncnn",), ncnn_example=True), name="faces")
    out = tmp_path / "out"
    build_example(out)
    (runner,) = backend("ncnn").runners(
        {"param": conversion.files["param"], "bin": conversion.files["bin"]},
        conversion.manifest, RunSettings())
    head = conversion.head
    for photo in FACES:
        proc = subprocess.run([str(out / "faces_example"), photo], capture_output=True,
                              text=True)
        assert proc.returncode == 0, proc.stderr
        rows = np.array([[float(v) for v in ln.split()[1:]] for ln in proc.stdout.splitlines()
                         if ln.startswith("input ")]).reshape(-1, 15)
        want = head.faces(head.levels_from(runner.run(load_rgb(photo, 320, 320))),
                          insightface_faces)
        assert len(want) > 0 and len(rows) == len(want), (len(rows), len(want))
        order = np.argsort(-want.scores, kind="stable")
        # printed with 6 and 4 decimals, from the C++ library ssdconv's bench builds (the
        # runner is the ncnn wheel's): measured scores within 1.3e-6
        assert np.abs(rows[:, 0] - want.scores[order]).max() < 5e-6
        assert np.abs(rows[:, 1:5] - want.boxes[order]).max() < 1e-2
        assert np.abs(rows[:, 5:] - want.landmarks[order].reshape(-1, 10)).max() < 1e-2


def test_nms_ties_explain_only_genuine_faces_at_a_tie():
    """Two overlapping faces of equal score (a seeded model's scores saturate at 1.0): NMS keeps
    either; a face nothing suppresses, or one that is no candidate of float64 MXNet's, fails."""
    import numpy as np

    from ssdconv.retinaface.check import explain_nms_ties
    from ssdconv.retinaface.decode import Faces

    def faces(rows):
        rows = np.asarray(rows, np.float64).reshape(-1, 5)
        return Faces(rows[:, 0], rows[:, 1:], None)

    a, b = [1.0, 10, 10, 50, 50], [1.0, 14, 10, 54, 50]  # IoU(+1) 0.82: one suppresses the other
    candidates = faces([a, b])
    sides = {"reference": faces([a]), "runtime": faces([b])}
    explained = explain_nms_ties(sides, {"reference": [0], "runtime": [0]}, candidates, 0.4)
    assert explained == {"reference": {0}, "runtime": {0}}
    unequal = {"reference": faces([a]), "runtime": faces([[0.9, *b[1:]]])}
    assert explain_nms_ties(unequal, {"reference": [0], "runtime": [0]}, faces(
        [a, [0.9, *b[1:]]]), 0.4) == {"reference": set(), "runtime": set()}
    alone = {"reference": faces([a]), "runtime": faces([[1.0, 200, 200, 240, 240]])}
    assert explain_nms_ties(alone, {"reference": [0], "runtime": [0]}, candidates, 0.4) == {
        "reference": set(), "runtime": set()}
    shifted = {"reference": faces([a]), "runtime": faces([[1.0, 19, 10, 59, 50]])}  # no candidate
    assert explain_nms_ties(shifted, {"reference": [0], "runtime": [0]}, candidates, 0.4) == {
        "reference": set(), "runtime": set()}


def test_headless_retinaface_is_its_nine_prediction_convs(tmp_path):
    """--headless: the nine prediction convs (face scores before insightface's reshape and
    softmax), nothing after them: every NPU constraint holds and each map equals float64
    MXNet's within the raw bound in OpenCV, ncnn, onnxruntime and OpenVINO."""
    symbol = rm.save_retinaface(tmp_path / "m", kind="mnet25", size=(320, 320))
    conversion = convert(load_model(str(symbol), input_size=(320, 320)), tmp_path / "out",
                         Options(targets=("caffe", "ncnn", "onnx"), headless=True))
    manifest = conversion.manifest
    headless = manifest["headless"]
    assert headless["npu_constraints"] == {"caffe": [], "onnx": []}
    assert len(headless["outputs"]) == 9 and headless["tail"] is None
    assert not {"Softmax", "Reshape", "Crop"} & set(manifest["layer_counts"])
    assert manifest["blobs"]["cls_stride32"] == "face_rpn_cls_score_stride32"
    report = run_check(conversion, list(FACES))
    assert report.ok, format_report(report)
    assert {r.runtime for r in report.results} == {"opencv", "ncnn", "onnxruntime", "openvino"}
    assert all(len(r.raw.tensors) == 9 and not r.outputs for r in report.results)
    out = tmp_path / "example"
    proc = run_cli("convert", str(symbol), "--input-size", "320,320", "--target", "ncnn",
                   "--headless", "--ncnn-example", "-o", str(out))
    assert_user_error(proc, "--ncnn-example", "no generated C tail")
    assert not out.exists() or not os.listdir(out)
