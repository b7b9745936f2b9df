"""The IR ops plain networks add (classifiers, face embedders), one node each, written for every
backend and run in the real runtimes (OpenCV's Caffe importer, the ncnn package, onnxruntime and
OpenVINO) against float64 numpy.

Ops that only move data, pick a value or multiply once (ShuffleChannel, Clip, PReLU with
power-of-two slopes, BatchNorm-free copies) must be exact (max abs diff 0.0); sums of products
(InnerProduct, Normalize, BatchNorm) and transcendental functions (ELU, TanH) get a measured
relative bound, the figure beside each.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_caffe_backend import graph, node
from test_caffe_backend import run as run_opencv
from test_onnx_backend import run as run_onnx
from test_yolo_ops import both

RUNTIMES_ONNX = ("onnxruntime", "openvino")


def everywhere(g, tmp_path, x: np.ndarray, blob: str) -> dict[str, np.ndarray]:
    """`blob` as OpenCV, ncnn, onnxruntime and OpenVINO compute it from input `x`."""
    outs = both(g, tmp_path, x, blob)
    _, onnx_outs = run_onnx(tmp_path / "onnx", g, {"data": x})
    outs.update({rt: onnx_outs[rt][blob] for rt in RUNTIMES_ONNX})
    return outs


def rel_to_peak(out: np.ndarray, ref: np.ndarray) -> float:
    assert out.shape == ref.shape, (out.shape, ref.shape)
    return float(np.max(np.abs(out.astype(np.float64) - ref)) / np.max(np.abs(ref)))


def rel_each(out: np.ndarray, ref: np.ndarray) -> float:
    assert out.shape == ref.shape, (out.shape, ref.shape)
    return float(np.max(np.abs(out.astype(np.float64) - ref) / np.maximum(np.abs(ref), 1e-30)))


def assert_exact(outs: dict, ref: np.ndarray) -> None:
    for runtime, out in outs.items():
        assert out.shape == ref.shape, (runtime, out.shape)
        assert np.max(np.abs(out.astype(np.float64) - ref)) == 0.0, runtime


# ----------------------------------------------------------------------------- InnerProduct

# Largest error relative to the output's peak, float32 dot products of up to 588 terms against
# float64: measured 2.0e-7 (OpenCV), 1.6e-7 (ncnn), 3.7e-7 (onnxruntime), 4.8e-7 (OpenVINO).
RTOL_DOT = 1e-6


@pytest.mark.parametrize("shape, bias", [((1, 12, 7, 7), True), ((1, 20), False),
                                         ((1, 3, 5), True)])
def test_inner_product_flattens_c_major(tmp_path, shape, bias):
    """insightface's pre_fc1 reads 512x7x7: the flattening order must be C, H, W (numpy's)."""
    rs = np.random.RandomState(0)
    k, o = int(np.prod(shape[1:])), 9
    w = rs.standard_normal((o, k)).astype(np.float32)
    weights = {"weight": w}
    if bias:
        weights["bias"] = rs.standard_normal(o).astype(np.float32)
    g = graph(shape, [node("fc", "InnerProduct", ["data"], weights=weights, num_output=o,
                           bias=bias)], ["fc"])
    x = rs.standard_normal(shape).astype(np.float32)
    ref = x.reshape(1, -1).astype(np.float64) @ w.T.astype(np.float64)
    if bias:
        ref = ref + weights["bias"]
    assert g.shapes["fc"] == (1, o)
    for runtime, out in everywhere(g, tmp_path, x, "fc").items():
        assert rel_to_peak(out, ref) < RTOL_DOT, runtime


# Largest error relative to the peak of an unfolded BatchNorm on a (1, K) blob: measured 8.0e-8
# (OpenCV, ncnn, onnxruntime), 1.0e-7 (OpenVINO): a few float32 roundings of y.
RTOL_BN = 5e-7


def test_batchnorm_on_a_flat_blob(tmp_path):
    """A classifier or embedder ends in a BatchNorm on (1, K) when fold_batchnorm is skipped:
    per element, in every runtime."""
    k = 16
    rs = np.random.RandomState(1)
    w = {"mean": rs.standard_normal(k), "var": rs.uniform(0.5, 2, k),
         "gamma": rs.uniform(0.5, 2, k), "beta": rs.standard_normal(k)}
    w = {r: v.astype(np.float32) for r, v in w.items()}
    g = graph((1, k), [node("bn", "BatchNorm", ["data"], weights=w, eps=2e-5)], ["bn"])
    x = rs.standard_normal((1, k)).astype(np.float32)
    f64 = {r: v.astype(np.float64) for r, v in w.items()}
    eps = float(np.float32(2e-5))
    ref = (x - f64["mean"]) / np.sqrt(f64["var"] + eps) * f64["gamma"] + f64["beta"]
    for runtime, out in everywhere(g, tmp_path, x, "bn").items():
        assert rel_to_peak(out, ref) < RTOL_BN, runtime


# ----------------------------------------------------------------------------- activations


@pytest.mark.parametrize("shape, shared", [((1, 4, 5, 6), False), ((1, 4, 5, 6), True),
                                           ((1, 10), False), ((1, 10), True),
                                           ((1, 3, 5), False)])
def test_prelu_is_exact(tmp_path, shape, shared):
    """Slopes that are powers of two make slope * x exact; any other is one rounding, the same
    in numpy's float32."""
    rs = np.random.RandomState(2)
    c = 1 if shared else shape[1]
    slope = (rs.uniform(0.05, 0.6, c)).astype(np.float32)
    g = graph(shape, [node("pr", "PReLU", ["data"], weights={"slope": slope})], ["pr"])
    x = rs.standard_normal(shape).astype(np.float32)
    s = slope.reshape((-1,) + (1,) * (len(shape) - 2)) if not shared else slope
    ref = np.where(x > 0, x, s * x).astype(np.float64)  # float32 product: one rounding
    assert_exact(everywhere(g, tmp_path, x, "pr"), ref)


# Largest relative error per element against float64, on x in [-8, 8] with |x| >= 1e-3: ELU
# measured 7.3e-8 (OpenCV, ncnn), 1.5e-7 (onnxruntime), 1.8e-7 (OpenVINO); TanH 1.3e-7
# (OpenCV), 2.5e-7 (ncnn), 1.8e-7 (onnxruntime), 6.3e-8 (OpenVINO): one or two float32 ulps.
RTOL_TRANSCENDENTAL = 5e-7

TRANSCENDENTAL = {
    "ELU": ({"alpha": 0.25}, lambda x: np.where(x > 0, x, np.float32(0.25) * np.expm1(x))),
    "TanH": ({}, np.tanh),
}


@pytest.mark.parametrize("op", sorted(TRANSCENDENTAL))
@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (1, 40)])
def test_transcendental_activation(tmp_path, op, shape):
    attrs, fn = TRANSCENDENTAL[op]
    x = np.random.RandomState(3).uniform(-8, 8, shape).astype(np.float32)
    x[np.abs(x) < 1e-3] = 0.5  # relative error is meaningless where expm1/tanh cross 0
    g = graph(shape, [node("act", op, ["data"], **attrs)], ["act"])
    ref = fn(x.astype(np.float64))
    for runtime, out in everywhere(g, tmp_path, x, "act").items():
        assert rel_each(out, ref) < RTOL_TRANSCENDENTAL, runtime


@pytest.mark.parametrize("lo, hi", [(0.0, 1.0), (0.0, 0.1), (-1.0, 1.0), (0.5, 6.0),
                                    (-3.0, -0.5)])
def test_clip_any_bounds_is_exact(tmp_path, lo, hi):
    """Hard-sigmoid written as clip(x / 6 + 0.5, 0, 1) and any other clip: caffe composes it
    from Power and Eltwise MAX (every step exact; relu(x) - relu(x - M) for a whole M), the
    others have a Clip. Clip(0, 0.1) is the case relu(x) - relu(x - 0.1) would get wrong."""
    shape = (1, 3, 6, 6)
    x = np.random.RandomState(4).uniform(-10, 10, shape).astype(np.float32)
    g = graph(shape, [node("clip", "Clip", ["data"], min=lo, max=hi)], ["clip"])
    ref = np.clip(x, np.float32(lo), np.float32(hi)).astype(np.float64)
    assert_exact(everywhere(g, tmp_path, x, "clip"), ref)


# ----------------------------------------------------------------------------- data movement


@pytest.mark.parametrize("group, shape", [(2, (1, 6, 3, 4)), (3, (1, 12, 2, 5)),
                                          (4, (1, 8, 1, 1))])
def test_shuffle_channel_is_exact(tmp_path, group, shape):
    x = np.random.RandomState(5).standard_normal(shape).astype(np.float32)
    g = graph(shape, [node("shuf", "ShuffleChannel", ["data"], group=group)], ["shuf"])
    n, c, h, w = shape
    ref = x.reshape(n, group, c // group, h, w).swapaxes(1, 2).reshape(shape)
    assert_exact(everywhere(g, tmp_path, x, "shuf"), ref.astype(np.float64))


def test_scale_of_a_4d_blob_by_computed_channel_factors_is_exact(tmp_path):
    """Squeeze-excitation: x (1, C, H, W) times s (1, C) computed in the net (here a global
    average pool of x, flattened): one float32 product per element in every runtime, checked
    against each runtime's own factors (the pooling sums in its own order)."""
    shape = (1, 5, 4, 3)
    x = np.random.RandomState(6).standard_normal(shape).astype(np.float32)
    pool = {"method": "avg", "kernel": (1, 1), "stride": (1, 1), "pad": (0, 0),
            "global_pool": True, "round": "floor", "count_include_pad": True}
    g = graph(shape, [node("gap", "Pool", ["data"], **pool),
                      node("s", "Flatten", ["gap"], axis=1, end_axis=-1),
                      node("se", "Scale", ["data", "s"], bias=False)], ["se", "s"])
    outs = {blob: everywhere(g, tmp_path / blob, x, blob) for blob in ("se", "s")}
    for runtime, out in outs["se"].items():
        ref = x * outs["s"][runtime].reshape(1, -1, 1, 1)
        assert np.max(np.abs(out - ref)) == 0.0, runtime


# Largest error per element relative to the output, Normalize across every non-batch axis
# (MXNet's L2Normalization mode='instance'): measured 6.2e-8 (OpenCV, ncnn), 1.5e-7
# (onnxruntime), 1.7e-7 (OpenVINO) on (1, 4, 3, 5); at most 1.1e-7 on (1, 6, 7) and 9.8e-8
# on (1, 32).
RTOL_NORM = 5e-7


@pytest.mark.parametrize("shape", [(1, 4, 3, 5), (1, 6, 7), (1, 32)])
def test_normalize_across_spatial_shared(tmp_path, shape):
    x = np.random.RandomState(7).standard_normal(shape).astype(np.float32)
    g = graph(shape, [node("l2", "Normalize", ["data"], weights={"scale": np.ones(1)},
                           across_spatial=True, channel_shared=True, eps=1e-10)], ["l2"])
    x64 = x.astype(np.float64)
    ref = x64 / np.sqrt((x64 ** 2).sum() + np.float32(1e-10))
    for runtime, out in everywhere(g, tmp_path, x, "l2").items():
        assert rel_each(out, ref) < RTOL_NORM, runtime


# Largest relative error per element, Softmax over K = 10 logits in [-2.5, 2.5]: measured
# 1.6e-7 (OpenCV), 1.4e-7 (ncnn, onnxruntime), 1.6e-7 (OpenVINO).
RTOL_SOFTMAX = 1e-6


def test_a_classifier_tail_on_a_flat_blob(tmp_path):
    """What classifiers end in, on a (1, K) blob: Flatten, Power, Softmax axis 1; and an
    Identity writing a graph output (caffe: an exact Power copy; ONNX: Identity; ncnn refuses
    it, drop_noops keeps it only as an output)."""
    k = 10
    x = np.random.RandomState(8).uniform(-5, 5, (1, k)).astype(np.float32)
    g = graph((1, k), [node("flat", "Flatten", ["data"], axis=1, end_axis=-1),
                       node("half", "Power", ["flat"], power=1.0, scale=0.5, shift=0.0),
                       node("prob", "Softmax", ["half"], axis=1)], ["prob", "half"])
    x64 = x.astype(np.float64) * 0.5
    ref = np.exp(x64 - x64.max()) / np.exp(x64 - x64.max()).sum()
    for runtime, out in everywhere(g, tmp_path, x, "prob").items():
        assert rel_each(out, ref) < RTOL_SOFTMAX, runtime
    assert_exact(everywhere(g, tmp_path / "half", x, "half"), x64)
    copy = graph((1, k), [node("copy", "Identity", ["data"])], ["copy"])
    (cv,), _ = run_opencv(copy, tmp_path / "copy", x, ["copy"])
    _, onnx_outs = run_onnx(tmp_path / "onnx_copy", copy, {"data": x})
    assert_exact({"opencv": cv, **{rt: onnx_outs[rt]["copy"] for rt in RUNTIMES_ONNX}},
                 x.astype(np.float64))


def test_inner_product_on_a_one_row_blob_is_refused_by_ncnn(tmp_path):
    """(1, 1, K) is an ncnn Mat h=1, w=K, which InnerProduct takes as a gemm batch of one row,
    writing a 2-D (h=1, w=O) Mat (seen: a Softmax axis 1 after it then gives all ones):
    refused for ncnn; caffe flattens it as the IR says."""
    from ssdconv.backend.ncnn.emit import write_ncnn
    from ssdconv.errors import UnsupportedError

    w = np.ones((2, 6), np.float32)
    g = graph((1, 1, 6), [node("fc", "InnerProduct", ["data"], weights={"weight": w},
                               num_output=2, bias=False)], ["fc"])
    with pytest.raises(UnsupportedError, match="gemm row"):
        write_ncnn(g, tmp_path, "net")
    x = np.arange(6, dtype=np.float32).reshape(1, 1, 6)
    (cv,), _ = run_opencv(g, tmp_path / "caffe", x, ["fc"])
    assert np.array_equal(cv, np.full((1, 2), 15.0, np.float32))


def test_inner_product_weights_in_fp16_load(tmp_path):
    """--ncnn-fp16 stores InnerProduct weights flagged as fp16 too (ncnn's mb.load(n, 0)):
    the net loads and computes with the fp16-rounded weights (measured 1.0e-7 relative to the
    peak against them; 3.3e-4 against the float32 weights, the approximation the manifest
    lists)."""
    from test_ncnn_backend import run as run_ncnn

    rs = np.random.RandomState(9)
    w = rs.standard_normal((5, 24)).astype(np.float32)
    g = graph((1, 24), [node("fc", "InnerProduct", ["data"], weights={"weight": w},
                             num_output=5, bias=False)], ["fc"])
    x = rs.standard_normal((1, 24)).astype(np.float32)
    out, _ = run_ncnn(tmp_path, g, {"data": x}, ["fc"], fp16=True)
    ref = x.astype(np.float64) @ w.astype(np.float16).astype(np.float64).T
    assert rel_to_peak(out["fc"], ref) < 1e-6
