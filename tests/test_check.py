"""The check can fail, and says where: a corrupted layer is found by the per-layer bisection."""

from __future__ import annotations

import numpy as np
import pytest

from ssdconv.backend.caffe import caffe_ssd_pb2 as pb
from ssdconv.convert import Options, convert
from ssdconv.models import load_model
from ssdconv.verify.check import format_report, run_check


@pytest.fixture(scope="module")
def conversion(tmp_path_factory):
    model = load_model("ssd_300_mobilenet0.25_voc", seed=0)
    return convert(model, tmp_path_factory.mktemp("conv"), Options(targets=("caffe",)))


def test_exact_conversion_passes(conversion, sample_images):
    report = run_check(conversion, sample_images[:1])
    assert report.ok, format_report(report)


def test_corrupted_layer_is_named(conversion, sample_images, tmp_path):
    net = pb.NetParameter()
    net.ParseFromString(open(conversion.files["caffemodel"], "rb").read())
    convs = [layer for layer in net.layer if layer.type == "Convolution"]
    victim = convs[9]
    data = np.array(victim.blobs[0].data, np.float32)
    data[: data.size // 8] *= 1.5  # a subtle corruption: an eighth of the weights, +50 %
    del victim.blobs[0].data[:]
    victim.blobs[0].data.extend(data.tolist())
    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(net.SerializeToString())
    conversion.files = dict(conversion.files, caffemodel=str(bad))
    report = run_check(conversion, sample_images[:1], runtimes=("opencv",))
    text = format_report(report)
    assert not report.ok and "verdict: FAIL" in text
    (res,) = report.results
    assert not res.raw.ok
    assert res.first_divergence and res.first_divergence.startswith(victim.top[0] + ":"), text
