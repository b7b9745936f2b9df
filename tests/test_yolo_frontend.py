"""The MXNet converters for YOLOv3's neck math (sigmoid, exp, scalar arithmetic, GluonCV's
two-repeat upsample, slice_like) and the drop_unread pass, checked end to end: a small Gluon
block -> load_block -> walk -> passes -> both backends -> OpenCV and ncnn against MXNet.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from test_caffe_backend import run as run_opencv
from test_ncnn_backend import run as run_ncnn

from ssdconv.errors import UnsupportedError
from ssdconv.frontend.walk import walk
from ssdconv.ir.graph import Graph, Node
from ssdconv.mxnet.load import load_block
from ssdconv.mxnet.run import run_outputs
from ssdconv.passes import drop_unread
from ssdconv.passes.pipeline import run_passes

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import mxnet as mx
    from gluoncv.model_zoo.yolo.yolo3 import _upsample
    from mxnet.gluon import nn

# Largest relative error (to the output's peak) of OpenCV/ncnn against MXNet float32 on the
# neck block: measured 1.2e-7 (OpenCV) and 2.6e-7 (ncnn, the exp output); convolutions sum in
# different orders.
RTOL = 1e-6


def assert_runtimes_match(graph, x, want, tmp_path, rtol: float) -> None:
    """The graph's outputs in OpenCV (caffe) and ncnn equal MXNet's `want` to `rtol` of each
    output's peak."""
    got = {"opencv": run_opencv(graph, tmp_path / "caffe", x, graph.outputs)[0],
           "ncnn": list(run_ncnn(tmp_path / "ncnn", graph, {"data": x}, graph.outputs)[0]
                        .values())}
    for runtime, outs in got.items():
        for blob, out, ref in zip(graph.outputs, outs, want, strict=True):
            assert out.shape == ref.shape, (runtime, blob)
            rel = np.abs(out.astype(np.float64) - ref).max() / np.abs(ref).max()
            assert rel < rtol, (runtime, blob, rel)


class Neck(nn.HybridBlock):
    """GluonCV's upsample-and-route step: conv -> LeakyReLU(0.1) -> `_upsample` -> slice_like
    to a route whose size is not a multiple of 2 -> concat -> conv, plus the scalar, sigmoid
    and exp math of YOLO's box decoding on the result."""

    def __init__(self) -> None:
        super().__init__()
        with self.name_scope():
            self.down = nn.Conv2D(8, 3, strides=2, padding=1)
            self.act = nn.LeakyReLU(0.1)
            self.route = nn.Conv2D(4, 3, padding=1)
            self.head = nn.Conv2D(6, 1)

    def hybrid_forward(self, F, x):
        route = self.route(x)
        up = _upsample(self.act(self.down(x)), stride=2)
        out = self.head(F.concat(F.slice_like(up, route * 0, axes=(2, 3)), route, dim=1))
        return out, F.exp(F.sigmoid(out / 2 + 1) - 0.5)


def _model(block: nn.HybridBlock, size: tuple[int, int]):
    block.initialize(mx.init.Xavier(magnitude=3), force_reinit=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_block(block, size, name=type(block).__name__.lower())


def _walked(model) -> Graph:
    """The whole source graph as IR (roots: its heads), passes run, outputs named."""
    source = model.graph
    graph = walk(source, [i for i, _ in source.heads])
    graph.outputs = [source.nodes[i].name for i, _ in source.heads]
    run_passes(graph)
    return graph


def test_neck_matches_mxnet_in_opencv_and_ncnn(tmp_path):
    mx.random.seed(0)
    model = _model(Neck(), (11, 13))
    graph = _walked(model)
    counts = graph.op_counts()
    assert counts["Upsample"] == 1 and counts["Slice"] == 2, counts
    assert counts.get("Identity", 0) == 0
    # the `route * 0` branch read only for its shape is gone
    assert not any(n.source.endswith("_mulscalar0") for n in graph.nodes), graph.nodes
    x = np.random.RandomState(0).uniform(-1, 1, (1, 3, 11, 13)).astype(np.float32)
    want, _ = run_outputs(model.graph, model.graph.heads, x)
    assert_runtimes_match(graph, x, want, tmp_path, RTOL)


def _refusal(fn, size=(8, 8)) -> str:
    """The refusal text the walker gives for `fn(F, x)` applied to an (1, 3, H, W) input."""
    model = _model(nn.HybridLambda(fn), size)
    with pytest.raises(UnsupportedError) as exc:
        walk(model.graph, [i for i, _ in model.graph.heads])
    return " ".join(r.reason for r in exc.value.refusals)


@pytest.mark.parametrize("fn, reason", [
    (lambda F, x: x.repeat(axis=-1, repeats=2), "a repeat on its own"),
    (lambda F, x: x.repeat(axis=-1, repeats=2).repeat(axis=-2, repeats=3), "equal factors"),
    (lambda F, x: x.repeat(axis=1, repeats=2).repeat(axis=-1, repeats=2), "along H"),
    (lambda F, x: x.repeat(axis=2, repeats=2).repeat(axis=3, repeats=2).repeat(axis=2,
                                                                               repeats=2),
     "more than two repeats"),
])
def test_inexact_forms_are_refused(fn, reason):
    assert reason in _refusal(fn)


def test_a_repeat_pair_with_an_outside_reader_is_refused():
    """The inner repeat's output read elsewhere too: the pair cannot become one Upsample."""
    def fn(F, x):
        inner = x.repeat(axis=-1, repeats=2)
        return inner.repeat(axis=-2, repeats=2), inner

    assert "a repeat on its own" in _refusal(fn)


@pytest.mark.parametrize("fn", [lambda F, x: F.sigmoid(x),
                                lambda F, x: F.Activation(x, act_type="sigmoid")])
def test_both_sigmoid_spellings_are_sigmoid(fn):
    graph = _walked(_model(nn.HybridLambda(fn), (4, 4)))
    assert graph.op_counts() == {"Input": 1, "Sigmoid": 1}


def test_slice_like_to_the_same_size_is_dropped():
    model = _model(nn.HybridLambda(lambda F, x: F.slice_like(F.relu(x), x * 0, axes=(2, 3))),
                   (8, 8))
    graph = _walked(model)
    assert graph.op_counts() == {"Input": 1, "ReLU": 1, "Identity": 1}  # kept: a graph output


def test_drop_unread_removes_dead_chains_and_keeps_inputs():
    shape = (1, 2, 4, 4)
    g = Graph(inputs={"data": shape, "unused": shape}, outputs=["live"], nodes=[
        Node("data", "Input", [], ["data"], {"shape": shape}),
        Node("unused", "Input", [], ["unused"], {"shape": shape}),
        Node("dead0", "Power", ["data"], ["dead0"], {"power": 1.0, "scale": 0.0, "shift": 0.0}),
        Node("dead1", "ReLU", ["dead0"], ["dead1"]),
        Node("cut", "Slice", ["data"], ["live", "rest"], {"axis": 2, "slice_points": (3,)}),
    ])
    assert drop_unread.run(g) == 2
    assert [n.name for n in g.nodes] == ["data", "unused", "cut"]
