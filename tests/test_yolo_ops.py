"""The IR ops the YOLOv3 family adds (Sigmoid, Exp, Upsample, Scale by a second input) and the
per-element Scale on a (1, K) blob, each written for both backends and run in the real
runtimes (OpenCV's Caffe importer, the ncnn package) against float64 numpy.

Sigmoid and Exp round in float32, so they get a relative tolerance (measured: see RTOL_ACT);
the others copy, or multiply two floats once (one float32 rounding, computed the same way in
numpy), so they must be exact (max abs diff 0.0).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_caffe_backend import graph, node
from test_caffe_backend import run as run_opencv
from test_ncnn_backend import run as run_ncnn

from ssdconv.backend.caffe.emit import parse_prototxt_strict, write_caffe

# Largest elementwise relative error of float32 sigmoid/exp vs float64 on x in [-8, 8]; measured
# 1.1e-7 (Sigmoid, both) and 1.8e-7 (ncnn Exp), one or two float32 ulps.
RTOL_ACT = 4e-7


def both(g, tmp_path, x: np.ndarray, blob: str) -> dict[str, np.ndarray]:
    """`blob` as OpenCV and ncnn compute it from input `x` (batch axis kept)."""
    (cv,), _ = run_opencv(g, tmp_path / "caffe", x, [blob])
    nc, _ = run_ncnn(tmp_path / "ncnn", g, {"data": x}, [blob])
    return {"opencv": np.asarray(cv), "ncnn": nc[blob]}


def max_rel(out: np.ndarray, ref: np.ndarray) -> float:
    assert out.shape == ref.shape, (out.shape, ref.shape)
    return float(np.max(np.abs(out.astype(np.float64) - ref) / np.abs(ref)))


ACTIVATIONS = {
    "Sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "Exp": np.exp,
}


@pytest.mark.parametrize("op", sorted(ACTIVATIONS))
def test_activation_matches_float64(tmp_path, op):
    shape = (1, 3, 5, 7)
    x = np.random.RandomState(0).uniform(-8, 8, shape).astype(np.float32)
    g = graph(shape, [node("act", op, ["data"])], ["act"])
    ref = ACTIVATIONS[op](x.astype(np.float64))
    for runtime, out in both(g, tmp_path, x, "act").items():
        assert max_rel(out, ref) < RTOL_ACT, runtime


def test_exp_writes_every_field(tmp_path):
    """OpenCV only sees set fields: base -1 (e), scale 1 and shift 0 are written explicitly."""
    g = graph((1, 2, 3, 3), [node("e", "Exp", ["data"])], ["e"])
    layer = parse_prototxt_strict(write_caffe(g, tmp_path, "net")["prototxt"]).layer[1]
    assert layer.type == "Exp"
    assert [layer.exp_param.HasField(f) for f in ("base", "scale", "shift")] == [True] * 3
    assert (layer.exp_param.base, layer.exp_param.scale, layer.exp_param.shift) == (-1, 1, 0)


@pytest.mark.parametrize("scale, shape", [(2, (1, 3, 5, 7)), (3, (1, 2, 4, 3))])
def test_upsample_is_exact_nearest(tmp_path, scale, shape):
    x = np.random.RandomState(1).standard_normal(shape).astype(np.float32)
    g = graph(shape, [node("up", "Upsample", ["data"], scale=scale)], ["up"])
    ref = x.repeat(scale, axis=2).repeat(scale, axis=3)
    assert g.shapes["up"] == ref.shape
    for runtime, out in both(g, tmp_path, x, "up").items():
        assert out.shape == ref.shape, runtime
        assert np.max(np.abs(out - ref)) == 0.0, runtime


def test_scale_by_second_input_is_exact(tmp_path):
    """YOLO's score = class * objectness: x (1, N, C) times s (1, N) row by row. Here both come
    from one input (1, N, C+1) sliced as the head slices its prediction."""
    n, c = 6, 4
    data = np.random.RandomState(2).standard_normal((1, n, c + 1)).astype(np.float32)
    nodes = [
        node("split", "Slice", ["data"], ["cls", "obj3"], axis=2, slice_points=(c,)),
        node("obj", "Reshape", ["obj3"], dims=(0, n)),
        node("score", "Scale", ["cls", "obj"], bias=False),
    ]
    g = graph(data.shape, nodes, ["score"])
    ref = data[:, :, :c] * data[:, :, c:]  # float32: one rounding, as in both runtimes
    for runtime, out in both(g, tmp_path, data, "score").items():
        assert np.max(np.abs(out - ref)) == 0.0, runtime


def test_scale_with_bias_on_a_flat_blob_is_per_element(tmp_path):
    """A (1, K) blob: one scale and bias per element (the YOLO head's per-position constants).
    Powers of two as scales make x * s + b a single rounding: exact against float32 math."""
    k = 10
    rs = np.random.RandomState(3)
    x = rs.standard_normal((1, k)).astype(np.float32)
    s = (2.0 ** rs.randint(-3, 4, k)).astype(np.float32)
    b = rs.standard_normal(k).astype(np.float32)
    sc = node("sc", "Scale", ["data"], weights={"scale": s, "bias": b}, bias=True)
    g = graph((1, k), [sc], ["sc"])
    ref = x * s + b  # float32: (x * s) is exact, one rounding in the add
    for runtime, out in both(g, tmp_path, x, "sc").items():
        assert np.max(np.abs(out - ref)) == 0.0, runtime
