"""The ONNX body writer against onnxruntime, OpenVINO and float64 numpy references.

Each test builds a small IR graph by hand (seeded values), writes it with `write_onnx`, checks
the file with `onnx.checker.check_model(full_check=True)`, runs it in onnxruntime (CPU) and in
OpenVINO (CPU, compiled with an f32 inference precision: this CPU has AVX512_BF16 and OpenVINO
would otherwise run in bf16) and compares every graph output with a float64 reference. Ops that
are exact in float32 (data movement, max, clip, relu) compare with equality; the others with
measured tolerances (the measured figure is beside each) and a margin, so a wrong axis, pad,
eps or rounding rule fails.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov
import openvino.properties.hint as ov_hint
import pytest
from test_ncnn_backend import (
    conv_node,
    conv_ref,
    make_graph,
    maxpool_ref,
    pool_attrs,
    priorbox_attrs,
)

from ssdconv.backend.onnx.emit import OPSET, write_onnx
from ssdconv.backend.onnx.lower import LOWERINGS, lowers
from ssdconv.errors import UnsupportedError
from ssdconv.ir.graph import Graph, Node
from ssdconv.ir.ops import OP_SPECS
from ssdconv.ir.shapes import pool_out
from ssdconv.ir.validate import validate

CORE = ov.Core()
F32 = {ov_hint.inference_precision: ov.Type.f32}
RUNTIMES = ("onnxruntime", "openvino")


# ----------------------------------------------------------------------------- helpers


def run(tmp_path, graph: Graph, feeds: dict, name: str = "net") -> tuple[dict, dict]:
    """Write, check, run in both runtimes; returns (write_onnx's dict, {runtime: {blob: out}})
    for every graph output, each checked to have the IR's shape."""
    info = write_onnx(graph, tmp_path, name)
    model = onnx.load(info["onnx"])
    onnx.checker.check_model(model, full_check=True)
    assert [o.name for o in model.graph.output] == graph.outputs
    assert [i.name for i in model.graph.input] == list(graph.inputs)
    x32 = {b: np.asarray(v, dtype=np.float32) for b, v in feeds.items()}
    session = ort.InferenceSession(info["onnx"], providers=["CPUExecutionProvider"])
    compiled = CORE.compile_model(info["onnx"], "CPU", F32)
    results = compiled(x32)
    outs = {
        "onnxruntime": dict(zip(graph.outputs, session.run(graph.outputs, x32), strict=True)),
        "openvino": {b: results[compiled.output(b)] for b in graph.outputs},
    }
    for per_blob in outs.values():
        for b, v in per_blob.items():
            assert v.shape == graph.shapes[b] and v.dtype == np.float32, (b, v.shape)
    return info, outs


def rel_err(out: np.ndarray, ref: np.ndarray) -> float:
    """Largest error relative to the reference's largest magnitude."""
    ref = np.asarray(ref, np.float64)
    return float(np.max(np.abs(out.astype(np.float64) - ref)) / np.max(np.abs(ref)))


def assert_close(outs: dict, blob: str, ref: np.ndarray, tol: float) -> None:
    for rt in RUNTIMES:
        assert rel_err(outs[rt][blob], ref) < tol, (rt, blob, rel_err(outs[rt][blob], ref))


def assert_close_each(outs: dict, blob: str, ref: np.ndarray, tol: float) -> None:
    """Relative error per element: for outputs spanning many magnitudes (exp, softmax)."""
    for rt in RUNTIMES:
        worst = float(np.max(np.abs(outs[rt][blob] / np.asarray(ref, np.float64) - 1)))
        assert worst < tol, (rt, blob, worst)


def assert_exact(outs: dict, blob: str, ref: np.ndarray) -> None:
    for rt in RUNTIMES:
        np.testing.assert_array_equal(outs[rt][blob], np.asarray(ref, np.float32), err_msg=rt)


def op_types(info: dict) -> list[str]:
    return [n.op_type for n in onnx.load(info["onnx"]).graph.node]


def f32_weights(node: Node) -> Node:
    """The node with float32 weights, so the float64 reference sees the values written."""
    node.weights = {k: np.asarray(v, np.float32) for k, v in node.weights.items()}
    return node


def one_node(op: str, shape: tuple, attrs: dict, weights: dict | None = None,
             extra_inputs: dict | None = None) -> Graph:
    node = Node("y", op, ["x", *(extra_inputs or {})], ["y"], attrs, weights or {})
    return make_graph({"x": shape, **(extra_inputs or {})}, [f32_weights(node)], ["y"])


# ----------------------------------------------------------------------------- conv, bn, scale


@pytest.mark.parametrize(
    "kw, cin, cout",
    [
        ({"k": 3, "s": 1, "p": 1}, 3, 8),
        ({"k": 3, "s": 2, "p": 2, "d": 2, "group": 6}, 6, 6),  # depthwise, dilated, strided
        ({"k": (3, 1), "s": (1, 2), "p": (1, 0), "group": 2, "bias": False}, 4, 6),
        ({"k": 3, "s": 1, "p": 6, "d": 6}, 4, 5),  # VGG fc6 style dilation 6
    ],
)
def test_conv(tmp_path, kw, cin, cout):
    rng = np.random.default_rng(2)
    node = f32_weights(conv_node(rng, "conv", "data", cin, cout, **kw))
    g = make_graph({"data": (1, cin, 15, 17)}, [node], ["conv"])
    x = rng.standard_normal((1, cin, 15, 17)).astype(np.float32)
    _, outs = run(tmp_path, g, {"data": x})
    assert_close(outs, "conv", conv_ref(x, node), 5e-7)  # measured <= 1.0e-7 (ort), 1.7e-7 (ov)


def test_batchnorm_uses_the_nodes_eps(tmp_path):
    rng = np.random.default_rng(6)
    c = 5
    w = {"mean": rng.standard_normal(c), "var": rng.uniform(0.001, 2, c),
         "gamma": rng.standard_normal(c), "beta": rng.standard_normal(c)}
    g = one_node("BatchNorm", (1, c, 4, 6), {"eps": 1e-3}, w)
    w = {k: np.asarray(v, np.float32).astype(np.float64)[None, :, None, None]
         for k, v in g.nodes[-1].weights.items()}
    x = rng.standard_normal((1, c, 4, 6)).astype(np.float32)

    def ref(eps):
        return (x - w["mean"]) / np.sqrt(w["var"] + eps) * w["gamma"] + w["beta"]

    _, outs = run(tmp_path, g, {"x": x})
    assert_close(outs, "y", ref(1e-3), 4e-7)  # measured 1.0e-7 (ort), 1.5e-7 (ov)
    assert rel_err(ref(1e-3).astype(np.float32), ref(1e-5)) > 1e-3  # another eps would show


@pytest.mark.parametrize("shape", [(1, 4, 3, 5), (1, 7), (1, 6, 5)])
@pytest.mark.parametrize("bias", [False, True])
def test_scale_per_channel_or_per_element(tmp_path, shape, bias):
    """Along axis 1: per channel on (1,C,H,W) and (1,N,C), per element on (1,K)."""
    rng = np.random.default_rng(7)
    c = shape[1]
    w = {"scale": rng.uniform(0.5, 2, c), **({"bias": rng.standard_normal(c)} if bias else {})}
    g = one_node("Scale", shape, {"bias": bias}, w)
    w = {k: np.asarray(v, np.float32).astype(np.float64).reshape((c,) + (1,) * (len(shape) - 2))
         for k, v in g.nodes[-1].weights.items()}
    x = rng.standard_normal(shape).astype(np.float32)
    _, outs = run(tmp_path, g, {"x": x})
    ref = x * w["scale"] + (w["bias"] if bias else 0.0)
    assert_close(outs, "y", ref, 1e-7)  # measured <= 3.8e-8 (ort), 3.8e-8 (ov)


@pytest.mark.parametrize("shape", [(1, 5, 3, 4), (1, 5, 6), (1, 5)])
def test_scale_by_a_second_input(tmp_path, shape):
    rng = np.random.default_rng(8)
    g = one_node("Scale", shape, {"bias": False}, extra_inputs={"s": (1, shape[1])})
    x = rng.standard_normal(shape).astype(np.float32)
    s = rng.standard_normal((1, shape[1])).astype(np.float32)
    _, outs = run(tmp_path, g, {"x": x, "s": s})
    # one float32 product per element: exact against float64 rounded to float32
    assert_exact(outs, "y", x.astype(np.float64) * s.reshape(s.shape + (1,) * (len(shape) - 2)))


# ----------------------------------------------------------------------------- pointwise

POINT_X = np.concatenate([
    [-1e6, -7.5, -6.0, -1.0, -1e-30, -0.0, 0.0, 1e-30, 1e-7, 0.5, 3.0, 5.999999, 6.0, 6.0000005,
     6.5, 7.0, 100.0, 1e6],
    np.random.default_rng(3).standard_normal(46) * 8,
]).astype(np.float32).reshape(1, 4, 4, 4)


@pytest.mark.parametrize("op, attrs, ref", [
    ("ReLU", {}, lambda x: np.maximum(x, 0)),
    ("ReLU", {"negative_slope": 0.125}, lambda x: np.where(x > 0, x, 0.125 * x)),  # 1/8: exact
    ("Clip", {"min": -1.0, "max": 6.0}, lambda x: np.clip(x, -1, 6)),
    ("Identity", {}, lambda x: x),
])
def test_exact_pointwise(tmp_path, op, attrs, ref):
    g = one_node(op, POINT_X.shape, attrs)
    _, outs = run(tmp_path, g, {"x": POINT_X})
    assert_exact(outs, "y", ref(POINT_X.astype(np.float64)))


def test_leaky_relu_slope_is_the_nodes(tmp_path):
    x = POINT_X[np.abs(POINT_X) < 1e4].reshape(1, -1)
    g = one_node("ReLU", x.shape, {"negative_slope": 0.1})
    _, outs = run(tmp_path, g, {"x": x})
    slope = np.float32(0.1).astype(np.float64)  # the attribute is float32, as Caffe's is
    assert_exact(outs, "y", np.where(x > 0, x, slope * x))


@pytest.mark.parametrize("op, ref, tol", [
    ("Sigmoid", lambda x: 1 / (1 + np.exp(-x)), 5e-7),  # measured 1.0e-7 (ort), 2.3e-7 (ov)
    ("Exp", np.exp, 5e-7),  # measured 6.8e-8 (ort), 1.8e-7 (ov)
])
def test_transcendental_pointwise(tmp_path, op, ref, tol):
    x = np.random.default_rng(4).uniform(-20, 20, (1, 3, 16, 16)).astype(np.float32)
    g = one_node(op, x.shape, {})
    _, outs = run(tmp_path, g, {"x": x})
    assert_close_each(outs, "y", ref(x.astype(np.float64)), tol)


# ----------------------------------------------------------------------------- pooling


def avgpool_ref(x, k, s, p, oh, ow, include_pad):
    """Caffe's average pooling in float64: the window is clipped to the padded image for the
    divisor (include_pad) and to the image for the sum; without include_pad the divisor is the
    number of image pixels in the window."""
    x = x.astype(np.float64)
    _, c, h, w = x.shape
    out = np.empty((1, c, oh, ow))
    for i, j in itertools.product(range(oh), range(ow)):
        hs, ws = i * s - p, j * s - p
        he, we = min(hs + k, h + p), min(ws + k, w + p)
        size = (he - hs) * (we - ws)
        win = x[0, :, max(hs, 0):min(he, h), max(ws, 0):min(we, w)]
        out[0, :, i, j] = win.sum((1, 2)) / (size if include_pad else win[0].size)
    return out


POOL_CASES = [  # size, k, s, p, rounding, expected output size
    (16, 3, 2, 1, "floor", 8),  # MXNet 'valid' (ResNet pool0): Caffe's ceil gives 9
    (16, 3, 2, 1, "ceil", 9),  # the last window reaches past the padded edge
    (5, 2, 2, 1, "ceil", 3),  # Caffe drops the window starting in the pad; ONNX ceil_mode: 4
    (6, 3, 2, 1, "ceil", 4),
    (17, 2, 2, 0, "floor", 8),  # floor leaves the last row unused
    (17, 2, 2, 0, "ceil", 9),
]


@pytest.mark.parametrize("size, k, s, p, rounding, expect", POOL_CASES)
def test_max_pooling_rounding(tmp_path, size, k, s, p, rounding, expect):
    rng = np.random.default_rng(4)
    g = one_node("Pool", (1, 3, size, size), pool_attrs(k, s, p, rounding))
    assert g.shapes["y"] == (1, 3, expect, expect)
    other = "floor" if rounding == "ceil" else "ceil"
    x = rng.standard_normal((1, 3, size, size)).astype(np.float32)
    info, outs = run(tmp_path, g, {"x": x})
    assert_exact(outs, "y", maxpool_ref(x, k, s, p, expect, expect))
    assert op_types(info) == ["MaxPool"]
    # the case would fail a writer ignoring the rounding, unless both rules agree here
    if pool_out(size, k, s, p, other) == expect:
        assert (size, k, s, p) == (5, 2, 2, 1)  # ceil with Caffe's drop equals floor here
        assert -(-(size + 2 * p - k) // s) + 1 != expect  # ...but not a plain ceil
    assert bool(info["choices"]) == (pool_out(size, k, s, p, "floor") != expect)


@pytest.mark.parametrize("size, k, s, p, rounding, expect", POOL_CASES)
@pytest.mark.parametrize("include_pad", [True, False])
def test_average_pooling_rounding_and_padding(tmp_path, size, k, s, p, rounding, expect,
                                              include_pad):
    rng = np.random.default_rng(5)
    g = one_node("Pool", (1, 3, size, size), pool_attrs(k, s, p, rounding, "avg", include_pad))
    x = rng.standard_normal((1, 3, size, size)).astype(np.float32)
    info, outs = run(tmp_path, g, {"x": x})
    ref = avgpool_ref(x, k, s, p, expect, expect, include_pad)
    assert_close(outs, "y", ref, 3e-7)  # measured <= 6.6e-8 (ort), 1.2e-7 (ov)
    tail = (expect - 1) * s + k - size - p
    composed = include_pad and tail > p
    assert ("Pad" in op_types(info)) == (composed and p > 0)
    if composed:  # a divisor counting the whole window (OpenVINO's ceil_mode) would fail
        whole = ref.copy()
        whole[..., -1, :] *= (k - tail + p) / k
        assert rel_err(whole.astype(np.float32), ref) > 1e-2


@pytest.mark.parametrize("method", ["max", "avg"])
def test_global_pooling(tmp_path, method):
    rng = np.random.default_rng(9)
    g = one_node("Pool", (1, 4, 6, 7), pool_attrs(1, 1, 0, "floor", method, global_pool=True))
    x = rng.standard_normal((1, 4, 6, 7)).astype(np.float32)
    _, outs = run(tmp_path, g, {"x": x})
    if method == "max":
        assert_exact(outs, "y", x.max((2, 3), keepdims=True))
    else:  # measured 6.2e-8 (ort), 1.5e-7 (ov)
        assert_close(outs, "y", x.astype(np.float64).mean((2, 3), keepdims=True), 5e-7)


def test_pools_without_an_exact_form_are_refused_together(tmp_path):
    """A pad not below the kernel (onnxruntime refuses it), and a ceil window starting past
    the image (stride 3 > kernel 1, no pad: Caffe would pool an empty window)."""
    nodes = [Node("bigpad", "Pool", ["x"], ["bigpad"], pool_attrs(2, 2, 2, "floor")),
             Node("empty", "Pool", ["x"], ["empty"], pool_attrs(1, 3, 0, "ceil"))]
    g = make_graph({"x": (1, 2, 5, 5)}, nodes, ["bigpad", "empty"])
    assert g.shapes["empty"] == (1, 2, 3, 3)  # windows start at 0, 3 and 6
    with pytest.raises(UnsupportedError) as e:
        write_onnx(g, tmp_path, "bad")
    reasons = {r.node: r.reason for r in e.value.refusals}
    assert "not below kernel" in reasons["bigpad"] and "starts past" in reasons["empty"]
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- eltwise, power


def test_eltwise(tmp_path):
    rng = np.random.default_rng(10)
    shape = (1, 3, 4, 5)
    ins = {b: shape for b in ("a", "b", "c")}
    nodes = [
        Node("sum", "Eltwise", ["a", "b", "c"], ["sum"], {"operation": "sum", "coeffs": ()}),
        Node("wsum", "Eltwise", ["a", "b", "c"], ["wsum"],
             {"operation": "sum", "coeffs": (0.5, -2.0, 1.0)}),
        Node("prod", "Eltwise", ["a", "b", "c"], ["prod"], {"operation": "prod", "coeffs": ()}),
        Node("max", "Eltwise", ["a", "b", "c"], ["max"], {"operation": "max", "coeffs": ()}),
    ]
    g = make_graph(ins, nodes, ["sum", "wsum", "prod", "max"])
    x = {b: rng.standard_normal(shape).astype(np.float32) for b in ins}
    _, outs = run(tmp_path, g, x)
    a, b, c = (x[k].astype(np.float64) for k in "abc")
    assert_close(outs, "sum", a + b + c, 1e-7)  # measured 3.3e-8 (ort), 3.3e-8 (ov)
    assert_close(outs, "wsum", 0.5 * a - 2 * b + c, 1e-7)  # measured 3.8e-8 (ort, ov)
    assert_close(outs, "prod", a * b * c, 1e-7)  # measured 1.9e-8 (ort), 1.9e-8 (ov)
    assert_exact(outs, "max", np.maximum(np.maximum(a, b), c))
    assert rel_err(outs["onnxruntime"]["wsum"], a + b + c) > 0.1  # the coefficients count


POWER_X = np.random.default_rng(11).uniform(0.01, 50, (1, 4, 50, 50)).astype(np.float32)


@pytest.mark.parametrize("power, scale, shift, first", [
    (1.0, 1.0, 0.0, "Identity"),
    (0.5, 1.0, 0.0, "Sqrt"),
    (-1.0, 1.0, 0.0, "Reciprocal"),
    (2.0, 1.0, 0.0, "Mul"),
])
def test_power_correctly_rounded_forms_are_exact(tmp_path, power, scale, shift, first):
    """Each form is the float64 result rounded once to float32, in both runtimes."""
    g = one_node("Power", POWER_X.shape, {"power": power, "scale": scale, "shift": shift})
    info, outs = run(tmp_path, g, {"x": POWER_X})
    assert op_types(info) == [first]
    assert_exact(outs, "y", POWER_X.astype(np.float64) ** power)


@pytest.mark.parametrize("power, scale, shift, tol", [
    (0.5, 2.0, 1.0, 2e-7),  # measured 8.7e-8 (ort, ov): the rounding of 1 + 2x, halved
    (2.0, 0.5, 0.25, 4e-7),  # measured 1.8e-7 (ort, ov): the rounding of 0.25 + 0.5x, doubled
    (1.5, 1.0, 0.0, 1.5e-7),  # measured 5.9e-8 (ort, ov)
    (3.0, -0.5, 30.0, 6e-7),  # measured 2.7e-7 (ort, ov)
])
def test_power_general(tmp_path, power, scale, shift, tol):
    g = one_node("Power", POWER_X.shape, {"power": power, "scale": scale, "shift": shift})
    _, outs = run(tmp_path, g, {"x": POWER_X})
    assert_close_each(outs, "y", (shift + scale * POWER_X.astype(np.float64)) ** power, tol)


def ort_one_op(op_type: str, x: np.ndarray, **consts) -> np.ndarray:
    """onnxruntime's result of one raw ONNX op on x (with float32 constant inputs)."""
    inits = [onnx.numpy_helper.from_array(np.array(v, np.float32), k) for k, v in consts.items()]
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node(op_type, ["x", *consts], ["y"])], op_type,
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, x.shape)],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, x.shape)], inits)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_why_power_half_is_sqrt():
    """onnxruntime's Pow(x, 0.5) is not correctly rounded; Sqrt is (test_power_...exact)."""
    x = np.random.default_rng(12).uniform(0, 10, (1, 200000)).astype(np.float32)
    ref = np.sqrt(x.astype(np.float64)).astype(np.float32)
    assert (ort_one_op("Pow", x, half=0.5) != ref).sum() > 0  # measured 115 of 200000


def test_why_sigmoid_is_composed():
    """onnxruntime's own Sigmoid is accurate in absolute terms only: small outputs are wrong by
    a large factor, which the composed form (test_transcendental_pointwise) does not do."""
    x = np.linspace(-20, 20, 4001, dtype=np.float32).reshape(1, -1)
    ref = 1 / (1 + np.exp(-x.astype(np.float64)))
    assert np.max(np.abs(ort_one_op("Sigmoid", x) / ref - 1)) > 0.1  # measured 3.85


# ----------------------------------------------------------------------------- shapes, data


def test_reshape_permute_slice_concat_flatten_are_exact(tmp_path):
    """Caffe axes and 0/-1 dims on 3-D and 4-D blobs, each output compared bit for bit."""
    rng = np.random.default_rng(13)
    nodes = [
        Node("r", "Reshape", ["data"], ["r"], {"dims": (0, 3, -1)}),  # (1,12,2,2) -> (1,3,16)
        Node("t", "Permute", ["r"], ["t"], {"order": (0, 2, 1)}),  # (1,16,3)
        Node("p4", "Permute", ["data"], ["p4"], {"order": (0, 2, 3, 1)}),
        Node("s", "Slice", ["data"], ["s0", "s1", "s2"], {"axis": 1, "slice_points": (2, 7)}),
        Node("c", "Concat", ["s2", "s0", "s1"], ["c"], {"axis": 1}),
        Node("s3", "Slice", ["data"], ["h0", "h1"], {"axis": -1, "slice_points": (1,)}),
        Node("c3", "Concat", ["h1", "h0"], ["c3"], {"axis": -1}),
        Node("f", "Flatten", ["data"], ["f"], {"axis": 2, "end_axis": -1}),  # (1,12,4)
        Node("f1", "Flatten", ["p4"], ["f1"], {"axis": 1, "end_axis": -1}),  # (1,48)
    ]
    g = make_graph({"data": (1, 12, 2, 2)}, nodes, ["r", "t", "s0", "s1", "c", "c3", "f", "f1"])
    x = rng.standard_normal((1, 12, 2, 2)).astype(np.float32)
    _, outs = run(tmp_path, g, {"data": x})
    assert_exact(outs, "r", x.reshape(1, 3, 16))
    assert_exact(outs, "t", x.reshape(1, 3, 16).transpose(0, 2, 1))
    assert_exact(outs, "s0", x[:, :2])
    assert_exact(outs, "s1", x[:, 2:7])
    assert_exact(outs, "c", np.concatenate([x[:, 7:], x[:, :2], x[:, 2:7]], 1))
    assert_exact(outs, "c3", np.concatenate([x[..., 1:], x[..., :1]], 3))
    assert_exact(outs, "f", x.reshape(1, 12, 4))
    assert_exact(outs, "f1", x.transpose(0, 2, 3, 1).reshape(1, 48))


@pytest.mark.parametrize("shape, axis", [((1, 5, 3, 4), 1), ((1, 6, 7), 2), ((1, 6, 7), -2)])
def test_softmax_on_an_axis(tmp_path, shape, axis):
    x = np.random.default_rng(14).standard_normal(shape).astype(np.float32) * 4
    g = one_node("Softmax", shape, {"axis": axis})
    _, outs = run(tmp_path, g, {"x": x})
    # x - max rounds once in float32 in any float32 softmax (up to |x - max| * 2^-24 relative
    # after exp); the reference takes that rounded difference, so the rest is measured
    e = np.exp((x - x.max(axis, keepdims=True)).astype(np.float64))
    ref = e / e.sum(axis, keepdims=True)
    assert_close_each(outs, "y", ref, 5e-7)  # measured <= 2.2e-7 (ort), 2.3e-7 (ov)
    other = (axis + 1) % len(shape)
    assert rel_err(np.exp(x) / np.exp(x).sum(other, keepdims=True), ref) > 0.1


@pytest.mark.parametrize("across_spatial", [False, True])
@pytest.mark.parametrize("shared", [False, True])
def test_normalize(tmp_path, across_spatial, shared):
    rng = np.random.default_rng(15)
    c = 6
    scale = np.float32(20.0) if shared else rng.uniform(10, 30, c)
    attrs = {"across_spatial": across_spatial, "channel_shared": shared, "eps": 1e-5}
    g = one_node("Normalize", (1, c, 5, 4), attrs, {"scale": np.atleast_1d(scale)})
    # small values make eps matter
    x = (rng.standard_normal((1, c, 5, 4)) * (0.01 if not across_spatial else 0.001))
    x = x.astype(np.float32)
    x64 = x.astype(np.float64)
    axes = (1, 2, 3) if across_spatial else (1,)
    s64 = np.asarray(scale, np.float32).astype(np.float64).reshape(-1, 1, 1)

    def ref(eps):
        return x64 / np.sqrt((x64 ** 2).sum(axes, keepdims=True) + eps) * s64

    _, outs = run(tmp_path, g, {"x": x})
    assert_close(outs, "y", ref(1e-5), 4e-7)  # measured <= 1.0e-7 (ort), 1.7e-7 (ov)
    assert rel_err(ref(1e-5), ref(1e-10)) > 1e-2  # eps placement/size would show


@pytest.mark.parametrize("scale, shape", [(2, (1, 3, 5, 7)), (3, (1, 2, 19, 4)),
                                          (5, (1, 1, 13, 13))])
def test_upsample_nearest_is_exact(tmp_path, scale, shape):
    x = np.random.default_rng(16).standard_normal(shape).astype(np.float32)
    g = one_node("Upsample", shape, {"scale": scale})
    _, outs = run(tmp_path, g, {"x": x})
    assert_exact(outs, "y", x.repeat(scale, 2).repeat(scale, 3))


# ----------------------------------------------------------------------------- the writer


def test_every_body_op_is_lowered():
    """Every IR op has an ONNX lowering: the body's in `lower`, the families' gluon heads in
    `heads` (which the backend imports before it writes; imported here, so the test does not
    depend on which test imported it first)."""
    from ssdconv.backend.onnx import heads  # noqa: F401  (registers the gluon heads)

    assert set(LOWERINGS) == set(OP_SPECS)
    with pytest.raises(RuntimeError, match="registered twice"):
        lowers("Conv")(lambda node, b: None)


def head_graph() -> Graph:
    """A valid IR graph with the three head ops (and a body op the writer can write)."""
    anchors, classes = 3, 2
    cells = 3 * 3 * anchors
    nodes = [
        Node("prior", "PriorBox", ["feat", "image"], ["prior"],
             priorbox_attrs(16.0, 32.0, (2.0,), 16.0, img=48, flip=False)),
        Node("det", "DetectionOutput", ["loc", "conf", "prior"], ["det"],
             {"num_classes": classes, "share_location": True, "background_label_id": 0,
              "nms_threshold": 0.45, "top_k": 10, "keep_top_k": 10, "confidence_threshold": 0.1,
              "code_type": "CENTER_SIZE"}),
        Node("yolo", "Yolov3DetectionOutput", ["pred"], ["yolo"],
             {"num_class": 1, "num_box": 1, "confidence_threshold": 0.1, "nms_threshold": 0.45,
              "biases": (10.0, 13.0), "mask": (0,), "anchors_scale": (16.0,)}),
        Node("relu", "ReLU", ["feat"], ["relu"]),
    ]
    inputs = {"feat": (1, 4, 3, 3), "image": (1, 3, 48, 48), "loc": (1, 4 * cells),
              "conf": (1, classes * cells), "pred": (1, 6, 3, 3)}
    return make_graph(inputs, nodes, ["det", "yolo", "relu"])


def test_head_ops_are_refused_together_and_nothing_is_written(tmp_path):
    with pytest.raises(UnsupportedError) as e:
        write_onnx(head_graph(), tmp_path, "heads")
    assert [(r.node, r.op) for r in e.value.refusals] == [
        ("prior", "PriorBox"), ("det", "DetectionOutput"), ("yolo", "Yolov3DetectionOutput")]
    assert all("the ONNX target writes the family's own head" in r.reason
               for r in e.value.refusals)
    assert list(tmp_path.iterdir()) == []


def small_net(rng) -> Graph:
    """Conv -> ReLU -> ceil Pool -> class head (Permute, Flatten, Softmax via Reshape)."""
    conv = f32_weights(conv_node(rng, "conv", "data", 3, 8))
    nodes = [
        conv,
        Node("relu", "ReLU", ["conv"], ["relu"]),
        Node("pool", "Pool", ["relu"], ["pool"], pool_attrs(3, 2, 1, "ceil")),
        f32_weights(conv_node(rng, "pred", "pool", 8, 6)),
        Node("perm", "Permute", ["pred"], ["perm"], {"order": (0, 2, 3, 1)}),
        Node("flat", "Flatten", ["perm"], ["flat"], {"axis": 1, "end_axis": -1}),
        Node("rs", "Reshape", ["flat"], ["rs"], {"dims": (0, -1, 3)}),
        Node("sm", "Softmax", ["rs"], ["sm"], {"axis": 2}),
        Node("out", "Identity", ["sm"], ["out"]),
    ]
    return make_graph({"data": (1, 3, 16, 16)}, nodes, ["out", "conv"])


def test_model_is_deterministic_and_keeps_the_irs_names(tmp_path):
    g = small_net(np.random.default_rng(17))
    first = write_onnx(g, tmp_path / "a", "net")
    second = write_onnx(g, tmp_path / "b", "net")
    data = open(first["onnx"], "rb").read()
    assert data == open(second["onnx"], "rb").read()
    assert first["approximations"] == [] and first["opset"] == OPSET
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model, full_check=True)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)]
    assert [o.name for o in model.graph.output] == ["out", "conv"]
    assert [i.name for i in model.graph.input] == ["data"]
    written = {o for n in model.graph.node for o in n.output}
    blobs = {b for n in g.nodes if n.op != "Input" for b in n.outputs}
    assert blobs <= written
    named = {n.name for n in model.graph.node}
    assert {n.name for n in g.nodes if n.op != "Input"} <= named
    declared = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
                for v in (*model.graph.value_info, *model.graph.output)}
    assert all(declared[b] == list(g.shapes[b]) for b in blobs)
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in model.graph.initializer
               if not t.name.endswith("shape"))


def test_small_net_runs_the_same_in_both_runtimes(tmp_path):
    rng = np.random.default_rng(18)
    g = small_net(rng)
    x = rng.standard_normal((1, 3, 16, 16)).astype(np.float32)
    _, outs = run(tmp_path, g, {"data": x})
    conv = conv_ref(x, g.nodes[1])
    assert_close(outs, "conv", conv, 5e-7)  # measured 1.0e-7 (ort), 1.5e-7 (ov)
    pool = maxpool_ref(np.maximum(conv, 0), 3, 2, 1, 9, 9)
    logits = conv_ref(pool, g.nodes[4]).transpose(0, 2, 3, 1).reshape(1, -1, 3)
    e = np.exp(logits - logits.max(2, keepdims=True))
    # measured 5.1e-7 (ort), 1.0e-6 (ov): the conv errors through a second conv and softmax
    assert_close(outs, "out", e / e.sum(2, keepdims=True), 2.5e-6)


def test_graph_inputs_without_input_nodes(tmp_path):
    g = Graph(nodes=[Node("relu", "ReLU", ["x"], ["relu"])], inputs={"x": (1, 2, 3)},
              outputs=["relu"])
    validate(g)
    x = np.arange(-3, 3, dtype=np.float32).reshape(1, 2, 3)
    _, outs = run(tmp_path, g, {"x": x})
    assert_exact(outs, "relu", np.maximum(x, 0))


def test_openvino_runs_in_f32_only_with_the_hint(tmp_path):
    """On a CPU with bf16 (this one) OpenVINO's default precision is bf16; the hint makes every
    layer run in f32, read back from the compiled model itself."""
    g = small_net(np.random.default_rng(19))
    path = write_onnx(g, tmp_path, "net")["onnx"]
    compiled = CORE.compile_model(path, "CPU", F32)
    assert compiled.get_property(ov_hint.inference_precision) == ov.Type.f32
    precisions = {op.get_rt_info()["runtimePrecision"].astype(str)
                  for op in compiled.get_runtime_model().get_ordered_ops()}
    assert precisions and "bf16" not in precisions
    # OpenVINO reads bf16 from CPUID; a oneDNN ISA cap (make test-isa's DNNL_MAX_CPU_ISA=AVX2)
    # leaves it no bf16 kernels, so its default then fails to compile: not a real CPU's default
    capped = os.environ.get("DNNL_MAX_CPU_ISA") or os.environ.get("ONEDNN_MAX_CPU_ISA")
    if "BF16" in CORE.get_property("CPU", "OPTIMIZATION_CAPABILITIES") and not capped:
        default = CORE.compile_model(path, "CPU")
        assert default.get_property(ov_hint.inference_precision) == ov.Type.bf16
