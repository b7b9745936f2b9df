"""The caffe-ssd backend, checked through a real runtime.

Each test builds a small IR graph with seeded weights, writes it with `write_caffe`, loads the
files with OpenCV's Caffe importer and compares the output with a float64 numpy version of the
same layer semantics. Every emitted prototxt is also parsed strictly against our caffe-ssd proto,
which fails on any field caffe-ssd lacks.
"""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest
from google.protobuf import text_format

from ssdconv.backend.caffe import caffe_ssd_pb2 as pb
from ssdconv.backend.caffe.emit import (
    _BUILDERS,
    build_net,
    parse_prototxt_strict,
    producer_layers,
    write_caffe,
)
from ssdconv.backend.caffe.lower import _LOWERINGS, lower_for_caffe
from ssdconv.errors import UnsupportedError
from ssdconv.ir.graph import Graph, Node
from ssdconv.ir.ops import OP_SPECS
from ssdconv.ir.shapes import pool_out
from ssdconv.ir.validate import validate
from ssdconv.ssd.priorbox import layer_priors

# Relative tolerance for float32 runtime vs float64 reference, on layers that round.
RTOL = 1e-5


def node(name: str, op: str, inputs: list[str], outputs: list[str] | None = None,
         weights: dict | None = None, **attrs) -> Node:
    return Node(name, op, inputs, outputs or [name], attrs, weights or {}, source=f"mx_{name}")


def graph(shape: tuple[int, ...], nodes: list[Node], outputs: list[str],
          name: str = "data") -> Graph:
    g = Graph(nodes=[node(name, "Input", [], shape=shape), *nodes], inputs={name: shape},
              outputs=outputs)
    validate(g)
    return g


def run(g: Graph, tmp_path, x: np.ndarray, blobs: list[str], relu6: str = "compose"):
    """Write `g`, strict-parse it, run it in OpenCV; returns the blobs and write_caffe's dict."""
    written = write_caffe(g, tmp_path, "net", relu6=relu6)
    parsed = parse_prototxt_strict(written["prototxt"])
    net = cv2.dnn.readNetFromCaffe(str(written["prototxt"]), str(written["caffemodel"]))
    if hasattr(net, "enableWinograd"):
        net.enableWinograd(False)
    net.setInput(x.astype(np.float32))
    where = [producer_layers(parsed)[b] for b in blobs]
    layers = sorted({layer for layer, _ in where})
    tops = dict(zip(layers, net.forwardAndRetrieve(layers)))
    return [np.asarray(tops[layer][i]) for layer, i in where], written


def rel_err(out: np.ndarray, ref: np.ndarray) -> float:
    assert out.shape == ref.shape, (out.shape, ref.shape)
    return float(np.abs(out.astype(np.float64) - ref).max() / np.abs(ref).max())


def conv_ref(x, w, b, stride, pad, dilation, group):
    x = x.astype(np.float64)
    w = w.astype(np.float64)
    _, _, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
    oh = (h + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    ow = (wd + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out = np.zeros((1, o, oh, ow))
    og = o // group
    for g in range(group):
        xs, ws = xp[:, g * cg:(g + 1) * cg], w[g * og:(g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                           j * dw:j * dw + sw * (ow - 1) + 1:sw]
                out[:, g * og:(g + 1) * og] += np.einsum("ncij,oc->noij", patch, ws[:, :, i, j])
    return out + (0 if b is None else b.astype(np.float64).reshape(1, -1, 1, 1))


def pool_ref(x, method, k, s, p):
    """Floor-rounded pooling; average counts the zero padding (count_include_pad)."""
    x = x.astype(np.float64)
    fill = -np.inf if method == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=fill)
    oh = (x.shape[2] + 2 * p - k) // s + 1
    ow = (x.shape[3] + 2 * p - k) // s + 1
    win = np.stack([xp[:, :, i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s]
                    for i in range(k) for j in range(k)])
    return win.max(0) if method == "max" else win.sum(0) / (k * k)


RS = np.random.RandomState


# --- conv, batchnorm, normalize ---------------------------------------------------------------

@pytest.mark.parametrize(
    "cin,cout,kernel,stride,pad,dilation,group,bias",
    [
        (4, 6, (3, 3), (2, 1), (1, 2), (2, 1), 2, True),  # grouped, dilated, uneven pad/stride
        (6, 6, (3, 3), (1, 1), (1, 1), (1, 1), 6, True),  # depthwise
        (4, 5, (1, 3), (1, 2), (0, 1), (1, 1), 1, False),  # no bias, non-square kernel
    ],
)
def test_conv_matches_float64(tmp_path, cin, cout, kernel, stride, pad, dilation, group, bias):
    rs = RS(0)
    w = rs.randn(cout, cin // group, *kernel).astype(np.float32)
    b = rs.randn(cout).astype(np.float32) if bias else None
    conv = node("conv", "Conv", ["data"], weights={"weight": w, **({"bias": b} if bias else {})},
                num_output=cout, kernel=kernel, stride=stride, pad=pad, dilation=dilation,
                group=group, bias=bias)
    g = graph((1, cin, 11, 13), [conv], ["conv"])
    x = rs.randn(1, cin, 11, 13).astype(np.float32)
    (out,), _ = run(g, tmp_path, x, ["conv"])
    ref = conv_ref(x, w, b, stride, pad, dilation, group)
    assert out.shape == g.shapes["conv"]
    assert rel_err(out, ref) < RTOL


def test_batchnorm_eps_is_written(tmp_path):
    rs = RS(1)
    c = 5
    weights = {
        "mean": rs.randn(c).astype(np.float32),
        "var": rs.uniform(1e-3, 1e-2, c).astype(np.float32),  # small: eps matters
        "gamma": rs.uniform(0.5, 2, c).astype(np.float32),
        "beta": rs.randn(c).astype(np.float32),
    }
    bn = node("bn", "BatchNorm", ["data"], weights=weights, eps=1e-3)
    g = graph((1, c, 6, 7), [bn], ["bn"])
    x = rs.randn(1, c, 6, 7).astype(np.float32)
    (out,), written = run(g, tmp_path, x, ["bn"])

    def ref(eps):
        w = {k: v.astype(np.float64).reshape(1, -1, 1, 1) for k, v in weights.items()}
        return (x - w["mean"]) / np.sqrt(w["var"] + eps) * w["gamma"] + w["beta"]

    assert rel_err(out, ref(1e-3)) < RTOL
    assert rel_err(out, ref(1e-5)) > 100 * RTOL  # caffe's default eps would be caught

    model = pb.NetParameter()
    model.ParseFromString(written["caffemodel"].read_bytes())
    shapes = {layer.type: [tuple(b.shape.dim) for b in layer.blobs] for layer in model.layer}
    assert shapes["BatchNorm"] == [(c,), (c,), (1,)]  # caffe-ssd checks blob shapes on load
    assert shapes["Scale"] == [(c,), (c,)]
    bn_layer = next(layer for layer in model.layer if layer.type == "BatchNorm")
    assert list(bn_layer.blobs[2].data) == [1.0]


@pytest.mark.parametrize("shared", [False, True])
def test_normalize(tmp_path, shared):
    rs = RS(2)
    c = 8
    scale = np.full(1, 20.0, np.float32) if shared else rs.uniform(5, 20, c).astype(np.float32)
    norm = node("norm", "Normalize", ["data"], weights={"scale": scale},
                across_spatial=False, channel_shared=shared, eps=1e-5)
    g = graph((1, c, 5, 6), [norm], ["norm"])
    x = (rs.randn(1, c, 5, 6) * 0.01).astype(np.float32)  # small: eps 1e-5 vs 1e-10 shows
    (out,), written = run(g, tmp_path, x, ["norm"])
    x64 = x.astype(np.float64)

    def ref(eps):
        s64 = scale.astype(np.float64).reshape(1, -1, 1, 1)
        return x64 / np.sqrt((x64**2).sum(1, keepdims=True) + eps) * s64

    assert rel_err(out, ref(1e-5)) < RTOL
    assert rel_err(out, ref(1e-10)) > 100 * RTOL  # caffe's default eps would be caught
    prototxt = parse_prototxt_strict(written["prototxt"])
    assert not prototxt.layer[1].norm_param.channel_shared  # shared lowers to per-channel


def _misc_cases(c: int, rs):
    """(IR nodes reading "data", output blob, float64 reference of x) for the simpler ops."""
    scale, bias = rs.uniform(0.5, 2, c), rs.randn(c)
    s4, b4 = scale.reshape(1, -1, 1, 1), bias.reshape(1, -1, 1, 1)
    relu = node("relu", "ReLU", ["data"])
    return {
        "scale_bias": ([node("sc", "Scale", ["data"], weights={"scale": scale, "bias": bias},
                                  bias=True)],
                       "sc", lambda x: x * s4 + b4),
        "scale": ([node("sc", "Scale", ["data"], weights={"scale": scale}, bias=False)],
                  "sc", lambda x: x * s4),
        "eltwise_prod": ([relu, node("e", "Eltwise", ["data", "relu"], operation="prod",
                                     coeffs=())], "e", lambda x: x * np.maximum(x, 0)),
        "eltwise_max": ([relu, node("e", "Eltwise", ["data", "relu"], operation="max",
                                    coeffs=())], "e", lambda x: np.maximum(x, 0)),
        "eltwise_coeffs": ([relu, node("e", "Eltwise", ["data", "relu"], operation="sum",
                                       coeffs=(0.5, -2.0))], "e",
                           lambda x: 0.5 * x - 2 * np.maximum(x, 0)),
        "power": ([node("pw", "Power", ["data"], power=2.0, scale=0.5, shift=1.0)], "pw",
                  lambda x: (1 + 0.5 * x) ** 2),
        "global_avg": ([node("gp", "Pool", ["data"], method="avg", kernel=(1, 1), stride=(1, 1),
                             pad=(0, 0), global_pool=True, round="floor",
                             count_include_pad=True)], "gp",
                       lambda x: x.mean((2, 3), keepdims=True)),
        "slice": ([node("sl", "Slice", ["data"], ["a", "b", "c"], axis=1, slice_points=(1, 3))],
                  "b", lambda x: x[:, 1:3]),
    }


@pytest.mark.parametrize("case", ["scale_bias", "scale", "eltwise_prod", "eltwise_max",
                                  "eltwise_coeffs", "power", "global_avg", "slice"])
def test_simple_ops(tmp_path, case):
    rs = RS(14)
    c = 4
    nodes, out_blob, ref = _misc_cases(c, rs)[case]
    g = graph((1, c, 5, 6), nodes, [out_blob])
    x = rs.randn(1, c, 5, 6).astype(np.float32)
    (out,), _ = run(g, tmp_path, x, [out_blob])
    assert out.shape == g.shapes[out_blob]
    assert rel_err(out, ref(x.astype(np.float64))) < RTOL


# --- clip / ReLU6 -----------------------------------------------------------------------------

CLIP_INPUT = np.array(
    [-1e6, -7.5, -6.0, -1.0, -1e-30, -0.0, 0.0, 1e-30, 1e-7, 0.5, 3.0, 5.999999, 6.0,
     6.0000005, 6.5, 7.0, 12.25, 100.0, 1e6, 16777215.0] + list(RS(3).randn(28) * 8),
    dtype=np.float32,
).reshape(1, 2, 6, 4)


def clip_graph(lo=0.0, hi=6.0) -> Graph:
    return graph(CLIP_INPUT.shape, [node("relu6", "Clip", ["data"], min=lo, max=hi)], ["relu6"])


def test_clip_composed_is_bit_exact(tmp_path):
    g = clip_graph()
    lowered = lower_for_caffe(g)
    assert [n.op for n in lowered.nodes] == ["Input", "ReLU", "Power", "ReLU", "Eltwise"]
    assert all(n.source == "mx_relu6" for n in lowered.nodes[1:])
    power = lowered.nodes[2]
    assert power.inputs == ["data"] and power.outputs != ["data"]  # never in place
    (out,), written = run(g, tmp_path, CLIP_INPUT, ["relu6"])
    assert written["choices"] == []
    assert np.array_equal(out, np.clip(CLIP_INPUT, 0, 6))
    assert out.dtype == np.float32


def test_clip_relu6_layer_option(tmp_path):
    (out,), written = run(clip_graph(), tmp_path, CLIP_INPUT, ["relu6"], relu6="relu6_layer")
    assert np.array_equal(out, np.clip(CLIP_INPUT, 0, 6))
    types = [layer.type for layer in parse_prototxt_strict(written["prototxt"]).layer]
    assert types == ["Input", "ReLU6"]
    assert len(written["choices"]) == 1 and "ReLU6" in written["choices"][0]


def test_clip_other_max_composes_even_with_relu6_layer(tmp_path):
    x = CLIP_INPUT / 2
    (out,), written = run(clip_graph(hi=4.0), tmp_path, x, ["relu6"], relu6="relu6_layer")
    assert np.array_equal(out, np.clip(x, 0, 4))
    assert any("not a ReLU6" in c for c in written["choices"])


def test_clip_with_nonzero_min_is_composed_from_maxima(tmp_path):
    """Clip(lo, hi) with lo != 0 (hard-sigmoid's clip(., 0, 1) is the other form): Power with
    scale 0 makes each bound, Eltwise MAX and negations do the rest, exactly
    (test_plain_ops runs it in every runtime)."""
    net = parse_prototxt_strict(write_caffe(clip_graph(lo=-1.0, hi=1.0), tmp_path,
                                            "net")["prototxt"])
    assert [layer.type for layer in net.layer[1:]] == [
        "Power", "Eltwise", "Power", "Power", "Eltwise", "Power"]


# --- pooling ------------------------------------------------------------------------------------

def pool_node(method, k=3, s=2, p=1, round_="floor", global_pool=False):
    return node("pool", "Pool", ["data"], method=method, kernel=(k, k), stride=(s, s),
                pad=(p, p), global_pool=global_pool, round=round_, count_include_pad=True)


@pytest.mark.parametrize("method", ["max", "avg"])
def test_floor_pooling_is_sliced_exactly(tmp_path, method):
    assert pool_out(16, 3, 2, 1, "ceil") == 9 and pool_out(16, 3, 2, 1, "floor") == 8
    g = graph((1, 3, 16, 16), [pool_node(method)], ["pool"])
    lowered = lower_for_caffe(g)
    assert [n.op for n in lowered.nodes] == ["Input", "Pool", "Slice", "Slice"]
    pool = lowered.nodes[1]
    assert pool.attrs["pad"] == (1, 1) and lowered.shapes[pool.outputs[0]] == (1, 3, 9, 9)
    x = RS(4).randn(1, 3, 16, 16).astype(np.float32)
    (out, ceiled), _ = run(g, tmp_path, x, ["pool", pool.outputs[0]])
    assert ceiled.shape == (1, 3, 9, 9)  # what caffe alone gives
    ref = pool_ref(x, method, 3, 2, 1)
    assert out.shape == (1, 3, 8, 8)
    if method == "max":
        assert np.array_equal(out, ref.astype(np.float32))
    else:
        assert rel_err(out, ref) < RTOL


def test_floor_pooling_slices_only_the_axis_that_differs(tmp_path):
    g = graph((1, 2, 16, 15), [pool_node("max")], ["pool"])
    lowered = lower_for_caffe(g)
    slices = [n for n in lowered.nodes if n.op == "Slice"]
    assert len(slices) == 1 and slices[0].attrs["axis"] == 2
    x = RS(5).randn(1, 2, 16, 15).astype(np.float32)
    (out,), _ = run(g, tmp_path, x, ["pool"])
    assert np.array_equal(out, pool_ref(x, "max", 3, 2, 1).astype(np.float32))


def test_floor_pooling_with_equal_shapes_is_plain(tmp_path):
    g = graph((1, 2, 8, 8), [pool_node("max", k=2, s=2, p=0)], ["pool"])
    assert [n.op for n in lower_for_caffe(g).nodes] == ["Input", "Pool"]
    x = RS(6).randn(1, 2, 8, 8).astype(np.float32)
    (out,), _ = run(g, tmp_path, x, ["pool"])
    assert np.array_equal(out, pool_ref(x, "max", 2, 2, 0).astype(np.float32))


# --- SSD head -----------------------------------------------------------------------------------

def predictor(name, src, cout, cin, rs):
    w = (rs.randn(cout, cin, 3, 3) * 0.3).astype(np.float32)
    b = (rs.randn(cout) * 0.1).astype(np.float32)
    return node(name, "Conv", [src], weights={"weight": w, "bias": b}, num_output=cout,
                kernel=(3, 3), stride=(1, 1), pad=(1, 1), dilation=(1, 1), group=1, bias=True)


def test_permute_flatten_concat_reshape_softmax_head(tmp_path):
    rs = RS(7)
    anchors, classes = 2, 3
    c = anchors * classes
    nodes = [
        predictor("cls0", "data", c, 3, rs),
        node("down", "Pool", ["data"], method="max", kernel=(2, 2), stride=(2, 2), pad=(0, 0),
             global_pool=False, round="floor", count_include_pad=True),
        predictor("cls1", "down", c, 3, rs),
    ]
    for i in (0, 1):
        nodes += [
            node(f"perm{i}", "Permute", [f"cls{i}"], order=(0, 2, 3, 1)),
            node(f"flat{i}", "Flatten", [f"perm{i}"], axis=1, end_axis=-1),
        ]
    nodes += [
        node("cat", "Concat", ["flat0", "flat1"], axis=1),
        node("resh", "Reshape", ["cat"], dims=(0, -1, classes)),
        node("soft", "Softmax", ["resh"], axis=2),
        node("conf", "Flatten", ["soft"], axis=1, end_axis=-1),
    ]
    g = graph((1, 3, 8, 8), nodes, ["conf"])
    x = RS(8).randn(1, 3, 8, 8).astype(np.float32)
    (out, cat), _ = run(g, tmp_path, x, ["conf", "cat"])

    convs = {n.name: n for n in nodes if n.op == "Conv"}
    x64 = x.astype(np.float64)
    feats = [x64, pool_ref(x, "max", 2, 2, 0)]
    flat = [conv_ref(f, convs[f"cls{i}"].weights["weight"], convs[f"cls{i}"].weights["bias"],
                     (1, 1), (1, 1), (1, 1), 1).transpose(0, 2, 3, 1).reshape(1, -1)
            for i, f in enumerate(feats)]
    logits = np.concatenate(flat, axis=1)
    shaped = logits.reshape(1, -1, classes)
    e = np.exp(shaped - shaped.max(2, keepdims=True))
    ref = (e / e.sum(2, keepdims=True)).reshape(1, -1)
    assert cat.shape == logits.shape == (1, (64 + 16) * c)
    assert rel_err(cat, logits) < RTOL
    assert rel_err(out, ref) < RTOL


def priorbox_node(min_size, max_size, k, ratios=(2.0, 0.5), step=16.0, bottom="feat"):
    return node("priors", "PriorBox", [bottom, "data"], min_size=min_size, max_size=max_size,
                aspect_ratios=ratios, flip=False, clip=False, variance=(0.1, 0.1, 0.2, 0.2),
                step_h=step, step_w=step, offset=0.5, img_h=0, img_w=0, int_scale=k)


def feat_node(k):
    return node("feat", "Pool", ["data"], method="max", kernel=(k, k), stride=(k, k),
                pad=(0, 0), global_pool=False, round="floor", count_include_pad=True)


def test_priorbox_int_scale(tmp_path):
    ih, iw = 64, 96
    g = graph((1, 3, ih, iw), [feat_node(16), priorbox_node(51.2, 102.4, 25)], ["priors"])
    lowered = lower_for_caffe(g)
    pb_node, power = lowered.nodes[-2:]
    assert (pb_node.op, power.op) == ("PriorBox", "Power")
    assert power.outputs == ["priors"] and power.attrs["scale"] == pytest.approx(1 / 25)
    assert (pb_node.attrs["min_size"], pb_node.attrs["max_size"]) == (1280.0, 2560.0)
    assert pb_node.attrs["step_h"] == 400.0
    assert pb_node.attrs["variance"] == pytest.approx((2.5, 2.5, 5.0, 5.0))

    x = RS(9).rand(1, 3, ih, iw).astype(np.float32)
    (out,), written = run(g, tmp_path, x, ["priors"])
    ref = layer_priors(g.nodes[-1].attrs, 4, 6, ih, iw)
    assert out.shape == ref.shape == (1, 2, 4 * 6 * 4 * 4)
    assert np.abs(out - ref).max() < 1e-6

    layer = next(la for la in parse_prototxt_strict(written["prototxt"]).layer
                 if la.type == "PriorBox")
    p = layer.prior_box_param
    assert not p.HasField("img_size") and not p.HasField("img_h") and not p.HasField("img_w")
    for field in ("flip", "clip", "step", "offset"):  # OpenCV's defaults differ: all explicit
        assert p.HasField(field)
    assert list(layer.bottom) == ["feat", "data"]


def test_priorbox_plain_and_step_hw(tmp_path):
    ih, iw = 64, 96
    prior = priorbox_node(20.0, 40.0, 1, ratios=(2.0,))
    prior.attrs.update(step_h=16.0, step_w=15.0)
    g = graph((1, 3, ih, iw), [feat_node(16), prior], ["priors"])
    assert [n.op for n in lower_for_caffe(g).nodes][-1] == "PriorBox"
    x = RS(10).rand(1, 3, ih, iw).astype(np.float32)
    (out,), written = run(g, tmp_path, x, ["priors"])
    ref = layer_priors(prior.attrs, 4, 6, ih, iw)
    assert np.abs(out - ref).max() < 1e-6
    p = parse_prototxt_strict(written["prototxt"]).layer[-1].prior_box_param
    assert not p.HasField("step") and (p.step_h, p.step_w) == (16.0, 15.0)


def test_priorbox_non_integral_size_is_refused():
    g = graph((1, 3, 64, 96), [feat_node(16), priorbox_node(51.21, 102.4, 25)], ["priors"])
    with pytest.raises(UnsupportedError, match=r"priors \(PriorBox\): min_size 1280.25"):
        lower_for_caffe(g)


def test_detection_output_runs(tmp_path):
    rs = RS(11)
    classes, keep = 3, 20  # classes include the background
    anchors = 3  # min, max, ratio 2
    nodes = [
        feat_node(8),
        predictor("loc", "feat", anchors * 4, 3, rs),
        predictor("cls", "feat", anchors * classes, 3, rs),
        node("locp", "Permute", ["loc"], order=(0, 2, 3, 1)),
        node("locf", "Flatten", ["locp"], axis=1, end_axis=-1),
        node("clsp", "Permute", ["cls"], order=(0, 2, 3, 1)),
        node("clsr", "Reshape", ["clsp"], dims=(0, -1, classes)),
        node("clss", "Softmax", ["clsr"], axis=2),
        node("clsf", "Flatten", ["clss"], axis=1, end_axis=-1),
        priorbox_node(8.0, 16.0, 1, ratios=(2.0,), step=8.0),
        node("det", "DetectionOutput", ["locf", "clsf", "priors"], num_classes=classes,
             share_location=True, background_label_id=0, nms_threshold=0.45, top_k=400,
             keep_top_k=keep, confidence_threshold=0.01, code_type="CENTER_SIZE"),
    ]
    g = graph((1, 3, 32, 32), nodes, ["det"])
    x = RS(12).rand(1, 3, 32, 32).astype(np.float32)
    (det, loc, conf, priors), written = run(g, tmp_path, x, ["det", "locf", "clsf", "priors"])
    assert det.shape == (1, 1, keep, 7) == g.shapes["det"]
    rows = det[0, 0][det[0, 0, :, 2] > 0]
    assert len(rows) > 0
    assert set(rows[:, 1]) <= {1.0, 2.0} and np.all(rows[:, 0] == 0)
    # Every detection is one prior decoded (CENTER_SIZE, variances from the prior blob) with
    # that prior's softmaxed score for its label.
    p = priors[0, 0].reshape(-1, 4).astype(np.float64)
    v = priors[0, 1].reshape(-1, 4).astype(np.float64)
    d = loc.reshape(-1, 4).astype(np.float64)
    pw, ph = p[:, 2] - p[:, 0], p[:, 3] - p[:, 1]
    pcx, pcy = (p[:, 0] + p[:, 2]) / 2, (p[:, 1] + p[:, 3]) / 2
    cx, cy = v[:, 0] * d[:, 0] * pw + pcx, v[:, 1] * d[:, 1] * ph + pcy
    w, h = np.exp(v[:, 2] * d[:, 2]) * pw, np.exp(v[:, 3] * d[:, 3]) * ph
    decoded = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    scores = conf.reshape(-1, classes)
    for row in rows:
        i = np.abs(decoded - row[3:]).max(1).argmin()
        assert np.abs(decoded[i] - row[3:]).max() < 1e-5
        assert abs(scores[i, int(row[1])] - row[2]) < 1e-5
    param = parse_prototxt_strict(written["prototxt"]).layer[-1].detection_output_param
    for field in ("num_classes", "share_location", "background_label_id", "code_type",
                  "keep_top_k", "confidence_threshold"):
        assert param.HasField(field)
    assert param.nms_param.HasField("nms_threshold") and param.nms_param.HasField("top_k")


# --- structure and strictness -------------------------------------------------------------------

def test_every_ir_op_is_built_or_lowered():
    assert set(OP_SPECS) <= set(_BUILDERS) | set(_LOWERINGS)


def test_identity_output_is_an_exact_copy(tmp_path):
    if "Identity" not in OP_SPECS:
        pytest.skip("no Identity op in this IR")
    g = graph(CLIP_INPUT.shape, [node("copy", "Identity", ["data"])], ["copy"])
    (out,), _ = run(g, tmp_path, CLIP_INPUT, ["copy"])
    assert np.array_equal(out, CLIP_INPUT)


def test_lowering_leaves_its_input_untouched():
    g = graph((1, 3, 16, 16), [pool_node("max"), node("r6", "Clip", ["pool"], min=0.0, max=6.0)],
              ["r6"])
    before = copy.deepcopy(g)
    lower_for_caffe(g)
    assert [(n.name, n.op, n.inputs, n.outputs, n.attrs) for n in g.nodes] == [
        (n.name, n.op, n.inputs, n.outputs, n.attrs) for n in before.nodes]


def test_build_net_blob_shapes_and_no_weights_in_prototxt(tmp_path):
    rs = RS(13)
    w = rs.randn(4, 1, 3, 3).astype(np.float32)
    conv = node("conv", "Conv", ["data"], weights={"weight": w, "bias": np.zeros(4, np.float32)},
                num_output=4, kernel=(3, 3), stride=(1, 1), pad=(1, 1), dilation=(1, 1),
                group=2, bias=True)
    g = graph((1, 2, 5, 5), [conv], ["conv"])
    net, choices = build_net(g, "tiny")
    assert choices == [] and net.name == "tiny"
    assert [tuple(b.shape.dim) for b in net.layer[1].blobs] == [(4, 1, 3, 3), (4,)]
    assert np.array_equal(np.array(net.layer[1].blobs[0].data, np.float32), w.ravel())
    written = write_caffe(g, tmp_path, "tiny")
    assert "blobs" not in written["prototxt"].read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.caffemodel", "tiny.prototxt"]


def test_graph_input_without_input_node_gets_an_input_layer(tmp_path):
    g = Graph(nodes=[node("relu", "ReLU", ["data"])], inputs={"data": (1, 2, 3, 3)},
              outputs=["relu"])
    validate(g)
    x = RS(15).randn(1, 2, 3, 3).astype(np.float32)
    (out,), written = run(g, tmp_path, x, ["relu"])
    first = parse_prototxt_strict(written["prototxt"]).layer[0]
    assert (first.type, list(first.top)) == ("Input", ["data"])
    assert list(first.input_param.shape[0].dim) == [1, 2, 3, 3]
    assert np.array_equal(out, np.maximum(x, 0))


# caffe-ssd's numbers (weiliu89/caffe ssd 4817bf8b); OpenCV's proto numbers the SSD ones 147-150.
CAFFE_SSD_NUMBERS = {
    "NetParameter": {"name": 1, "layer": 100},
    "LayerParameter": {
        "name": 1, "type": 2, "bottom": 3, "top": 4, "blobs": 7, "concat_param": 104,
        "convolution_param": 106, "eltwise_param": 110, "pooling_param": 121,
        "power_param": 122, "relu_param": 123, "softmax_param": 125, "slice_param": 126,
        "reshape_param": 133, "flatten_param": 135, "batch_norm_param": 139,
        "scale_param": 142, "input_param": 143, "permute_param": 202, "prior_box_param": 203,
        "detection_output_param": 204, "norm_param": 206,
    },
    "BlobProto": {"shape": 7, "data": 5},
    "PriorBoxParameter": {"min_size": 1, "max_size": 2, "aspect_ratio": 3, "flip": 4,
                          "clip": 5, "variance": 6, "step": 10, "step_h": 11, "step_w": 12,
                          "offset": 13},
    "DetectionOutputParameter": {"num_classes": 1, "share_location": 2,
                                 "background_label_id": 3, "nms_param": 4, "code_type": 6,
                                 "keep_top_k": 7, "confidence_threshold": 9},
    "NormalizeParameter": {"across_spatial": 1, "channel_shared": 3, "eps": 4},
    "SliceParameter": {"slice_dim": 1, "slice_point": 2, "axis": 3},
    "PowerParameter": {"power": 1, "scale": 2, "shift": 3},
}


def test_proto_field_numbers_are_caffe_ssds():
    for message, fields in CAFFE_SSD_NUMBERS.items():
        desc = getattr(pb, message).DESCRIPTOR
        assert {f: desc.fields_by_name[f].number for f in fields} == fields, message
    assert "ceil_mode" not in pb.PoolingParameter.DESCRIPTOR.fields_by_name
    assert pb.PriorBoxParameter.DESCRIPTOR.fields_by_name["flip"].default_value is True
    assert pb.PriorBoxParameter.DESCRIPTOR.fields_by_name["clip"].default_value is False


def test_strict_parse_rejects_opencv_only_ceil_mode(tmp_path):
    text = ('layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" '
            'pooling_param { pool: MAX kernel_size: 3 stride: 2 ceil_mode: false } }\n')
    path = tmp_path / "opencv_only.prototxt"
    path.write_text(text)
    with pytest.raises(text_format.ParseError, match="ceil_mode"):
        parse_prototxt_strict(path)
    path.write_text(text.replace(" ceil_mode: false", ""))
    assert parse_prototxt_strict(path).layer[0].pooling_param.stride == 2
