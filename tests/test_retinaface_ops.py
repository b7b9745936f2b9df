"""The MXNet ops insightface's RetinaFace adds (UpSampling nearest, the two-input Crop, the
class scores' Reshape (0, 2, -1, 0) -> softmax over axis 1 -> Reshape (0, 4, -1, 0)), checked
as mx.sym symbols -> walk (explicit roots) -> passes -> every backend -> OpenCV, ncnn,
onnxruntime and OpenVINO against MXNet 1.9.1 float32.

No new IR op or lowering was needed: UpSampling is the IR's Upsample (caffe: a depthwise
Deconvolution of ones; ncnn: Interp nearest; ONNX: Resize nearest floor) and Crop the Slices of
slice_like (`ssdconv.frontend.resample.crop`). Where only data moves the outputs are exact
(max abs diff 0.0); the softmax and the convolutions carry measured tolerances.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from test_plain_frontend import _convert, _mxnet, _source, assert_runtimes_match

from ssdconv.errors import UnsupportedError
from ssdconv.frontend.walk import walk
from ssdconv.ir.shapes import pool_out

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import mxnet as mx

# Softmax over the 2 anchors' (bg, fg) pair, relative to the output's peak (at most 1): measured
# 3.0e-8 (OpenCV, onnxruntime), 6.0e-8 (ncnn), 1.2e-7 (OpenVINO), both spellings: at most two
# float32 ulps below 1 (exp and one division, in different orders).
RTOL_SOFTMAX = 3e-7
# The neck + head level against MXNet, relative to each output's peak (figures per runtime in
# the test); convolutions sum in different orders, and the class probabilities inherit the
# logits' error (their slope p(1 - p) reaches 1/4).
RTOL_NET = 5e-6


def _runtimes_exact(graph, x, want, tmp_path) -> None:
    worst = assert_runtimes_match(graph, x, want, tmp_path, rtol=1e-30)
    assert set(worst.values()) == {0.0}, worst


def _data():
    return mx.sym.Variable("data")


# ---------------------------------------------------------------------------- data movement


def _upsample_crop(crop_kw: dict, like: str = "pool"):
    """data -> UpSampling nearest x2 -> Crop to a (2H - 3, 2W - 3) blob computed from data
    (read for its shape only: drop_unread removes it), or (`like="h_w"`) the one-input form."""
    up = mx.sym.UpSampling(_data(), scale=2, sample_type="nearest", num_args=1, workspace=512,
                           name="up")
    if like == "h_w":
        return mx.sym.Crop(up, num_args=1, name="crop", **crop_kw)
    smaller = mx.sym.Pooling(up, kernel=(4, 4), stride=(1, 1), pool_type="max", name="like")
    return mx.sym.Crop(up, smaller, num_args=2, name="crop", **crop_kw)


@pytest.mark.parametrize("crop_kw, like, starts", [
    ({}, "pool", (0, 0)),  # RetinaFace's: top-left
    ({"offset": (1, 3)}, "pool", (1, 3)),
    ({"offset": (3, 0)}, "pool", (3, 0)),  # the window ends at the input's end
    ({"center_crop": True, "offset": (2, 2)}, "pool", (1, 1)),  # offset ignored; (3 // 2)
    ({"h_w": (5, 9), "offset": (2, 1)}, "h_w", (2, 1)),
    ({"h_w": (5, 9), "center_crop": True}, "h_w", (1, 0)),  # (8 - 5) // 2, (10 - 9) // 2
])
def test_upsampling_and_crop_are_exact(tmp_path, crop_kw, like, starts):
    shape = (1, 3, 4, 5)
    source = _source(_upsample_crop(crop_kw, like), shape)
    graph = _convert(source, ["crop"])
    counts = graph.op_counts()
    assert counts.get("Pool", 0) == 0 and counts["Upsample"] == 1, counts
    assert counts["Slice"] == 2, counts
    x = np.random.RandomState(0).standard_normal(shape).astype(np.float32)
    (want,) = _mxnet(source, ["crop"], x)
    big = x.repeat(2, axis=2).repeat(2, axis=3)
    h, w = want.shape[2:]
    assert np.array_equal(want, big[:, :, starts[0]:starts[0] + h, starts[1]:starts[1] + w])
    _runtimes_exact(graph, x, [want], tmp_path)


def test_crop_to_the_same_size_writes_nothing():
    data = _data()
    source = _source(mx.sym.Crop(mx.sym.relu(data, name="r"), data, num_args=2, name="crop"),
                     (1, 2, 4, 4))
    graph = _convert(source, ["crop"])
    assert graph.op_counts() == {"Input": 1, "ReLU": 1, "Identity": 1}  # kept: a graph output


def test_score_reshapes_are_exact(tmp_path):
    """(1, 4, H, W) -> (1, 2, 2H, W) -> (1, 4, H, W): ncnn's batch-less Mat c=2, h=2H, w=W."""
    shape = (1, 4, 5, 3)
    mid = mx.sym.Reshape(_data(), shape=(0, 2, -1, 0), name="pairs")
    back = mx.sym.Reshape(mid * 1, shape=(0, 4, -1, 0), name="back")  # a computed blob between
    source = _source(mx.sym.Group([mid, back]), shape)
    graph = _convert(source, ["pairs", "back"])
    assert graph.shapes["pairs"] == (1, 2, 10, 3)
    x = np.random.RandomState(1).standard_normal(shape).astype(np.float32)
    _runtimes_exact(graph, x, _mxnet(source, ["pairs", "back"], x), tmp_path)


# ----------------------------------------------------------------------------- the softmax


def _softmax(x, form: str, name: str):
    if form == "softmax":
        return mx.sym.softmax(x, axis=1, name=name)
    return mx.sym.SoftmaxActivation(x, mode="channel", name=name)


@pytest.mark.parametrize("form", ["softmax", "SoftmaxActivation"])
def test_class_softmax_over_anchor_pairs(tmp_path, form):
    """RetinaFace's face_rpn_cls_prob_reshape: both spellings (mnet.25's JSON and train.py's
    deploy symbol) are a Softmax over axis 1 of the (1, 2, 2H, W) blob."""
    shape = (1, 4, 6, 5)
    pairs = mx.sym.Reshape(_data(), shape=(0, 2, -1, 0), name="pairs")
    prob = mx.sym.Reshape(_softmax(pairs, form, "prob"), shape=(0, 4, -1, 0), name="out")
    source = _source(prob, shape)
    graph = _convert(source, ["out"])
    assert graph.producer("prob").attrs["axis"] == 1
    assert graph.op_counts()["Softmax"] == 1 and graph.op_counts()["Reshape"] == 2
    x = np.random.RandomState(2).uniform(-6, 6, shape).astype(np.float32)
    worst = assert_runtimes_match(graph, x, _mxnet(source, ["out"], x), tmp_path,
                                  rtol=RTOL_SOFTMAX)
    assert set(worst) == {"opencv", "ncnn", "onnxruntime", "openvino"}, worst


# -------------------------------------------------------------------------------- refusals


def _refusal(sym, shape=(1, 2, 4, 4)) -> str:
    source = _source(sym, shape)
    with pytest.raises(UnsupportedError) as exc:
        walk(source, [i for i, _ in source.heads])
    return " ".join(r.reason for r in exc.value.refusals)


def test_bilinear_and_multi_input_upsampling_are_refused():
    bilinear = mx.sym.UpSampling(_data(), mx.sym.Variable("w"), scale=2, num_filter=2,
                                 sample_type="bilinear", num_args=2, name="up")
    assert "only nearest on one input" in _refusal(bilinear)
    data = _data()
    two = mx.sym.UpSampling(data, data * 1, scale=2, sample_type="nearest", num_args=2,
                            name="up")
    assert "only nearest on one input" in _refusal(two)


def test_crop_windows_outside_the_input_are_refused():
    """MXNet infers these shapes but fails at run time (crop-inl.h's checks)."""
    shape, data = (1, 2, 6, 6), _data()
    like = mx.sym.Pooling(data, kernel=(3, 3), stride=(1, 1), pool_type="max")  # 4 x 4
    assert "window [3, 7) outside an axis of 6" in _refusal(
        mx.sym.Crop(data, like, num_args=2, offset=(3, 0)), shape)
    bigger = mx.sym.UpSampling(data, scale=2, sample_type="nearest", num_args=1)
    assert "window [0, 12) outside an axis of 6" in _refusal(
        mx.sym.Crop(data, bigger, num_args=2), shape)


# ------------------------------------------------------------------ one neck + head level


def _conv_bn_relu(x, name: str, filters: int, kernel: int, stride: int = 1, relu: bool = True):
    pad = kernel // 2
    x = mx.sym.Convolution(x, num_filter=filters, kernel=(kernel, kernel), stride=(stride,
                           stride), pad=(pad, pad), no_bias=False, name=f"{name}_conv")
    x = mx.sym.BatchNorm(x, fix_gamma=False, eps=2e-5, name=f"{name}_bn")
    return mx.sym.Activation(x, act_type="relu", name=f"{name}_relu") if relu else x


def _retinaface_level(form: str):
    """R50's stem (conv s2, max pool 3x3 s2 p1 'valid'), a stride-8 and a stride-16 map, the
    mnet.25 neck step (lateral 1x1 conv+BN+relu of each, UpSampling nearest x2 of the coarser,
    Crop to the finer, elemwise_add, 3x3 aggregation conv+BN+relu) and one level's heads: the
    class scores (4 = 2 anchors x (bg, fg)) through Reshape (0, 2, -1, 0) -> softmax ->
    Reshape (0, 4, -1, 0), and the box deltas (8)."""
    x = _conv_bn_relu(_data(), "stem", 8, 3, stride=2)
    x = mx.sym.Pooling(x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max",
                       name="pooling0")  # pooling_convention 'valid' (floor) by default
    c2 = _conv_bn_relu(x, "stride8", 12, 3, stride=2)
    c3 = _conv_bn_relu(c2, "stride16", 16, 3, stride=2)
    c3_lat = _conv_bn_relu(c3, "rf_c3_lateral", 8, 1)
    c2_lat = _conv_bn_relu(c2, "rf_c2_lateral", 8, 1)
    up = mx.sym.UpSampling(c3_lat, scale=2, sample_type="nearest", workspace=512, num_args=1,
                           name="rf_c3_upsampling")
    crop = mx.sym.Crop(up, c2_lat, num_args=2, name="crop0")
    aggr = _conv_bn_relu(mx.sym.elemwise_add(c2_lat, crop, name="_plus0"), "rf_c2_aggr", 8, 3)
    score = mx.sym.Convolution(aggr, num_filter=4, kernel=(1, 1), name="face_rpn_cls_score")
    pairs = mx.sym.Reshape(score, shape=(0, 2, -1, 0), name="face_rpn_cls_score_reshape")
    prob = mx.sym.Reshape(_softmax(pairs, form, "face_rpn_cls_prob"), shape=(0, 4, -1, 0),
                          name="face_rpn_cls_prob_reshape")
    bbox = mx.sym.Convolution(aggr, num_filter=8, kernel=(1, 1), name="face_rpn_bbox_pred")
    return mx.sym.Group([prob, bbox])


OUTPUTS = ["face_rpn_cls_prob_reshape", "face_rpn_bbox_pred"]


@pytest.mark.parametrize("form", ["softmax", "SoftmaxActivation"])
@pytest.mark.parametrize("size, cropped", [((64, 96), False), ((52, 70), True)])
def test_neck_and_head_level_matches_mxnet(tmp_path, form, size, cropped):
    """64 x 96 (multiples of 32): the x2 upsample fits the finer map; 52 x 70: it is one row
    and one column larger (3x3 s2 p1 convs round up) and Crop trims them. Both sizes make
    the 'valid' max pool one row smaller than caffe's ceil rule. Measured against MXNet, both
    softmax spellings alike: class probabilities at most 2.2e-6 (OpenCV, OpenVINO), 1.8e-6
    (ncnn), 1.7e-6 (onnxruntime), from logits off by at most 1.5e-6 of their peak; box
    deltas at most 7.0e-7 (OpenCV, OpenVINO), 4.7e-7 (ncnn), 5.3e-7 (onnxruntime)."""
    shape = (1, 3, *size)
    source = _source(_retinaface_level(form), shape, seed=3)
    for name in ("face_rpn_cls_score_weight", "face_rpn_bbox_pred_weight"):
        source.params[name] = source.params[name] * np.float32(0.02)  # logits of a few units
    graph = _convert(source, OUTPUTS)
    counts = graph.op_counts()
    assert counts["Upsample"] == 1 and counts["Softmax"] == 1, counts
    assert counts.get("Slice", 0) == (2 if cropped else 0), counts
    pool = graph.producer("pooling0")
    _, _, h, w = graph.shapes[pool.inputs[0]]
    assert pool.attrs["round"] == "floor" and pool_out(h, 3, 2, 1, "floor") < pool_out(
        h, 3, 2, 1, "ceil"), (pool.attrs, h, w)  # caffe's ceil Pooling needs its Slice
    up, lat = graph.shapes["rf_c3_upsampling"], graph.shapes["rf_c2_lateral_relu"]
    assert (up[2:] != lat[2:]) == cropped, (up, lat)
    x = np.random.RandomState(4).uniform(-1, 1, shape).astype(np.float32)
    assert_runtimes_match(graph, x, _mxnet(source, OUTPUTS, x), tmp_path, rtol=RTOL_NET)
