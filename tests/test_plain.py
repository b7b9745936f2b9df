"""Plain networks (issue 18, part 2): GluonCV classifiers converted by zoo name with seeded
weights, proven in the real runtimes against float64 MXNet (raw outputs within the bound) and
Gluon float32 (top-1 identical on the sample photos), and what a plain network refuses.

The representative classifiers run in `make test`; the rest of the zoo list the issue names is
`-m sweep` (`make test-all`).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_bad_inputs import assert_user_error, no_model_files, run_cli
from test_ncnn_example import _build_tools_missing, build_example

from ssdconv.convert import Options, convert
from ssdconv.models import load_model
from ssdconv.plain.vectors import VectorImage, cosine
from ssdconv.verify.check import format_report, run_check
from ssdconv.verify.compare import raw_bound

# one classifier per op family the plain networks add: squeezenet (ceil-mode max pooling, a
# convolution head), resnet18_v1 (FullyConnected), mobilenetv3_small (hard-swish, SE by
# broadcast_mul, _div_scalar by 6)
REPRESENTATIVE = ("squeezenet1.1", "resnet18_v1", "mobilenetv3_small")
SWEEP = ("resnet50_v2", "mobilenet1.0", "mobilenetv2_1.0", "densenet121", "resnext50_32x4d",
         "shufflenet_v2", "vgg11_bn", "squeezenet1.0", "se_resnet18_v1", "mobilenetv3_large")
CASES = [*REPRESENTATIVE, *(pytest.param(n, marks=pytest.mark.sweep) for n in SWEEP)]


def _assert_proven(report, runtimes) -> None:
    text = format_report(report)
    assert report.ok and text.endswith("verdict: PASS"), text
    assert {r.runtime for r in report.results} == set(runtimes), text
    for r in report.results:
        for role, t in r.raw.tensors.items():
            assert t.err <= t.bound, (r.runtime, r.image, role, t)
        (vectors,) = r.outputs
        for role, figures in vectors.figures.items():
            # top-1 identical on the photos (not merely a tie), and the cosine with float64
            assert figures["top1_same"], (r.runtime, r.image, role, text)
            assert figures["cosine"] > 1 - 1e-6, (r.runtime, r.image, role, figures)


@pytest.mark.parametrize("name", CASES)
def test_zoo_classifier_equals_mxnet(name, tmp_path, sample_images):
    model = load_model(name, seed=0)
    conversion = convert(model, tmp_path, Options(targets=("caffe", "ncnn")))
    manifest = conversion.manifest
    assert manifest["family"] == "plain"
    (output,) = manifest["outputs"]
    assert output["shape"] == [1, 1000] and output["vector"], output
    assert manifest["blobs"] == {"input": "data", output["name"]: output["name"]}
    assert "label_offset" not in manifest  # no detection rows whose labels it would offset
    # GluonCV's ImageNet names where the zoo net carries them, naming the output's entries
    assert manifest.get("classes", [None] * 1000).__len__() == 1000
    report = run_check(conversion, sample_images[:3])
    _assert_proven(report, ("opencv", "ncnn"))


def test_a_classifier_in_every_runtime(tmp_path, sample_images):
    """ONNX too (onnxruntime, OpenVINO): the plain network is written for every target."""
    conversion = convert(load_model("squeezenet1.1", seed=1), tmp_path,
                         Options(targets=("caffe", "ncnn", "onnx")))
    report = run_check(conversion, sample_images[:2])
    _assert_proven(report, ("opencv", "ncnn", "onnxruntime", "openvino"))


def test_raw_bound_scales_with_the_tensor():
    """A tensor of peak 1e-3 is bounded by 1e-4 of its peak, not by the absolute 1e-4 floor
    (which would pass any output near zero); a tensor of peak >= 1 keeps the 1e-4 floor."""
    tiny = np.array([1e-3, -5e-4, 2e-4])
    bound, own = raw_bound(tiny, tiny.astype(np.float32).astype(np.float64))
    assert bound == pytest.approx(1e-7) and own < 1e-10
    unit = np.array([1.0, -0.5])
    assert raw_bound(unit, unit)[0] == pytest.approx(1e-4)
    assert raw_bound(unit * 300, unit * 300)[0] == pytest.approx(1e-4)
    noisy = unit + np.array([1e-3, 0.0])  # float32 itself 1e-3 away: 3x that
    assert raw_bound(unit, noisy)[0] == pytest.approx(3e-3)


def _vector_stage(ref64, ref32, got):
    g = {"raw64": {"out": np.asarray(ref64, np.float64)},
         "raw32": {"out": np.asarray(ref32, np.float64)}}
    (stage,) = VectorImage(["out"], g).compare(None, {"out": np.asarray(got)})[1]
    return stage


def test_top1_swap_is_a_tie_only_within_the_bound():
    base = np.array([3.0, 1.0, 0.5, 0.25, 0.125, 0.0625, 0.0])
    swapped = base.copy()
    swapped[:2] = [1.0, 3.0]
    assert not _vector_stage(base, base, swapped).ok  # 2 apart: a real difference
    near = base.copy()
    near[1] = 3.0 - 1e-9  # float64's top two 1e-9 apart, the bound 1e-4: either order
    flipped = near.copy()
    flipped[:2] = near[1::-1]
    stage = _vector_stage(near, near, flipped)
    assert stage.ok and "top-1 a tie" in stage.text, stage.text
    assert stage.figures["out"]["top1_same"] is False
    same = _vector_stage(base, base, base)
    assert same.ok and same.figures["out"]["top1_same"] and same.figures["out"]["top5_same"]


def test_cosine():
    assert cosine([1, 0], [0, 1]) == 0.0
    assert cosine([1, 2], [2, 4]) == pytest.approx(1.0)


def test_plain_refuses_detector_options(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("convert", "squeezenet1.1", "--seed", "0", "--target", "onnx",
                   "--onnx-nms", "none", "-o", str(out))
    assert_user_error(proc, "--onnx-nms", "a classifier or another plain network")
    assert no_model_files(out)
    proc = run_cli("convert", "squeezenet1.1", "--seed", "0", "--classes", "a,b", "-o", str(out))
    assert_user_error(proc, "2 class names given", "its outputs have 1000")
    assert no_model_files(out)
    proc = run_cli("eval", "squeezenet1.1", "--seed", "0", "-n", "1")
    assert_user_error(proc, "eval measures a detector's mAP", "ssdconv verify")


def test_cli_convert_verify_inspect_and_example(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("convert", "squeezenet1.1", "--seed", "0", "--target", "all",
                   "--ncnn-example", "-o", str(out), "--verify", "samples/cat.jpg")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "a plain network, output" in proc.stdout, proc.stdout
    assert "vectors" in proc.stdout and "top-1 same" in proc.stdout, proc.stdout
    manifest = json.loads((out / "squeezenet1.1.json").read_text())
    (output,) = manifest["outputs"]
    source = (out / "squeezenet1.1_example.cpp").read_text()
    assert f'"{output["name"]}"' in source and "top %d" in source
    proc = run_cli("inspect", "squeezenet1.1", "--seed", "0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "a plain network (no detector head)" in proc.stdout
    assert f"output {output['name']}: shape (1, 1000), a vector" in proc.stdout, proc.stdout


@pytest.mark.parametrize("lossy", [{"ncnn_fp16": True}, {"ncnn_int8": ("samples",)}])
def test_ncnn_fp16_and_int8_are_informational_with_their_cost(lossy, tmp_path, sample_images):
    """A lossy ncnn model of a classifier is checked like a detector's: reported, not judged,
    its cost measured (raw distance, top-k, cosine)."""
    conversion = convert(load_model("squeezenet1.1", seed=0), tmp_path,
                         Options(targets=("ncnn",), **lossy))
    assert conversion.manifest["approximations"], conversion.manifest
    report = run_check(conversion, sample_images[:2])
    text = format_report(report)
    assert report.ok and "informational only" in text, text
    for r in report.results:
        assert r.informational and r.runtime.startswith("ncnn")
        (role,) = r.raw.tensors
        assert r.raw.tensors[role].err > 0
        (vectors,) = r.outputs
        assert 0.99 < vectors.figures[role]["cosine"] < 1.0, text


@pytest.mark.skipif(_build_tools_missing() is not None, reason=str(_build_tools_missing()))
def test_built_plain_example_equals_the_python_runner(tmp_path, sample_images):
    """The plain network's --ncnn-example, built against ncnn's C++ library, prints the values
    ssdconv's ncnn runner computes (fp32 both; printed with 9 significant digits)."""
    import subprocess

    from ssdconv.backend import backend
    from ssdconv.backend.interface import RunSettings
    from ssdconv.verify.images import load_rgb

    conversion = convert(load_model("squeezenet1.1", seed=0), tmp_path,
                         Options(targets=("ncnn",), ncnn_example=True), name="cls")
    build_example(tmp_path)
    (runner,) = backend("ncnn").runners(
        {"param": conversion.files["param"], "bin": conversion.files["bin"]},
        conversion.manifest, RunSettings())
    (output,) = conversion.manifest["outputs"]
    for image in sample_images[:2]:
        proc = subprocess.run([str(tmp_path / "cls_example"), image], capture_output=True,
                              text=True, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0] == f"output {output['name']} 1000 1 1" or lines[0].startswith(
            f"output {output['name']} "), lines[0]
        printed = np.array([float(v) for v in lines[-1].split()[1:]])
        _, _, h, w = conversion.manifest["input_shape"]
        want = np.asarray(runner.run(load_rgb(image, h, w))[output["name"]]).reshape(-1)
        # measured: the same floats (max relative difference 0 on both photos)
        assert np.max(np.abs(printed - want) / np.abs(want).max()) < 1e-8
        tops = [ln.split() for ln in lines if ln.startswith("top ")]
        assert [int(t[1]) for t in tops] == list(np.argsort(-want, kind="stable")[:5])
