"""The MXNet converters plain networks need, end to end: a small symbol or Gluon block per op
family -> walk (explicit roots) -> passes -> every backend -> OpenCV, ncnn, onnxruntime and
OpenVINO against MXNet float32.

Families: insightface's embedding tail (PReLU, BatchNorm, Dropout, FullyConnected, a
fix_gamma BatchNorm writing the output `fc1`), MobileNetV3's hard-sigmoid / hard-swish and
GluonCV's squeeze-excitation, ShuffleNet's channel shuffle and split, and a classifier's
SoftmaxOutput and L2Normalization.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from test_caffe_backend import run as run_opencv
from test_ncnn_backend import run as run_ncnn
from test_onnx_backend import run as run_onnx

from ssdconv.errors import UnsupportedError
from ssdconv.frontend.elementwise import division_cost
from ssdconv.frontend.walk import walk
from ssdconv.ir.graph import Graph
from ssdconv.mxnet.load import build_graph, load_block
from ssdconv.mxnet.run import run_outputs
from ssdconv.mxnet.source import SourceGraph
from ssdconv.passes.pipeline import run_passes

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import mxnet as mx
    from mxnet.gluon import nn

# Largest error relative to each output's peak, OpenCV/ncnn/onnxruntime/OpenVINO against MXNet
# float32 on these small nets: measured at most 4.7e-7 (the figures are per test below);
# convolutions and dot products sum in different orders, one ulp of x / 6 (see division_cost).
RTOL = 2e-6


def assert_runtimes_match(graph: Graph, x: np.ndarray, want: list[np.ndarray], tmp_path,
                          rtol: float = RTOL, ncnn: bool = True) -> dict[str, float]:
    """Every graph output in every runtime equals MXNet's `want` to `rtol` of its peak;
    returns the worst relative error per runtime."""
    got = {"opencv": run_opencv(graph, tmp_path / "caffe", x, graph.outputs)[0]}
    if ncnn:
        outs = run_ncnn(tmp_path / "ncnn", graph, {"data": x}, graph.outputs)[0]
        got["ncnn"] = [outs[b] for b in graph.outputs]
    _, onnx_outs = run_onnx(tmp_path / "onnx", graph, {"data": x})
    for rt, per_blob in onnx_outs.items():
        got[rt] = [per_blob[b] for b in graph.outputs]
    worst = {}
    for runtime, outs in got.items():
        for blob, out, ref in zip(graph.outputs, outs, want, strict=True):
            assert out.shape == ref.shape, (runtime, blob, out.shape, ref.shape)
            rel = float(np.abs(out.astype(np.float64) - ref).max() / np.abs(ref).max())
            assert rel < rtol, (runtime, blob, rel)
            worst[runtime] = max(worst.get(runtime, 0.0), rel)
    return worst


def _params(sym, shape: tuple[int, ...], seed: int, skip: tuple[str, ...] = ()) -> dict:
    """Seeded values for every argument and aux state but `data` (variances positive)."""
    rs = np.random.RandomState(seed)
    arg_shapes, _, aux_shapes = sym.infer_shape(data=shape)
    names = sym.list_arguments() + sym.list_auxiliary_states()
    params = {}
    for name, s in zip(names, arg_shapes + aux_shapes, strict=True):
        if name == "data" or name in skip:
            continue
        values = rs.uniform(0.5, 2.0, s) if name.endswith(("_var", "gamma")) else (
            rs.standard_normal(s) * 0.5)
        params[name] = values.astype(np.float32)
    return params


def _source(sym, shape: tuple[int, ...], seed: int = 0, unbound: dict | None = None
            ) -> SourceGraph:
    """The source graph of `sym`; `unbound` names inputs (a label) given to MXNet's shape
    inference and reference run only, as an exported checkpoint holds no value for them."""
    params = _params(sym, shape, seed, skip=tuple(unbound or ()))
    source = build_graph(sym.tojson(), {**params, **(unbound or {})}, "data", shape, "test")
    source.cache["unbound"] = dict(unbound or {})
    for name in unbound or {}:
        del source.params[name]
    return source


def _convert(source: SourceGraph, roots: list[str], skip: tuple[str, ...] = ()) -> Graph:
    """`roots` (node names) walked, named as the graph's outputs, the passes run."""
    index = {n.name: n.index for n in source.nodes}
    graph = walk(source, [index[r] for r in roots])
    graph.outputs = list(roots)
    run_passes(graph, skip)
    return graph


def _mxnet(source: SourceGraph, roots: list[str], x: np.ndarray) -> list[np.ndarray]:
    index = {n.name: n.index for n in source.nodes}
    params = {**source.params, **source.cache.get("unbound", {})}
    return run_outputs(source, [(index[r], 0) for r in roots], x, params=params)[0]


# ----------------------------------------------------------------------------- insightface


def _embedding_tail(channels: int = 8, emb: int = 16):
    """fresnet's conv0/bn0/PReLU stem and its 'E' output: bn1 -> Dropout -> pre_fc1 -> fc1
    (fix_gamma True, whose stored gamma MXNet ignores)."""
    data = mx.sym.Variable("data")
    body = mx.sym.Convolution(data, num_filter=channels, kernel=(3, 3), pad=(1, 1),
                              no_bias=True, name="conv0")
    body = mx.sym.BatchNorm(body, fix_gamma=False, eps=2e-5, name="bn0")
    body = mx.sym.LeakyReLU(body, act_type="prelu", name="relu0")
    body = mx.sym.BatchNorm(body, fix_gamma=False, eps=2e-5, name="bn1")
    body = mx.sym.Dropout(body, p=0.4)
    body = mx.sym.FullyConnected(body, num_hidden=emb, name="pre_fc1")
    return mx.sym.BatchNorm(body, fix_gamma=True, eps=2e-5, name="fc1")


@pytest.mark.parametrize("skip", [(), ("fold_batchnorm",)])
def test_insightface_embedding_tail_matches_mxnet(tmp_path, skip):
    """pre_fc1 flattens 8x7x7 C-major; fc1's BatchNorm folds into it and the folded layer
    writes `fc1`, the graph output (or, unfolded, runs on the (1, 16) blob). Measured folded:
    1.5e-7 (OpenCV), 1.4e-7 (ncnn), 2.1e-7 (onnxruntime), 2.7e-7 (OpenVINO); unfolded: 9.4e-8,
    1.4e-7, 3.2e-7, 3.2e-7."""
    shape = (1, 3, 7, 7)
    source = _source(_embedding_tail(), shape)
    assert not np.all(source.params["fc1_gamma"] == 1)  # fix_gamma must ignore it
    graph = _convert(source, ["fc1"], skip)
    counts = graph.op_counts()
    assert counts["PReLU"] == 1 and counts["InnerProduct"] == 1, counts
    writer = graph.producer("fc1")
    assert writer.op == ("BatchNorm" if skip else "InnerProduct"), writer
    x = np.random.RandomState(1).uniform(-1, 1, shape).astype(np.float32)
    assert_runtimes_match(graph, x, _mxnet(source, ["fc1"], x), tmp_path)


def test_constant_scales_fold_into_conv_and_inner_product(tmp_path):
    """broadcast_mul by a constant (1, C, 1, 1) after a conv, and by a one-element constant
    after a FullyConnected: each Scale folds into the layer before it (fold_batchnorm), which
    then writes the Scale's blob. Measured: 4.7e-7 (OpenCV), 2.2e-7 (ncnn), 2.3e-7
    (onnxruntime), 4.7e-7 (OpenVINO): folded weights round once more than MXNet's product."""
    shape = (1, 3, 5, 5)
    data = mx.sym.Variable("data")
    conv = mx.sym.Convolution(data, num_filter=4, kernel=(3, 3), name="conv")
    scaled = mx.sym.broadcast_mul(conv, mx.sym.Variable("gain", shape=(1, 4, 1, 1)),
                                  name="scaled")
    fc = mx.sym.FullyConnected(scaled, num_hidden=6, name="fc")
    out = mx.sym.broadcast_mul(fc, mx.sym.Variable("k", shape=(1,)), name="out")
    source = _source(out, shape)
    graph = _convert(source, ["out"])
    assert "Scale" not in graph.op_counts(), graph.op_counts()
    assert graph.producer("scaled").op == "Conv" and graph.producer("out").op == "InnerProduct"
    x = np.random.RandomState(10).uniform(-1, 1, shape).astype(np.float32)
    assert_runtimes_match(graph, x, _mxnet(source, ["out"], x), tmp_path)


def test_shared_prelu_and_elu_on_flat_and_4d_blobs(tmp_path):
    """Gluon's nn.PReLU (one slope, shape (1,)) after a conv and after a Dense; ELU (slope
    0.3) on both; tanh. Measured: 2.5e-7 (OpenCV), 1.9e-7 (ncnn), 3.0e-7 (onnxruntime),
    3.3e-7 (OpenVINO)."""
    class Net(nn.HybridBlock):
        def __init__(self):
            super().__init__()
            with self.name_scope():
                self.conv = nn.Conv2D(6, 3, padding=1)
                self.act = nn.PReLU(alpha_initializer=mx.init.Constant(0.2))
                self.dense = nn.Dense(10)
                self.act2 = nn.PReLU(alpha_initializer=mx.init.Constant(0.3))

        def hybrid_forward(self, F, x):
            y = self.act(self.conv(x))
            z = self.act2(self.dense(F.LeakyReLU(y, act_type="elu", slope=0.3)))
            return F.tanh(y), F.LeakyReLU(z, act_type="elu", slope=0.3)

    model = _block(Net(), (5, 6))
    graph = _walked(model)
    counts = graph.op_counts()
    assert counts["PReLU"] == 2 and counts["ELU"] == 2 and counts["TanH"] == 1, counts
    x = np.random.RandomState(2).uniform(-1, 1, (1, 3, 5, 6)).astype(np.float32)
    want, _ = run_outputs(model.graph, model.graph.heads, x)
    assert_runtimes_match(graph, x, want, tmp_path)


def _block(block: nn.HybridBlock, size: tuple[int, int]):
    mx.random.seed(0)
    block.initialize(mx.init.Xavier(magnitude=3), force_reinit=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_block(block, size, name=type(block).__name__.lower())


def _walked(model, skip: tuple[str, ...] = ()) -> Graph:
    """The whole graph (roots: its heads) as IR, passes run; outputs named as the walker names
    blobs (output k > 0 of a node: `<name>_out<k>`)."""
    source = model.graph
    graph = walk(source, [i for i, _ in source.heads])
    graph.outputs = [source.nodes[i].name + (f"_out{k}" if k else "") for i, k in source.heads]
    run_passes(graph, skip)
    return graph


# ----------------------------------------------------------------------------- MobileNetV3


class MobileNetV3Bits(nn.HybridBlock):
    """GluonCV's HardSigmoid (relu6(x + 3) / 6), HardSwish (x * hsig, elemwise_mul) and SE
    block (AdaptiveAvgPooling2D 1 -> Dense -> relu -> Dense -> sigmoid -> expand_dims x2 ->
    broadcast_mul), plus hard-sigmoid written as clip(x / 8 + 0.5, 0, 1)."""

    def __init__(self) -> None:
        super().__init__()
        with self.name_scope():
            self.conv = nn.Conv2D(8, 3, padding=1)
            self.fc1 = nn.Dense(4, use_bias=False)
            self.fc2 = nn.Dense(8, use_bias=False)

    def hybrid_forward(self, F, x):
        x = self.conv(x)
        hswish = x * (F.clip(x + 3, 0, 6) / 6)
        w = F.contrib.AdaptiveAvgPooling2D(hswish, output_size=1)
        w = F.sigmoid(self.fc2(F.relu(self.fc1(w))))
        se = F.broadcast_mul(hswish, w.expand_dims(axis=2).expand_dims(axis=3))
        return se, F.clip(se / 8 + 0.5, 0, 1)


def test_mobilenetv3_hard_swish_and_se_match_mxnet(tmp_path):
    """Measured: 8.0e-8 (OpenCV), 2.4e-7 (ncnn), 1.8e-7 (onnxruntime, OpenVINO), x / 6's
    ulp included."""
    model = _block(MobileNetV3Bits(), (6, 5))
    graph = _walked(model)
    counts = graph.op_counts()
    assert counts["Scale"] == 1 and counts["Eltwise"] == 1 and counts["Clip"] == 2, counts
    assert counts["Pool"] == 1 and counts["InnerProduct"] == 2, counts
    (approx,) = graph.approximations
    assert approx["divisor"] == 6.0 and approx["max_ulp"] == 1, approx
    x = np.random.RandomState(3).uniform(-4, 4, (1, 3, 6, 5)).astype(np.float32)
    want, _ = run_outputs(model.graph, model.graph.heads, x)
    assert_runtimes_match(graph, x, want, tmp_path)


def test_division_cost_is_one_ulp_on_a_third_of_values():
    """x * float32(1/6) against x / 6 in float32, every x in [1, 2): measured at most 1 ulp,
    on 33.3 % of them (1/3: 33.3 %, 1/10: 20.0 %, 1/255: 74.3 %); powers of two cost 0."""
    assert division_cost(6.0) == {"max_ulp": 1, "share_differing": 0.3333}
    assert division_cost(8.0) == {"max_ulp": 0, "share_differing": 0.0}


# ----------------------------------------------------------------------------- ShuffleNet


class ShuffleBits(nn.HybridBlock):
    """ShuffleNet v1's channel shuffle (reshape (0, -4, g, -1, -2), swapaxes 1 2, reshape
    (0, -3, -2)), v2's split in two (split and slice_axis), and a reshape with codes that is no
    shuffle."""

    def __init__(self) -> None:
        super().__init__()
        with self.name_scope():
            self.conv = nn.Conv2D(12, 1)
            self.right = nn.Conv2D(6, 1)

    def hybrid_forward(self, F, x):
        x = self.conv(x)
        shuffled = x.reshape((0, -4, 3, -1, -2)).swapaxes(1, 2).reshape((0, -3, -2))
        left, right = F.split(shuffled, num_outputs=2, axis=1)
        mid = F.slice_axis(shuffled, axis=1, begin=2, end=-4)
        out = F.concat(left, self.right(right), mid, dim=1)
        return out, out.reshape((0, -3, 0)).reshape((0, -4, 2, -1, 0))


def test_shufflenet_shuffle_and_split_match_mxnet(tmp_path):
    """The three shuffle nodes become one ShuffleChannel; data movement is exact, so the
    outputs differ from MXNet only by the convolutions' summation order (measured 0 in
    OpenCV, ncnn and OpenVINO, 1.2e-7 in onnxruntime)."""
    model = _block(ShuffleBits(), (4, 5))
    graph = _walked(model)
    counts = graph.op_counts()
    assert counts["ShuffleChannel"] == 1 and counts["Slice"] == 2, counts
    assert "Permute" not in counts, counts
    x = np.random.RandomState(4).uniform(-1, 1, (1, 3, 4, 5)).astype(np.float32)
    want, _ = run_outputs(model.graph, model.graph.heads, x)
    assert_runtimes_match(graph, x, want, tmp_path)


def test_split_with_squeeze_and_slice_axis_to_the_end(tmp_path):
    """split into parts of 1 with squeeze_axis: a Slice then a Reshape per part; slice_axis
    with end None keeps the tail. Only data moves: exact."""
    def fn(F, x):
        a, _, c = F.split(x, num_outputs=3, axis=1, squeeze_axis=True)
        return a, c, F.slice_axis(x, axis=2, begin=1, end=None)

    model = _block(nn.HybridLambda(fn), (4, 5))
    graph = _walked(model)
    assert graph.op_counts()["Slice"] == 2, graph.op_counts()
    x = np.random.RandomState(8).uniform(-1, 1, (1, 3, 4, 5)).astype(np.float32)
    want, _ = run_outputs(model.graph, model.graph.heads, x)
    assert [w.shape for w in want] == [(1, 4, 5), (1, 4, 5), (1, 3, 3, 5)]
    assert_runtimes_match(graph, x, want, tmp_path, rtol=1e-30)


def test_a_shuffle_read_midway_converts_node_by_node(tmp_path):
    """The swapped 5-D tensor is an output too: no ShuffleChannel (its blob would vanish), but
    a 5-D Reshape, Permute and Reshape, exact in every runtime."""
    def fn(F, x):
        six = F.concat(F.relu(x), x * 2, dim=1)
        swapped = six.reshape((0, -4, 2, -1, -2)).swapaxes(1, 2)
        return swapped.reshape((0, -3, -2)), swapped

    model = _block(nn.HybridLambda(fn), (3, 4))
    graph = _walked(model)
    counts = graph.op_counts()
    assert counts["Reshape"] == 2 and counts["Permute"] == 1, counts
    assert "ShuffleChannel" not in counts, counts
    x = np.random.RandomState(9).uniform(-1, 1, (1, 3, 3, 4)).astype(np.float32)
    want, _ = run_outputs(model.graph, model.graph.heads, x)
    assert_runtimes_match(graph, x, want, tmp_path, rtol=1e-30)


def test_a_lone_swapaxes_is_a_permute(tmp_path):
    model = _block(nn.HybridLambda(lambda F, x: F.relu(x).swapaxes(2, 3)), (4, 5))
    graph = _walked(model)
    assert graph.op_counts() == {"Input": 1, "ReLU": 1, "Permute": 1}
    x = np.random.RandomState(5).uniform(-1, 1, (1, 3, 4, 5)).astype(np.float32)
    want, _ = run_outputs(model.graph, model.graph.heads, x)
    assert_runtimes_match(graph, x, want, tmp_path, rtol=1e-30)  # only data moves: exact


# ----------------------------------------------------------------------------- classifier tail


def test_softmax_output_ignores_its_unbound_label(tmp_path):
    """An exported classifier ending in SoftmaxOutput: its label has no value; the walker skips
    it (declared unread) and the softmax runs over the (1, K) logits; L2Normalization
    'instance' on the 4-D features and on the logits. Measured: 1.5e-7 (OpenCV, ncnn,
    OpenVINO), 2.0e-7 (onnxruntime)."""
    shape = (1, 3, 5, 5)
    data = mx.sym.Variable("data")
    feat = mx.sym.Convolution(data, num_filter=4, kernel=(3, 3), name="conv")
    normed = mx.sym.L2Normalization(feat, mode="instance", name="l2feat")
    logits = mx.sym.FullyConnected(normed, num_hidden=7, name="fc")
    prob = mx.sym.SoftmaxOutput(logits, name="softmax")
    emb = mx.sym.L2Normalization(logits, mode="instance", name="l2emb")
    sym = mx.sym.Group([prob, emb])
    source = _source(sym, shape, unbound={"softmax_label": np.zeros(1, np.float32)})
    graph = _convert(source, ["softmax", "l2emb"])
    assert graph.op_counts()["Softmax"] == 1 and graph.op_counts()["Normalize"] == 2
    x = np.random.RandomState(6).uniform(-1, 1, shape).astype(np.float32)
    assert_runtimes_match(graph, x, _mxnet(source, ["softmax", "l2emb"], x), tmp_path)


def test_softmax_output_multi_output_and_preserve_shape(tmp_path):
    """multi_output: the softmax over axis 1 of (1, C, H, W); otherwise over the last axis,
    preserve_shape or not (MXNet 1.9 flattens every axis but the last, not every non-batch
    axis). Measured: at most 1.4e-7 (onnxruntime), 7.0e-8 elsewhere."""
    shape = (1, 3, 4, 5)
    data = mx.sym.Variable("data")
    conv = mx.sym.Convolution(data, num_filter=4, kernel=(1, 1), name="conv")
    outs = [mx.sym.SoftmaxOutput(conv, name="multi", multi_output=True),
            mx.sym.SoftmaxOutput(conv, name="last", preserve_shape=True),
            mx.sym.SoftmaxOutput(conv, name="whole")]
    labels = {"multi_label": np.zeros((1, 4, 5), np.float32),
              "last_label": np.zeros((1, 4, 4), np.float32),
              "whole_label": np.zeros((1, 4, 4), np.float32)}
    source = _source(mx.sym.Group(outs), shape, unbound=labels)
    roots = ["multi", "last", "whole"]
    graph = _convert(source, roots)
    x = np.random.RandomState(7).uniform(-2, 2, shape).astype(np.float32)
    assert_runtimes_match(graph, x, _mxnet(source, roots, x), tmp_path)


@pytest.mark.parametrize("fn, reason", [
    (lambda F, x: F.LeakyReLU(x, act_type="selu"), "selu"),
    (lambda F, x: F.Activation(x, act_type="softrelu"), "softrelu"),
    (lambda F, x: F.contrib.AdaptiveAvgPooling2D(x, output_size=2), "output_size 1"),
    (lambda F, x: F.L2Normalization(x, mode="spatial"), "mode=spatial"),
    (lambda F, x: F.broadcast_mul(x, F.sum(x, axis=1, keepdims=True)), "(1, C, 1, 1)"),
    (lambda F, x: F.expand_dims(x, axis=0), "new batch axis"),
    (lambda F, x: F.FullyConnected(x, num_hidden=4, flatten=False, no_bias=True,
                                   weight=F.ones((4, 8))), "flatten=False"),
])
def test_unsupported_forms_are_refused(fn, reason):
    model = _block(nn.HybridLambda(fn), (8, 8))
    with pytest.raises(UnsupportedError) as exc:
        walk(model.graph, [i for i, _ in model.graph.heads])
    assert reason in " ".join(r.reason for r in exc.value.refusals)


def test_frontend_approximations_reach_the_manifest(tmp_path, monkeypatch):
    """A converter's `ctx.approximate` entry (here one added to a real detector's walk) is in
    the manifest's approximations, with the runtimes of the targets written."""
    import ssdconv.convert as convert_module
    from ssdconv.convert import Options, convert
    from ssdconv.models import load_model

    entry = {"what": "x / 6 computed as x * float32(1 / 6)", "where": "node",
             "divisor": 6.0, **division_cost(6.0)}

    def walk_approximating(*args, **kwargs):
        graph = walk(*args, **kwargs)
        graph.approximations.append(dict(entry))
        return graph

    monkeypatch.setattr(convert_module, "walk", walk_approximating)
    model = load_model("ssd_300_mobilenet0.25_voc", seed=0)
    conversion = convert(model, tmp_path, Options(targets=("caffe", "ncnn")))
    assert conversion.manifest["approximations"] == [{**entry, "runtimes": ["opencv", "ncnn"]}]
