"""ncnnoptimize's rewrites done by the converter (ssdconv/backend/ncnn/fuse.py), in real ncnn.

Per fusion kind the fused and the unfused model (every rewrite skipped) give exactly equal
outputs in the ncnn package: ncnn's x86 convolutions run the same ReLU/Clip on their output that
the separate layer would (measured bit-identical on every shape below, with the exact options and
with ncnn's defaults). The guards keep blobs that several layers read, graph outputs and inputs.
On converted SSDs nothing is left that ncnnoptimize would fuse, the layer count drops by the
number of fusions, the manifest lists them, and the staged check passes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ncnn_rules import ncnnoptimize_leftovers, parse_param
from test_ncnn_backend import conv_node, load_net, make_graph, pool_attrs, to_mat

from ssdconv.backend.ncnn import tables
from ssdconv.backend.ncnn.emit import write_ncnn
from ssdconv.backend.ncnn.fuse import REWRITE_NAMES
from ssdconv.backend.ncnn.runner import NcnnRunner
from ssdconv.convert import Options, convert
from ssdconv.errors import UserError
from ssdconv.ir.graph import Node
from ssdconv.models import load_model
from ssdconv.verify.check import format_report, run_check
from ssdconv.verify.images import load_rgb

ROOT = Path(__file__).resolve().parent.parent
ACT = tables.ACTIVATION_TYPES

# ----------------------------------------------------------------------------- helpers


def outputs(info: dict, feeds: dict, blobs: list[str], exact: bool = True) -> dict:
    net = load_net(info, exact)
    ex = net.create_extractor()
    ex.set_light_mode(False)
    for b, v in feeds.items():
        assert ex.input(b, to_mat(v)) == 0
    out = {}
    for b in blobs:
        rc, mat = ex.extract(b)
        assert rc == 0, f"extract {b} returned {rc}"
        out[b] = np.array(mat).copy()
    del ex, net
    return out


def fused_and_plain(tmp_path: Path, graph, feeds: dict, blobs: list[str], exact: bool = True):
    """(fused info, plain info, fused outputs, plain outputs) for one graph."""
    fused = write_ncnn(graph, tmp_path, "fused")
    plain = write_ncnn(graph, tmp_path, "plain", skip=REWRITE_NAMES)
    return (fused, plain, outputs(fused, feeds, blobs, exact),
            outputs(plain, feeds, blobs, exact))


def layer(info: dict, name: str):
    (x,) = [x for x in parse_param(info["param"]) if x.name == name]
    return x


ACTIVATIONS = {
    "relu": ("ReLU", {"negative_slope": 0.0}, ACT["relu"], None),
    "leaky_relu": ("ReLU", {"negative_slope": 0.1}, ACT["leaky_relu"], "-23310=1,0.1"),
    "relu6": ("Clip", {"min": 0.0, "max": 6.0}, ACT["clip"], "-23310=2,0.0,6.0"),
    "clip": ("Clip", {"min": -0.5, "max": 0.75}, ACT["clip"], "-23310=2,-0.5,0.75"),
}
#: (cin, cout, kernel, stride, group): plain, 1x1, strided, packed, depthwise and grouped convs,
#: which take different ncnn x86 kernels.
CONVS = {
    "conv3x3": (3, 8, 3, 1, 1), "conv1x1": (16, 32, 1, 1, 1), "conv3x3s2": (32, 64, 3, 2, 1),
    "conv_packed": (64, 128, 3, 1, 1), "depthwise": (64, 64, 3, 1, 64),
    "depthwise_s2": (24, 24, 3, 2, 24), "grouped": (16, 16, 3, 1, 4),
}

# ----------------------------------------------------------------------------- small graphs


@pytest.mark.parametrize("conv_kind", list(CONVS))
@pytest.mark.parametrize("act_kind", list(ACTIVATIONS))
def test_activation_fusion_is_bit_exact(tmp_path, act_kind, conv_kind):
    op, attrs, code, params = ACTIVATIONS[act_kind]
    cin, cout, k, s, group = CONVS[conv_kind]
    rng = np.random.default_rng(sum(map(ord, act_kind + conv_kind)))
    conv = conv_node(rng, "conv", "data", cin, cout, k=k, s=s, p=k // 2, group=group)
    act = Node("act", op, ["conv"], ["act"], attrs)
    g = make_graph({"data": (1, cin, 11, 11)}, [conv, act], ["act"])
    x = rng.standard_normal((1, cin, 11, 11)) * 4
    host = "Convolution" if group == 1 else "ConvolutionDepthWise"
    for exact in (True, False):  # ncnn's exact fp32 options, then its defaults
        fused, plain, a, b = fused_and_plain(tmp_path, g, {"data": x}, ["act"], exact)
        assert np.array_equal(a["act"], b["act"])
    ref = b["act"]
    if act_kind != "leaky_relu":  # the activation really bites: values at its bounds
        assert (ref == float(attrs.get("min", 0.0))).any()
    else:
        assert (ref < 0).any() and (ref > 0).any()
    assert fused["rewrites"][f"fuse_{host.lower()}_activation"] == 1
    assert plain["rewrites"] == {}
    assert fused["layer_count"] == plain["layer_count"] - 1
    written = layer(fused, "conv")
    assert written.type == host and written.outputs == ["act"]
    assert written.params["9"] == str(code)
    assert written.params.get("-23310") == (params.split("=")[1] if params else None)
    assert "act" not in {x.name for x in parse_param(fused["param"])}


def test_chain_of_fusions_through_a_split(tmp_path):
    """conv -> ReLU6 -> (depthwise -> ReLU, conv -> leaky): every pair fuses, the Split stays,
    and a second activation on an already fused output stays a layer."""
    rng = np.random.default_rng(7)
    nodes = [
        conv_node(rng, "c0", "data", 3, 16),
        Node("r0", "Clip", ["c0"], ["r0"], {"min": 0.0, "max": 6.0}),
        conv_node(rng, "dw", "r0", 16, 16, group=16),
        Node("r1", "ReLU", ["dw"], ["r1"], {"negative_slope": 0.0}),
        Node("r1b", "Clip", ["r1"], ["r1b"], {"min": 0.0, "max": 0.5}),
        conv_node(rng, "c1", "r0", 16, 8, k=1, p=0),
        Node("r2", "ReLU", ["c1"], ["r2"], {"negative_slope": 0.25}),
        conv_node(rng, "head", "r1b", 16, 4),
    ]
    g = make_graph({"data": (1, 3, 9, 9)}, nodes, ["head", "r2"])
    x = rng.standard_normal((1, 3, 9, 9)) * 4
    fused, plain, a, b = fused_and_plain(tmp_path, g, {"data": x}, ["head", "r2", "r0", "r1b"])
    for blob in a:
        assert np.array_equal(a[blob], b[blob]), blob
    assert fused["rewrites"] == {"eliminate_pooling1x1": 0, "fuse_convolution_activation": 2,
                                 "fuse_convolutiondepthwise_activation": 1}
    assert fused["layer_count"] == plain["layer_count"] - 3
    types = [x.type for x in parse_param(fused["param"])]
    assert types.count("Split") == 1 and types.count("Clip") == 1  # r1b: dw already has r1
    assert not ncnnoptimize_leftovers(fused["param"])
    assert ncnnoptimize_leftovers(plain["param"]) == [
        "fuse_convolution_activation c0 r0", "fuse_convolutiondepthwise_activation dw r1",
        "fuse_convolution_activation c1 r2"]


def test_guards_keep_shared_and_named_blobs(tmp_path):
    """No fusion when the conv output has a second reader, is a graph output, or feeds a
    non-activation; those blobs stay extractable with the same values."""
    rng = np.random.default_rng(5)
    nodes = [
        conv_node(rng, "shared", "data", 3, 4),
        Node("shared_relu", "ReLU", ["shared"], ["shared_relu"]),
        Node("twice", "Eltwise", ["shared", "shared_relu"], ["twice"],
             {"operation": "sum", "coeffs": ()}),
        conv_node(rng, "named", "twice", 4, 4),
        Node("named_relu", "ReLU", ["named"], ["named_relu"]),
        conv_node(rng, "pooled", "named_relu", 4, 4),
        Node("pool", "Pool", ["pooled"], ["pool"], pool_attrs(2, 2, 0)),
    ]
    g = make_graph({"data": (1, 3, 8, 8)}, nodes, ["named", "named_relu", "pool"])
    x = rng.standard_normal((1, 3, 8, 8))
    blobs = ["shared", "shared_relu", "twice", "named", "named_relu", "pool"]
    fused, plain, a, b = fused_and_plain(tmp_path, g, {"data": x}, blobs)
    for blob in blobs:
        assert np.array_equal(a[blob], b[blob]), blob
    assert sum(fused["rewrites"].values()) == 0
    assert fused["layer_count"] == plain["layer_count"]
    assert Path(fused["param"]).read_text() == Path(plain["param"]).read_text()


def test_identity_pooling_is_eliminated_then_the_activation_fuses(tmp_path):
    """conv -> 1x1/stride-1 max pooling -> ReLU becomes one Convolution; a 1x1 pooling on the
    graph input stays (the input name must not move)."""
    rng = np.random.default_rng(9)
    nodes = [
        Node("p_in", "Pool", ["data"], ["p_in"], pool_attrs(1, 1, 0)),
        conv_node(rng, "conv", "p_in", 3, 6),
        Node("p1", "Pool", ["conv"], ["p1"], pool_attrs(1, 1, 0, method="avg")),
        Node("relu", "ReLU", ["p1"], ["relu"]),
        Node("p2", "Pool", ["relu"], ["p2"], pool_attrs(1, 1, 0, rounding="ceil")),
    ]
    g = make_graph({"data": (1, 3, 7, 7)}, nodes, ["p2"])
    x = rng.standard_normal((1, 3, 7, 7))
    fused, plain, a, b = fused_and_plain(tmp_path, g, {"data": x}, ["p2"])
    assert np.array_equal(a["p2"], b["p2"])
    assert fused["rewrites"]["eliminate_pooling1x1"] == 2
    assert fused["rewrites"]["fuse_convolution_activation"] == 1
    assert [x.type for x in parse_param(fused["param"])] == ["Input", "Pooling", "Convolution"]
    assert layer(fused, "conv").outputs == ["p2"]
    # ncnnoptimize would drop p_in too and rename the network input to p_in; the guard does not
    assert ncnnoptimize_leftovers(fused["param"]) == ["eliminate_pooling1x1 p_in"]


def test_skipping_one_rewrite_by_name(tmp_path):
    rng = np.random.default_rng(2)
    nodes = [conv_node(rng, "c", "data", 3, 4), Node("r", "ReLU", ["c"], ["r"]),
             conv_node(rng, "d", "r", 4, 4, group=4), Node("s", "ReLU", ["d"], ["s"])]
    g = make_graph({"data": (1, 3, 6, 6)}, nodes, ["s"])
    info = write_ncnn(g, tmp_path, "net", skip=("fuse_convolution_activation",))
    assert info["rewrites"] == {"eliminate_pooling1x1": 0,
                                "fuse_convolutiondepthwise_activation": 1}
    assert [x.type for x in parse_param(info["param"])] == [
        "Input", "Convolution", "ReLU", "ConvolutionDepthWise"]


def test_unknown_skip_name_lists_the_ncnn_rewrites_too(tmp_path):
    model = load_model("ssd_300_mobilenet0.25_voc", seed=0)
    with pytest.raises(UserError, match="fuse_convolution_activation"):
        convert(model, tmp_path / "out", Options(skip_passes=("fuse_everything",)))
    assert not (tmp_path / "out").exists()

# ----------------------------------------------------------------------------- converted SSDs


def _demo_model():
    return load_model(str(ROOT / "samples/demo/shapes_ssd-symbol.json"),
                      classes=["circle", "square", "triangle", "star"], input_size=(256, 256))


def _leaky_model(tmp_path_factory):
    from custom_ssd import load_leaky

    return load_leaky(str(tmp_path_factory.mktemp("leaky")))


#: name -> (loader, the activation_type its backbone's convolutions get)
MODELS = {
    "ssd_300_mobilenet0.25_voc": (lambda _: load_model("ssd_300_mobilenet0.25_voc", seed=0),
                                  ACT["relu"]),
    "demo_mobilenetv2_relu6": (lambda _: _demo_model(), ACT["clip"]),
    "custom_mobilenetv2_leaky": (_leaky_model, ACT["leaky_relu"]),
}


@pytest.fixture(scope="module", params=list(MODELS))
def converted(request, tmp_path_factory):
    """(activation_type, fused conversion, unfused conversion) of one SSD, ncnn only."""
    load, activation = MODELS[request.param]
    model = load(tmp_path_factory)
    out = tmp_path_factory.mktemp(request.param.replace(".", "_"))
    fused = convert(model, out / "fused", Options(targets=("ncnn",)))
    plain = convert(model, out / "plain", Options(targets=("ncnn",), skip_passes=REWRITE_NAMES))
    return activation, fused, plain


def test_ssd_has_nothing_left_for_ncnnoptimize(converted):
    activation, fused, plain = converted
    ncnn_info = fused.manifest["ncnn"]
    layers = parse_param(fused.files["param"])
    assert not ncnnoptimize_leftovers(fused.files["param"])
    assert ncnn_info["layer_count"] == len(layers)
    fusions = sum(ncnn_info["rewrites"].values())
    assert fusions == len(ncnnoptimize_leftovers(plain.files["param"])) > 10
    assert plain.manifest["ncnn"]["layer_count"] - ncnn_info["layer_count"] == fusions
    assert not any(x.type in {"ReLU", "Clip"} for x in layers)
    kinds = {x.params.get("9", "0") for x in layers if x.type in tables.ACTIVATION_HOSTS}
    # the backbone's kind; GluonCV's extra layers use ReLU, the head predictors none
    assert kinds == {"0", str(ACT["relu"]), str(activation)}
    assert json.loads(Path(fused.files["json"]).read_text())["ncnn"]["rewrites"] == \
        ncnn_info["rewrites"]
    blobs = {b for x in layers for b in (*x.inputs, *x.outputs)}
    assert set(fused.manifest["blobs"].values()) <= blobs


def test_ssd_fused_outputs_equal_unfused(converted, sample_images):
    _, fused, plain = converted
    manifest = fused.manifest
    _, _, h, w = manifest["input_shape"]
    names = list(manifest["blobs"].values())[1:]
    runners = [NcnnRunner(c.files["param"], c.files["bin"], manifest) for c in (fused, plain)]
    for path in sample_images[:2]:
        rgb = load_rgb(path, h, w)
        a, b = (r.forward(rgb, names) for r in runners)
        assert a[manifest["blobs"]["loc"]].size > 0
        for name in names:
            assert np.array_equal(a[name], b[name]), (path, name)


def test_staged_check_passes_on_fused_model(converted, sample_images):
    _, fused, _ = converted
    report = run_check(fused, sample_images[:2], runtimes=("ncnn",))
    assert report.ok, format_report(report)
    assert all(r.det.matched > 0 for r in report.results)

