"""Custom GluonCV SSDs built from its own parts, with options the zoo presets never use:
a global-pooling last level, other decoder stds, NMS switched off, extra layers without
BatchNorm. Each converts and matches Gluon in OpenCV DNN and ncnn."""

from __future__ import annotations

import warnings

import pytest

from ssdconv.convert import Options, convert
from ssdconv.models import _constants
from ssdconv.mxnet.load import load_block
from ssdconv.mxnet.seeded import seed_params
from ssdconv.verify.check import format_report, run_check

VARIANTS = {
    "global_pool": ({"global_pool": True}, None),
    "stds": ({"stds": (0.1, 0.1, 0.3, 0.3)}, None),
    "nms_off": ({}, {"nms_thresh": 2}),
    "extra_layers_without_bn": ({"use_bn": False}, None),
}


def _build(**kw):
    from gluoncv.model_zoo.mobilenet import get_mobilenet
    from gluoncv.model_zoo.ssd import SSD

    base = get_mobilenet(0.25, pretrained=False)
    filters = [64, 64] if kw.get("global_pool") else [64, 64, 64]
    return SSD(base, 256, features=["relu6_fwd", "relu10_fwd"], num_filters=filters,
               sizes=[20, 50, 100, 150, 200, 256], ratios=[[1, 2, 0.5]] * 5,
               steps=[16, 32, 64, 128, 256], classes=["a", "b"], pretrained=False, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_custom_ssd_variant(variant, tmp_path, sample_images):
    kwargs, nms = VARIANTS[variant]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = _build(**kwargs)
        net.initialize()
        if nms:
            net.set_nms(**nms)
    model = load_block(net, (256, 256), name=variant, classes=["a", "b"])
    seed_params(model.graph, 1, _constants(net))
    conversion = convert(model, tmp_path, Options(targets=("caffe", "ncnn")))
    if "stds" in kwargs:
        assert conversion.manifest["detection_output"]["variance"] == pytest.approx(
            list(kwargs["stds"]))
    report = run_check(conversion, sample_images[:1])
    assert report.ok, format_report(report)
    assert all(r.det.matched > 0 for r in report.results)
