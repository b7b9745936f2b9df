"""The check can fail, and says where: a corrupted layer is found by the per-layer bisection.

Verify, eval and bench/fidelity.py build their runners through one API (`runners_for`), from
the conversion and the options it records.
"""

from __future__ import annotations

import ncnn
import numpy as np
import pytest
from bench_modules import bench_module
from corrupt import corrupt_convolution

from ssdconv.convert import Options, convert
from ssdconv.models import load_model
from ssdconv.verify import accuracy
from ssdconv.verify.check import format_report, run_check
from ssdconv.verify.images import load_rgb
from ssdconv.verify.runners import runners_for


@pytest.fixture(scope="module")
def conversion(tmp_path_factory):
    model = load_model("ssd_300_mobilenet0.25_voc", seed=0)
    return convert(model, tmp_path_factory.mktemp("conv"), Options(targets=("caffe",)))


def test_exact_conversion_passes(conversion, sample_images):
    report = run_check(conversion, sample_images[:1])
    assert report.ok, format_report(report)


def test_corrupted_layer_is_named(conversion, sample_images, tmp_path):
    top = corrupt_convolution(conversion, 9, tmp_path)
    report = run_check(conversion, sample_images[:1], runtimes=("opencv",))
    text = format_report(report)
    assert not report.ok and "verdict: FAIL" in text
    (res,) = report.results
    assert not res.raw.ok
    assert res.first_divergence and res.first_divergence.startswith(top + ":"), text


@pytest.fixture(scope="module")
def model():
    return load_model("ssd_300_mobilenet0.25_voc", seed=0)


@pytest.fixture(scope="module")
def both(model, tmp_path_factory):
    return convert(model, tmp_path_factory.mktemp("both"), Options(targets=("caffe", "ncnn")))


def test_runners_for_a_conversion(both):
    opencv, ncnn_exact = runners_for(both)
    assert (opencv.name, ncnn_exact.name) == ("opencv", "ncnn")
    assert not opencv.winograd
    assert not ncnn_exact.net.opt.use_fp16_storage and not ncnn_exact.net.opt.use_fp16_arithmetic
    assert [r.name for r in runners_for(both, ("ncnn",))] == ["ncnn"]
    with pytest.raises(ValueError, match="tflite"):
        runners_for(both, ("tflite",))


def test_fidelity_gets_the_deployed_runners_from_runners_for(both, sample_images):
    deployed = bench_module("fidelity").deployed_runners(both)
    assert sorted(deployed) == ["ncnn_default", "opencv_winograd"]
    assert deployed["opencv_winograd"].winograd
    defaults = ncnn.Net().opt
    opt = deployed["ncnn_default"].net.opt
    assert (opt.use_fp16_storage, opt.use_fp16_arithmetic, opt.num_threads) == (
        defaults.use_fp16_storage, defaults.use_fp16_arithmetic, 1)
    rgb = load_rgb(sample_images[0], 300, 300)
    (exact,) = runners_for(both, ("ncnn",))
    a, b = exact.run(rgb), deployed["ncnn_default"].run(rgb)
    assert a["conf"].shape == b["conf"].shape and np.abs(a["conf"] - b["conf"]).max() < 0.05


def test_eval_converts_with_every_option_of_the_user(model, tmp_path):
    user = Options(skip_passes=("fold_batchnorm",), relu6="relu6_layer", targets=("caffe",))
    exact, _, runners = accuracy._runners(model, str(tmp_path), user)
    assert sorted(runners) == ["ncnn", "ncnn-fp16", "onnxruntime", "opencv", "opencv-headless",
                               "openvino"]
    assert exact.options.skip_passes == ("fold_batchnorm",)
    assert exact.options.relu6 == "relu6_layer"
    assert (exact.options.targets, exact.options.ncnn_fp16) == (("caffe", "ncnn", "onnx"), False)
    half = runners["ncnn-fp16"].manifest
    assert half["ncnn"]["fp16"] and "fold_batchnorm" not in half["passes"]
    assert "fold_batchnorm" not in exact.manifest["passes"]
    assert runners["opencv"].winograd  # eval measures OpenCV as deployed
