"""Passes: the numbers they produce and the op types they leave."""

from __future__ import annotations

import numpy as np

from ssdconv.ir.graph import Graph, Node
from ssdconv.ir.preprocess import Preprocess
from ssdconv.passes.pipeline import run_passes


def _conv(name, inp, cin, cout, rng, bias=True):
    w = {"weight": rng.normal(size=(cout, cin, 3, 3))}
    if bias:
        w["bias"] = rng.normal(size=cout)
    return Node(name, "Conv", [inp], [name], {
        "num_output": cout, "kernel": (3, 3), "stride": (1, 1), "pad": (1, 1),
        "dilation": (1, 1), "group": 1, "bias": bias}, w)


def _bn(name, inp, c, rng, eps=2e-3):
    return Node(name, "BatchNorm", [inp], [name], {"eps": eps}, {
        "mean": rng.normal(size=c), "var": rng.uniform(0.5, 2, size=c),
        "gamma": rng.uniform(0.5, 1.5, size=c), "beta": rng.normal(size=c)})


def _numpy_conv(x, w, b):
    c, h, wd = x.shape
    p = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    out = np.zeros((w.shape[0], h, wd))
    for i in range(3):
        for j in range(3):
            out += np.einsum("oc,chw->ohw", w[:, :, i, j], p[:, i:i + h, j:j + wd])
    return out + b[:, None, None]


def _graph(rng):
    g = Graph(inputs={"data": (1, 3, 8, 8)})
    g.nodes = [
        Node("data", "Input", [], ["data"], {"shape": (1, 3, 8, 8)}),
        _bn("bn_data", "data", 3, rng),
        _conv("conv0", "bn_data", 3, 4, rng, bias=False),
        _bn("bn0", "conv0", 4, rng),
        Node("relu0", "ReLU", ["bn0"], ["relu0"], {}),
        Node("drop0", "Identity", ["relu0"], ["drop0"], {}),
        Node("flat", "Flatten", ["drop0"], ["flat"], {"axis": 1, "end_axis": -1}),
    ]
    g.outputs = ["flat"]
    g.preprocess = Preprocess.from_source((120.0, 110.0, 100.0), (60.0, 55.0, 50.0))
    return g


def _run_reference(g_nodes, x):
    """Evaluate the small test graph in float64 numpy (BN, conv, relu only)."""
    vals = {"data": x}
    for n in g_nodes:
        if n.op == "BatchNorm":
            w = n.weights
            a = w["gamma"] / np.sqrt(w["var"] + n.attrs["eps"])
            vals[n.outputs[0]] = (vals[n.inputs[0]] - w["mean"][:, None, None]) * \
                a[:, None, None] + w["beta"][:, None, None]
        elif n.op == "Conv":
            b = n.weights.get("bias", np.zeros(n.attrs["num_output"]))
            vals[n.outputs[0]] = _numpy_conv(vals[n.inputs[0]], n.weights["weight"], b)
        elif n.op == "ReLU":
            vals[n.outputs[0]] = np.maximum(vals[n.inputs[0]], 0)
        elif n.op in ("Identity", "Flatten"):
            vals[n.outputs[0]] = vals[n.inputs[0]]
    return vals


def test_passes_fold_everything_and_keep_the_numbers():
    rng = np.random.RandomState(0)
    pixels = rng.uniform(0, 255, size=(3, 8, 8))  # RGB
    before = _graph(rng)
    pre0 = before.preprocess
    x0 = (pixels - np.array(pre0.mean)[:, None, None]) * np.array(pre0.scale)[:, None, None]
    ref = _run_reference(before.nodes, x0)["relu0"]

    rng2 = np.random.RandomState(0)
    rng2.uniform(0, 255, size=(3, 8, 8))
    after = _graph(rng2)  # the same weights, drawn again
    done = run_passes(after)
    assert done["fold_batchnorm"] == 1 and done["fold_input_affine"] == 1
    assert done["fold_input_scale"] == 1 and done["drop_noops"] == 1
    assert [n.op for n in after.nodes] == ["Input", "Conv", "ReLU", "Flatten"]
    pre = after.preprocess
    assert pre.channel_order == "BGR" and pre.scale == (1.0, 1.0, 1.0)
    bgr = pixels[::-1]
    x1 = bgr - np.array(pre.mean)[:, None, None]
    out = _run_reference(after.nodes, x1)
    got = out[after.nodes[2].outputs[0]]
    assert np.abs(got - ref).max() < 1e-9 * max(1.0, np.abs(ref).max())


def test_shape_only_inputs_are_not_value_readers():
    """A PriorBox reads the image for its size alone (OP_SPECS `shape_only_inputs`), so the
    input folds into the conv with a PriorBox on it; a conv reading it is a value reader."""
    rng = np.random.RandomState(1)
    g = Graph(inputs={"data": (1, 3, 8, 8)})
    g.nodes = [
        Node("data", "Input", [], ["data"], {"shape": (1, 3, 8, 8)}),
        _conv("c1", "data", 3, 4, rng),
        Node("pb", "PriorBox", ["c1", "data"], ["pb"], {
            "min_size": 4.0, "max_size": None, "aspect_ratios": (), "flip": False,
            "clip": False, "variance": (0.1, 0.1, 0.2, 0.2), "step_h": 1.0, "step_w": 1.0,
            "offset": 0.5, "img_h": 8, "img_w": 8, "int_scale": 1}),
    ]
    assert [n.name for n in g.value_readers("data")] == ["c1"]
    assert [n.name for n in g.value_readers("c1")] == ["pb"]
