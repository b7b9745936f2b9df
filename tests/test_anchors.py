"""Anchor explanation and caffe-ssd PriorBox arithmetic, on GluonCV's own anchor generators."""

from __future__ import annotations

import numpy as np
import pytest

from ssdconv.ssd.anchors import derive_level, explain_slots, prior_error


def _gluon_anchors(cls, index, sizes, ratios, step, feat, im=512):
    from gluoncv.model_zoo.ssd.anchor import LiteAnchorGenerator, SSDAnchorGenerator

    gen = {"ssd": SSDAnchorGenerator, "lite": LiteAnchorGenerator}[cls](
        index, (im, im), sizes, ratios, step, alloc_size=(feat, feat))
    a = gen.anchors.data().asnumpy() if gen.anchors._data else None
    if a is None:
        gen.initialize()
        a = gen.anchors.data().asnumpy()
    return a.reshape(feat, feat, -1, 4).astype(np.float32).astype(np.float64)


def test_standard_level_is_one_priorbox_with_int_scale():
    a = _gluon_anchors("ssd", 0, (51.2, 102.4), (1, 2, 0.5), 16, 32)
    level = derive_level(0, a, 512, 512, "test")
    assert len(level.groups) == 1
    g = level.groups[0]
    assert (g.min_size, g.max_size, g.int_scale) == (51.2, 102.4, 5)
    assert g.aspect_ratios == pytest.approx((2.0, 0.5))
    assert (level.step_h, level.step_w, level.offset) == (16.0, 16.0, 0.5)
    assert prior_error(level, 512, 512, int_cast=True) < 1e-6


def test_int_cast_without_scaling_is_measurably_wrong():
    """The reason for int_scale: caffe-ssd's int cast of 51.2 moves priors by >1e-6."""
    import dataclasses

    a = _gluon_anchors("ssd", 0, (51.2, 102.4), (1, 2, 0.5), 16, 32)
    level = derive_level(0, a, 512, 512, "test")
    unscaled = dataclasses.replace(level, groups=tuple(
        dataclasses.replace(g, int_scale=1) for g in level.groups))
    assert prior_error(unscaled, 512, 512, int_cast=True) > 1e-4
    assert prior_error(unscaled, 512, 512, int_cast=False) < 1e-6


@pytest.mark.parametrize("index", [0, 1])
def test_lite_anchor_order_is_reproduced(index):
    a = _gluon_anchors("lite", index, (105, 150), (1, 2, 0.5, 3, 1 / 3), 30, 10, im=300)
    level = derive_level(index, a, 300, 300, "test")
    assert len(level.groups) > 1  # a standard PriorBox cannot express it
    assert prior_error(level, 300, 300, int_cast=True) < 1e-6


def test_non_square_first_slot_drops_the_min_square():
    groups = explain_slots([(20.0, 10.0), (10.0, 20.0)])
    assert len(groups) == 1 and groups[0].drop_first
    assert groups[0].aspect_ratios == pytest.approx((2.0, 0.5))
