"""The ncnn emitter against the real ncnn runtime and float64 numpy references.

Each test builds a small IR graph by hand (seeded weights), writes it with `write_ncnn`, loads it
with `ncnn.Net` and compares extracted blobs with a numpy float64 reference. Nets run with ncnn's
fp16 storage/arithmetic off, so the tolerances measure the converter, not ncnn's precision
options (one test measures the defaults separately). Tolerances are measured figures with a
margin, so a wrong axis, pad or param id fails.
"""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import ncnn
import numpy as np
import pytest

from ssdconv.backend.ncnn.emit import write_ncnn
from ssdconv.backend.ncnn.writer import _ncnn_parse_float, format_float
from ssdconv.errors import UnsupportedError
from ssdconv.ir.graph import Graph, Node
from ssdconv.ir.validate import validate
from ssdconv.ssd.priorbox import layer_priors

# ----------------------------------------------------------------------------- helpers


def pair(v):
    return tuple(v) if isinstance(v, tuple) else (v, v)


def conv_attrs(cout, k=3, s=1, p=1, d=1, group=1, bias=True):
    return {"num_output": cout, "kernel": pair(k), "stride": pair(s), "pad": pair(p),
            "dilation": pair(d), "group": group, "bias": bias}


def conv_node(rng, name, src, cin, cout, **kw):
    attrs = conv_attrs(cout, **kw)
    kh, kw_ = attrs["kernel"]
    weights = {"weight": rng.standard_normal((cout, cin // attrs["group"], kh, kw_)) * 0.3}
    if attrs["bias"]:
        weights["bias"] = rng.standard_normal(cout)
    return Node(name, "Conv", [src], [name], attrs, weights)


def pool_attrs(k, s, p, rounding="floor", method="max", include_pad=True, global_pool=False):
    return {"method": method, "kernel": (k, k), "stride": (s, s), "pad": (p, p),
            "global_pool": global_pool, "round": rounding, "count_include_pad": include_pad}


def make_graph(inputs: dict, nodes: list, outputs: list) -> Graph:
    heads = [Node(b, "Input", [], [b], {"shape": tuple(s)}) for b, s in inputs.items()]
    g = Graph(nodes=heads + nodes, inputs={b: tuple(s) for b, s in inputs.items()},
              outputs=list(outputs))
    validate(g)
    return g


def load_net(info: dict, exact: bool = True) -> ncnn.Net:
    net = ncnn.Net()
    if exact:
        net.opt.use_fp16_storage = False
        net.opt.use_fp16_packed = False
        net.opt.use_fp16_arithmetic = False
        net.opt.use_bf16_storage = False
    assert net.load_param(info["param"]) == 0
    assert net.load_model(info["bin"]) == 0
    return net


def to_mat(array) -> ncnn.Mat:
    """A Mat owning its data (ncnn.Mat(ndarray) only borrows the array's memory), from a Caffe
    array with batch 1: (1,C,H,W) -> c,h,w; (1,A,B) -> h,w; (1,N) -> w."""
    data = np.asarray(array[0], dtype=np.float32)
    mat = ncnn.Mat(*reversed(data.shape))
    np.array(mat, copy=False)[...] = data
    return mat


def run(tmp_path: Path, graph: Graph, feeds: dict, blobs: list, fp16=False, exact=True,
        name="net"):
    """Write, load, run; returns ({blob: array in Caffe shape}, info). DetectionOutput blobs
    come back in ncnn's own (n, 6) layout."""
    info = write_ncnn(graph, tmp_path, name, fp16=fp16)
    net = load_net(info, exact)
    ex = net.create_extractor()
    ex.set_light_mode(False)
    for b, v in feeds.items():
        assert ex.input(b, to_mat(v)) == 0
    out = {}
    for b in blobs:
        rc, mat = ex.extract(b)
        assert rc == 0, f"extract {b} returned {rc}"
        arr = np.array(mat).copy()
        shape = graph.shapes[b]
        out[b] = arr.reshape(shape) if arr.size == math.prod(shape) else arr
    del ex, net
    return out, info


def err(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def conv_ref(x, node):
    """Caffe convolution in float64 on x (1,C,H,W)."""
    a, w = node.attrs, node.weights["weight"]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), g = (a["kernel"], a["stride"], a["pad"],
                                                 a["dilation"], a["group"])
    x = np.pad(x[0].astype(np.float64), ((0, 0), (ph, ph), (pw, pw)))
    c, h, wd = x.shape
    oh, ow = (h - dh * (kh - 1) - 1) // sh + 1, (wd - dw * (kw - 1) - 1) // sw + 1
    cout = w.shape[0]
    out = np.zeros((cout, oh, ow))
    og, cg = cout // g, c // g
    for gi, i, j in itertools.product(range(g), range(kh), range(kw)):
        patch = x[gi * cg:(gi + 1) * cg, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                  j * dw:j * dw + sw * (ow - 1) + 1:sw]
        out[gi * og:(gi + 1) * og] += np.einsum("oc,chw->ohw", w[gi * og:(gi + 1) * og, :, i, j],
                                                patch)
    if a["bias"]:
        out += node.weights["bias"][:, None, None]
    return out[None]


def maxpool_ref(x, k, s, p, oh, ow):
    """Max over each window of a -inf padded input (Caffe clips windows to the image)."""
    big = (max(oh, ow) + 2) * s + k
    xp = np.pad(x[0], ((0, 0), (p, big), (p, big)), constant_values=-np.inf)
    out = np.empty((x.shape[1], oh, ow))
    for i, j in itertools.product(range(oh), range(ow)):
        out[:, i, j] = xp[:, i * s:i * s + k, j * s:j * s + k].max(axis=(1, 2))
    return out[None]


# ----------------------------------------------------------------------------- writer


def test_float_text_is_read_back_exactly_by_the_ncnn_parser_model():
    rng = np.random.default_rng(0)
    values = [1e-5, 1e-3, -233.0, 51.2, 102.4, 6.0, 0.1, 363.52, 1.0 / 3, 3.4e38, -1.17e-38,
              4294967296.0, 123456789.0]
    values += list(rng.standard_normal(2000) * 10.0 ** rng.integers(-30, 30, 2000))
    for v in values:
        text = format_float(v)
        assert len(text) <= 15 and ("." in text or "e" in text), text
        assert _ncnn_parse_float(text) == float(np.float32(v)), (v, text)


def test_float_params_survive_the_real_ncnn_parser(tmp_path):
    """Power(shift=v, scale=0) outputs v: every written float must come back bit-exact."""
    rng = np.random.default_rng(1)
    values = [1e-5, -233.0, 51.2, 6.0, 0.45, 1.0 / 3, -7.5e-9, 12345.678, 3.0e30]
    values += list(rng.standard_normal(30) * 10.0 ** rng.integers(-12, 12, 30))
    nodes = [Node(f"p{i}", "Power", ["x"], [f"p{i}"], {"power": 1.0, "scale": 0.0, "shift": v})
             for i, v in enumerate(values)]
    g = make_graph({"x": (1, 4)}, nodes, [n.name for n in nodes])
    out, _ = run(tmp_path, g, {"x": np.ones((1, 4))}, [n.name for n in nodes])
    for i, v in enumerate(values):
        np.testing.assert_array_equal(out[f"p{i}"][0], np.float32(v))


# ----------------------------------------------------------------------------- layers


@pytest.mark.parametrize(
    "kw, cin, cout",
    [
        ({"k": 3, "s": 1, "p": 1}, 3, 8),  # plain conv with pad
        ({"k": 3, "s": 2, "p": 2, "d": 2, "group": 6}, 6, 6),  # depthwise, dilated, strided
        # grouped, non-square, no bias
        ({"k": (3, 1), "s": (1, 2), "p": (1, 0), "group": 2, "bias": False}, 4, 6),
        ({"k": 3, "s": 1, "p": 6, "d": 6}, 4, 5),  # VGG fc6 style dilation 6
    ],
)
def test_conv_matches_reference(tmp_path, kw, cin, cout):
    rng = np.random.default_rng(2)
    node = conv_node(rng, "conv", "data", cin, cout, **kw)
    g = make_graph({"data": (1, cin, 15, 17)}, [node], ["conv"])
    x = rng.standard_normal((1, cin, 15, 17))
    out, info = run(tmp_path, g, {"data": x}, ["conv"])
    ref = conv_ref(x.astype(np.float32), node)
    assert out["conv"].shape == ref.shape
    assert err(out["conv"], ref) < 2e-6 * np.abs(ref).max()  # measured <= 2.3e-7
    layer_type = "ConvolutionDepthWise" if node.attrs["group"] > 1 else "Convolution"
    line = next(x for x in Path(info["param"]).read_text().splitlines() if " conv " in x)
    assert line.startswith(layer_type + " ")
    for pid in (0, 1, 11, 2, 12, 3, 13, 4, 14, 15, 16, 5, 6):
        assert re.search(rf" {pid}=", line), f"param {pid} not explicit"


def test_clip_is_relu6(tmp_path):
    rng = np.random.default_rng(3)
    conv = conv_node(rng, "conv", "data", 3, 8)
    clip = Node("relu6", "Clip", ["conv"], ["relu6"], {"min": 0.0, "max": 6.0})
    # conv is a graph output so the Clip stays a layer (fused: tests/test_ncnn_fuse.py)
    g = make_graph({"data": (1, 3, 8, 8)}, [conv, clip], ["conv", "relu6"])
    x = rng.standard_normal((1, 3, 8, 8)) * 8
    out, _ = run(tmp_path, g, {"data": x}, ["conv", "relu6"])
    ref = np.clip(conv_ref(x.astype(np.float32), conv), 0, 6)
    assert (ref == 6).any() and (ref == 0).any()
    assert err(out["relu6"], ref) < 1e-5 * np.abs(ref).max()
    np.testing.assert_array_equal(out["relu6"], np.clip(out["conv"], 0, 6))


@pytest.mark.parametrize(
    "size, k, s, p, rounding, expect",
    [
        (16, 3, 2, 1, "floor", 8),  # MXNet 'valid' (ResNet pool0): Caffe would give 9
        (16, 3, 2, 1, "ceil", 9),
        (5, 2, 2, 1, "ceil", 3),  # Caffe drops the window starting in the pad; ncnn 'full' has 4
        (64, 2, 2, 0, "ceil", 32),
        (17, 2, 2, 0, "floor", 8),  # floor leaves the last row unused
        (17, 2, 2, 0, "ceil", 9),
    ],
)
def test_max_pooling_rounding(tmp_path, size, k, s, p, rounding, expect):
    rng = np.random.default_rng(4)
    node = Node("pool", "Pool", ["data"], ["pool"], pool_attrs(k, s, p, rounding))
    g = make_graph({"data": (1, 3, size, size)}, [node], ["pool"])
    assert g.shapes["pool"] == (1, 3, expect, expect)
    x = rng.standard_normal((1, 3, size, size)).astype(np.float32)
    out, info = run(tmp_path, g, {"data": x}, ["pool"])
    np.testing.assert_array_equal(out["pool"], maxpool_ref(x, k, s, p, expect, expect))
    line = Path(info["param"]).read_text().splitlines()[-1]
    assert (" 5=1" in line) == (rounding == "floor" or bool(info["choices"]))


def test_average_pooling_and_global_pooling(tmp_path):
    rng = np.random.default_rng(5)
    avg = Node("avg", "Pool", ["data"], ["avg"], pool_attrs(3, 1, 1, "floor", "avg", True))
    gap = Node("gap", "Pool", ["data"], ["gap"], pool_attrs(1, 1, 0, "floor", "avg",
                                                           global_pool=True))
    fc = conv_node(rng, "fc", "gap", 4, 3, k=1, p=0)
    g = make_graph({"data": (1, 4, 6, 7)}, [avg, gap, fc], ["avg", "fc"])
    x = rng.standard_normal((1, 4, 6, 7))
    out, info = run(tmp_path, g, {"data": x}, ["avg", "gap", "fc"])
    xp = np.pad(x[0], ((0, 0), (1, 1), (1, 1)))
    ref = np.array([[[xp[c, i:i + 3, j:j + 3].mean() for j in range(7)] for i in range(6)]
                    for c in range(4)])[None]
    assert err(out["avg"], ref) < 1e-6
    assert out["gap"].shape == (1, 4, 1, 1)
    gap_ref = x.mean(axis=(2, 3), keepdims=True)
    assert err(out["gap"], gap_ref) < 1e-6
    assert err(out["fc"], conv_ref(gap_ref, fc)) < 1e-5
    assert any("adaptive" in c for c in info["choices"])


def test_batchnorm_scale_eltwise_power(tmp_path):
    rng = np.random.default_rng(6)
    c = 5
    bn_w = {"mean": rng.standard_normal(c), "var": rng.uniform(0.01, 2, c),
            "gamma": rng.standard_normal(c), "beta": rng.standard_normal(c)}
    nodes = [
        Node("bn", "BatchNorm", ["data"], ["bn"], {"eps": 1e-3}, bn_w),
        Node("sc", "Scale", ["bn"], ["sc"], {"bias": True},
             {"scale": rng.standard_normal(c), "bias": rng.standard_normal(c)}),
        Node("sum", "Eltwise", ["sc", "data"], ["sum"],
             {"operation": "sum", "coeffs": (1.0, -1.0)}),
        Node("max", "Eltwise", ["sc", "bn"], ["max"], {"operation": "max", "coeffs": ()}),
        Node("pow", "Power", ["max"], ["pow"], {"power": 2.0, "scale": 0.5, "shift": 0.25}),
    ]
    g = make_graph({"data": (1, c, 4, 6)}, nodes, ["sum", "pow"])
    x = rng.standard_normal((1, c, 4, 6))
    out, _ = run(tmp_path, g, {"data": x}, ["bn", "sum", "pow"])
    def ch(v):
        return v[None, :, None, None]

    bn = (x - ch(bn_w["mean"])) / np.sqrt(ch(bn_w["var"]) + 1e-3) * ch(bn_w["gamma"])
    bn += ch(bn_w["beta"])
    sc = bn * ch(nodes[1].weights["scale"]) + ch(nodes[1].weights["bias"])
    assert err(out["bn"], bn) < 1e-5 * np.abs(bn).max()
    assert err(out["sum"], sc - x) < 1e-5 * np.abs(sc).max()
    ref_pow = (0.25 + 0.5 * np.maximum(sc, bn)) ** 2
    assert err(out["pow"], ref_pow) < 1e-5 * np.abs(ref_pow).max()
    # an eps of 0 instead of 1e-3 would show: var reaches 0.01 here
    assert err(bn, (x - ch(bn_w["mean"])) / np.sqrt(ch(bn_w["var"])) * ch(bn_w["gamma"])
               + ch(bn_w["beta"])) > 1e-2


def test_normalize_vgg_style(tmp_path):
    rng = np.random.default_rng(7)
    c = 6
    scale = rng.uniform(10, 30, c)
    node = Node("norm", "Normalize", ["data"], ["norm"],
                {"across_spatial": False, "channel_shared": False, "eps": 1e-5}, {"scale": scale})
    g = make_graph({"data": (1, c, 5, 4)}, [node], ["norm"])
    x = rng.standard_normal((1, c, 5, 4)) * 0.01  # small values make eps matter
    out, _ = run(tmp_path, g, {"data": x}, ["norm"])
    ref = x / np.sqrt((x**2).sum(axis=1, keepdims=True) + 1e-5) * scale[None, :, None, None]
    assert err(out["norm"], ref) < 1e-5 * np.abs(ref).max()


def head_level(rng, name, feat, cin, anchors, classes):
    """Conv predictor -> Permute(0,2,3,1) -> Flatten, as an SSD class head level."""
    conv = conv_node(rng, f"{name}_pred", feat, cin, anchors * classes)
    perm = Node(f"{name}_perm", "Permute", [conv.name], [f"{name}_perm"], {"order": (0, 2, 3, 1)})
    flat = Node(f"{name}_flat", "Flatten", [perm.name], [f"{name}_flat"],
                {"axis": 1, "end_axis": -1})
    return [conv, perm, flat]


def test_ssd_class_head(tmp_path):
    """Permute + Flatten + Concat + Reshape (0,-1,C) + Softmax axis 2 + Flatten."""
    rng = np.random.default_rng(8)
    classes = 4
    pool = Node("f2", "Pool", ["f1"], ["f2"], pool_attrs(2, 2, 0, "floor"))
    nodes = [pool]
    nodes += head_level(rng, "l1", "f1", 3, 3, classes)
    nodes += head_level(rng, "l2", "f2", 3, 2, classes)
    nodes += [
        Node("cat", "Concat", ["l1_flat", "l2_flat"], ["cat"], {"axis": 1}),
        Node("resh", "Reshape", ["cat"], ["resh"], {"dims": (0, -1, classes)}),
        Node("prob", "Softmax", ["resh"], ["prob"], {"axis": 2}),
        Node("conf", "Flatten", ["prob"], ["conf"], {"axis": 1, "end_axis": -1}),
    ]
    g = make_graph({"f1": (1, 3, 6, 6)}, nodes, ["conf"])
    x = rng.standard_normal((1, 3, 6, 6))
    out, info = run(tmp_path, g, {"f1": x}, ["cat", "resh", "conf"])
    pred1 = conv_ref(x, nodes[1])
    pred2 = conv_ref(maxpool_ref(x, 2, 2, 0, 3, 3), nodes[4])
    cat = np.concatenate([p.transpose(0, 2, 3, 1).reshape(1, -1) for p in (pred1, pred2)], 1)
    logits = cat.reshape(1, -1, classes)
    prob = np.exp(logits - logits.max(-1, keepdims=True))
    prob /= prob.sum(-1, keepdims=True)
    assert out["resh"].shape == (1, (36 * 3 + 9 * 2), classes)
    logit_err = err(out["cat"], cat)
    assert logit_err < 2e-5 * np.abs(cat).max()
    # softmax over the class axis of ncnn's own logits: isolates the axis from conv rounding
    own = out["resh"].astype(np.float64)
    own = np.exp(own - own.max(-1, keepdims=True))
    own /= own.sum(-1, keepdims=True)
    assert err(out["conf"], own.reshape(1, -1)) < 1e-6
    assert err(out["conf"], prob.reshape(1, -1)) < 2 * logit_err + 1e-6
    text = Path(info["param"]).read_text()
    assert re.search(r"^Softmax prob .* 0=1 1=1$", text, re.MULTILINE)
    assert re.search(r"^Permute l1_perm .* 0=3$", text, re.MULTILINE)


@pytest.mark.parametrize("order", list(itertools.permutations((1, 2, 3))))
def test_permute_every_4d_order(tmp_path, order):
    rng = np.random.default_rng(9)
    node = Node("perm", "Permute", ["data"], ["perm"], {"order": (0, *order)})
    g = make_graph({"data": (1, 2, 3, 5)}, [node], ["perm"])
    x = rng.standard_normal((1, 2, 3, 5))
    out, _ = run(tmp_path, g, {"data": x}, ["perm"])
    assert err(out["perm"], x.transpose(0, *order)) < 1e-6


def test_reshape_slice_concat_axes(tmp_path):
    """Caffe axes and 0/-1 dims on 3-D and 4-D blobs (the ranks differ, so ncnn's own 0 code
    would keep the wrong axis)."""
    rng = np.random.default_rng(10)
    nodes = [
        Node("r", "Reshape", ["data"], ["r"], {"dims": (0, 3, -1)}),  # (1,12,2,2) -> (1,3,16)
        Node("t", "Permute", ["r"], ["t"], {"order": (0, 2, 1)}),  # (1,16,3)
        Node("s", "Slice", ["data"], ["s0", "s1", "s2"], {"axis": 1, "slice_points": (2, 7)}),
        Node("c", "Concat", ["s2", "s0", "s1"], ["c"], {"axis": 1}),
        Node("s3", "Slice", ["data"], ["h0", "h1"], {"axis": -1, "slice_points": (1,)}),
        Node("c3", "Concat", ["h1", "h0"], ["c3"], {"axis": 3}),
        Node("f", "Flatten", ["data"], ["f"], {"axis": 2, "end_axis": -1}),  # (1,12,4)
    ]
    g = make_graph({"data": (1, 12, 2, 2)}, nodes, ["t", "c", "c3", "f"])
    x = rng.standard_normal((1, 12, 2, 2)).astype(np.float32)
    out, _ = run(tmp_path, g, {"data": x}, ["r", "t", "c", "c3", "f"])
    assert err(out["r"], x.reshape(1, 3, 16)) == 0
    assert err(out["t"], x.reshape(1, 3, 16).transpose(0, 2, 1)) == 0
    assert err(out["c"], np.concatenate([x[:, 7:], x[:, :2], x[:, 2:7]], 1)) == 0
    assert err(out["c3"], np.concatenate([x[..., 1:], x[..., :1]], 3)) == 0
    assert err(out["f"], x.reshape(1, 12, 4)) == 0


def test_blob_with_two_consumers_gets_a_split(tmp_path):
    rng = np.random.default_rng(11)
    conv = conv_node(rng, "conv", "data", 3, 4)
    nodes = [conv, Node("relu", "ReLU", ["conv"], ["relu"]),
             Node("clip", "Clip", ["conv"], ["clip"], {"min": -1.0, "max": 1.0}),
             Node("both", "Eltwise", ["conv", "conv"], ["both"], {"operation": "prod",
                                                                      "coeffs": ()})]
    g = make_graph({"data": (1, 3, 6, 6)}, nodes, ["conv", "relu", "clip", "both"])
    x = rng.standard_normal((1, 3, 6, 6))
    out, info = run(tmp_path, g, {"data": x}, ["relu", "clip", "both", "conv"])
    ref = conv_ref(x, conv)
    tol = 1e-5 * np.abs(ref).max()
    assert err(out["conv"], ref) < tol
    assert err(out["relu"], np.maximum(ref, 0)) < tol
    assert err(out["clip"], np.clip(ref, -1, 1)) < tol
    assert err(out["both"], ref * ref) < tol * np.abs(ref).max() * 2
    text = Path(info["param"]).read_text()
    assert re.search(r"^Split \S+ 1 4 conv conv_splitncnn_0 conv_splitncnn_1 conv_splitncnn_2 "
                     r"conv_splitncnn_3$", text, re.MULTILINE)
    # every blob is read by at most one layer
    reads = [b for line in text.splitlines()[2:] for b in
             line.split()[4:4 + int(line.split()[2])]]
    assert len(reads) == len(set(reads))
    for blob in ("data", "conv", "relu", "clip", "both"):
        assert re.search(rf"\s{blob}(\s|$)", text)


# ----------------------------------------------------------------------------- SSD tail


def priorbox_attrs(min_size, max_size, ratios, step, img=512, flip=False, clip=False):
    return {"min_size": min_size, "max_size": max_size, "aspect_ratios": tuple(ratios),
            "flip": flip, "clip": clip, "variance": (0.1, 0.1, 0.2, 0.2), "step_h": step,
            "step_w": step, "offset": 0.5, "img_h": img, "img_w": img, "int_scale": 25}


def test_priorbox_matches_reference(tmp_path):
    attrs = priorbox_attrs(51.2, 102.4, (2, 0.5), 16)
    node = Node("pb", "PriorBox", ["feat", "data"], ["pb"], attrs)
    g = make_graph({"data": (1, 3, 512, 512), "feat": (1, 8, 32, 32)}, [node], ["pb"])
    assert g.shapes["pb"] == (1, 2, 32 * 32 * 4 * 4)
    feeds = {"data": np.zeros((1, 3, 512, 512)), "feat": np.zeros((1, 8, 32, 32))}
    out, info = run(tmp_path, g, feeds, ["pb"])
    ref = layer_priors(attrs, 32, 32, 512, 512)
    assert err(out["pb"], ref) < 2e-7
    # int_scale is ignored: float sizes, no x25 anywhere
    line = [x for x in Path(info["param"]).read_text().splitlines() if x.startswith("PriorBox")]
    assert " -23300=1,51.2 " in line[0] and " 13=0.5" in line[0] and " 7=0 " in line[0]


def test_priorbox_flip_and_clip(tmp_path):
    attrs = priorbox_attrs(30.0, 60.0, (2.0, 3.0), 8, img=64, flip=True, clip=True)
    node = Node("pb", "PriorBox", ["feat", "data"], ["pb"], attrs)
    g = make_graph({"data": (1, 3, 64, 64), "feat": (1, 2, 8, 8)}, [node], ["pb"])
    ref = layer_priors(attrs, 8, 8, 64, 64)
    assert g.shapes["pb"] == ref.shape == (1, 2, 8 * 8 * 6 * 4)  # min, max, 2, 1/2, 3, 1/3
    feeds = {"data": np.zeros((1, 3, 64, 64)), "feat": np.zeros((1, 2, 8, 8))}
    out, _ = run(tmp_path, g, feeds, ["pb"])
    assert ref.min() == 0 and ref.max() == 1  # clipping happened
    assert err(out["pb"], ref) < 2e-7


def test_prior_interleave_composition(tmp_path):
    """Two PriorBox layers on one map, interleaved per cell: A0, B*, A1.. (LiteAnchorGenerator
    style) via Reshape (1,2,HW,4K) -> Slice axis 3 -> Concat axis 3 -> Reshape (1,2,-1)."""
    fh, fw = 5, 4
    a_attrs = priorbox_attrs(40.0, 80.0, (2.0,), 20, img=100)  # 3 per cell
    b_attrs = priorbox_attrs(20.0, None, (3.0, 1 / 3), 20, img=100)  # 3 per cell
    nodes = [
        Node("pa", "PriorBox", ["feat", "data"], ["pa"], a_attrs),
        Node("pb", "PriorBox", ["feat", "data"], ["pb"], b_attrs),
        Node("ra", "Reshape", ["pa"], ["ra"], {"dims": (1, 2, fh * fw, 12)}),
        Node("rb", "Reshape", ["pb"], ["rb"], {"dims": (1, 2, fh * fw, 12)}),
        Node("sa", "Slice", ["ra"], ["sa0", "sa1"], {"axis": 3, "slice_points": (4,)}),
        Node("cat", "Concat", ["sa0", "rb", "sa1"], ["cat"], {"axis": 3}),
        Node("priors", "Reshape", ["cat"], ["priors"], {"dims": (1, 2, -1)}),
    ]
    g = make_graph({"data": (1, 3, 100, 80), "feat": (1, 2, fh, fw)}, nodes, ["priors"])
    feeds = {"data": np.zeros((1, 3, 100, 80)), "feat": np.zeros((1, 2, fh, fw))}
    out, _ = run(tmp_path, g, feeds, ["pa", "pb", "priors"])
    ra = layer_priors(a_attrs, fh, fw, 100, 100).reshape(1, 2, fh * fw, 12)
    rb = layer_priors(b_attrs, fh, fw, 100, 100).reshape(1, 2, fh * fw, 12)
    ref = np.concatenate([ra[..., :4], rb, ra[..., 4:]], axis=3).reshape(1, 2, -1)
    assert out["priors"].shape == (1, 2, fh * fw * 6 * 4)
    assert err(out["priors"], ref) < 2e-7
    # the first prior of each cell is A's min box, the second B's min box
    cell = ref[0, 0, :24].reshape(6, 4)
    assert np.isclose(cell[0, 2] - cell[0, 0], 0.4) and np.isclose(cell[1, 2] - cell[1, 0], 0.2)


def decode(loc, priors):
    pb, var = priors[0, 0].reshape(-1, 4), priors[0, 1].reshape(-1, 4)
    loc = loc.reshape(-1, 4)
    pw, ph = pb[:, 2] - pb[:, 0], pb[:, 3] - pb[:, 1]
    cx = var[:, 0] * loc[:, 0] * pw + (pb[:, 0] + pb[:, 2]) / 2
    cy = var[:, 1] * loc[:, 1] * ph + (pb[:, 1] + pb[:, 3]) / 2
    w, h = np.exp(var[:, 2] * loc[:, 2]) * pw, np.exp(var[:, 3] * loc[:, 3]) * ph
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)


def iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def detection_ref(loc, conf, priors, classes, nms, top_k, keep_top_k, thresh):
    """caffe-ssd DetectionOutput: per class threshold, top_k, greedy NMS; then keep_top_k."""
    boxes = decode(loc, priors)
    scores = conf.reshape(-1, classes)
    dets = []
    for c in range(1, classes):
        idx = [int(i) for i in np.argsort(-scores[:, c]) if scores[i, c] > thresh]
        if top_k >= 0:
            idx = idx[:top_k]
        kept: list[int] = []
        for i in idx:
            if all(iou(boxes[i], boxes[j]) <= nms for j in kept):
                kept.append(i)
        dets += [[c, scores[i, c], *boxes[i]] for i in kept]
    dets.sort(key=lambda d: -d[1])
    return np.array(dets[:keep_top_k] if keep_top_k >= 0 else dets).reshape(-1, 6)


def detection_inputs(rng, n_side=6, classes=4):
    attrs = priorbox_attrs(30.0, 60.0, (2.0, 0.5), 16, img=96)
    priors = layer_priors(attrs, n_side, n_side, 96, 96)
    n = priors.shape[2] // 4
    loc = rng.standard_normal((1, n * 4)) * 0.5
    logits = rng.standard_normal((n, classes)) * 2.5
    conf = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return loc, conf.reshape(1, -1), priors, n


@pytest.mark.parametrize("top_k, keep_top_k", [(6, 15), (-1, -1), (400, 200)])
def test_detection_output_matches_per_class_nms(tmp_path, top_k, keep_top_k):
    rng = np.random.default_rng(12)
    classes = 4
    loc, conf, priors, n = detection_inputs(rng, classes=classes)
    attrs = {"num_classes": classes, "share_location": True, "background_label_id": 0,
                 "nms_threshold": 0.45, "top_k": top_k, "keep_top_k": keep_top_k,
                 "confidence_threshold": 0.2, "code_type": "CENTER_SIZE"}
    node = Node("det", "DetectionOutput", ["loc", "conf", "priors"], ["det"], attrs)
    g = make_graph({"loc": loc.shape, "conf": conf.shape, "priors": priors.shape}, [node],
                   ["det"])
    out, info = run(tmp_path, g, {"loc": loc, "conf": conf, "priors": priors}, ["det"])
    ref = detection_ref(loc.astype(np.float32), conf.astype(np.float32),
                        priors.astype(np.float32), classes, 0.45, top_k, keep_top_k, 0.2)
    got = out["det"]
    assert got.shape == ref.shape and len(ref) > 3
    unlimited = detection_ref(loc, conf, priors, classes, 0.45, -1, -1, 0.2)
    if top_k == 6:  # the limits must bite in this case, or the test proves nothing
        assert len(unlimited) > len(ref)
    got = got[np.argsort(-got[:, 1], kind="stable")]
    np.testing.assert_array_equal(got[:, 0], ref[:, 0])
    assert err(got[:, 1:], ref[:, 1:]) < 1e-6
    if top_k < 0:
        assert f"top_k -1 written as {n}" in " ".join(info["choices"])


def test_detection_output_with_nothing_found_is_empty(tmp_path):
    rng = np.random.default_rng(13)
    loc, conf, priors, _n = detection_inputs(rng)
    attrs = {"num_classes": 4, "share_location": True, "background_label_id": 0,
             "nms_threshold": 0.45, "top_k": -1, "keep_top_k": 100,
             "confidence_threshold": 0.999, "code_type": "CENTER_SIZE"}
    node = Node("det", "DetectionOutput", ["loc", "conf", "priors"], ["det"], attrs)
    g = make_graph({"loc": loc.shape, "conf": conf.shape, "priors": priors.shape}, [node],
                   ["det"])
    info = write_ncnn(g, tmp_path, "empty")
    net = load_net(info)
    ex = net.create_extractor()
    for b, v in {"loc": loc, "conf": conf, "priors": priors}.items():
        ex.input(b, to_mat(v))
    rc, mat = ex.extract("det")
    assert rc == 0 and mat.w == 0 and mat.h == 0


# ----------------------------------------------------------------------------- fp16, errors


def test_fp16_conv_weights_are_close_but_not_identical(tmp_path):
    rng = np.random.default_rng(14)
    conv = conv_node(rng, "conv", "data", 16, 16)
    dw = conv_node(rng, "dw", "conv", 16, 16, group=16)
    g = make_graph({"data": (1, 16, 12, 12)}, [conv, dw], ["dw"])
    x = rng.standard_normal((1, 16, 12, 12))
    full, info32 = run(tmp_path, g, {"data": x}, ["dw"], name="f32")
    half, info16 = run(tmp_path, g, {"data": x}, ["dw"], fp16=True, name="f16")
    ref = conv_ref(conv_ref(x, conv), dw)
    scale = np.abs(ref).max()
    assert err(full["dw"], ref) < 1e-5 * scale
    rel16 = err(half["dw"], ref) / scale
    assert 1e-5 < rel16 < 3e-3
    blob32, blob16 = Path(info32["bin"]).read_bytes(), Path(info16["bin"]).read_bytes()
    assert blob32[:4] == b"\0\0\0\0" and blob16[:4] == (0x01306B47).to_bytes(4, "little")
    n_w = conv.weights["weight"].size
    assert len(blob32) - len(blob16) == 2 * n_w + 2 * dw.weights["weight"].size
    # the bias right after the fp16 weights stays float32
    bias = np.frombuffer(blob16[4 + 2 * n_w:4 + 2 * n_w + 64], dtype="<f4")
    np.testing.assert_array_equal(bias, conv.weights["bias"].astype(np.float32))


def test_default_ncnn_options_stay_close(tmp_path):
    """ncnn's defaults (fp16 storage/packing where the CPU has it, Winograd) on the same net."""
    rng = np.random.default_rng(15)
    conv = conv_node(rng, "conv", "data", 16, 32)
    conv2 = conv_node(rng, "conv2", "conv", 32, 32)
    g = make_graph({"data": (1, 16, 20, 20)}, [conv, conv2], ["conv2"])
    x = rng.standard_normal((1, 16, 20, 20))
    out, _ = run(tmp_path, g, {"data": x}, ["conv2"], exact=False)
    ref = conv_ref(conv_ref(x, conv), conv2)
    assert err(out["conv2"], ref) < 1e-2 * np.abs(ref).max()


def test_unsupported_nodes_are_all_reported_and_nothing_is_written(tmp_path):
    nodes = [  # valid IR (2 priors, 2 classes, a loc per class), which ncnn cannot write
        Node("cat", "Concat", ["a", "a"], ["cat"], {"axis": 0}),
        Node("det", "DetectionOutput", ["loc", "conf", "a"], ["det"],
             {"num_classes": 2, "share_location": False, "background_label_id": 0,
              "nms_threshold": 0.45, "top_k": 10, "keep_top_k": 10, "confidence_threshold": 0.1,
              "code_type": "CENTER_SIZE"}),
    ]
    g = make_graph({"a": (1, 2, 8), "loc": (1, 16), "conf": (1, 4)}, nodes, ["cat", "det"])
    with pytest.raises(UnsupportedError) as e:
        write_ncnn(g, tmp_path, "bad")
    assert {r.node for r in e.value.refusals} == {"cat", "det"}
    assert list(tmp_path.iterdir()) == []
