"""The insightface test models (tests/insightface_models.py) against the facts they follow
(facts.md §12.3, §12.4) and MXNet 1.9.1 itself: structure, seeded weights, the fix_gamma trap,
and checkpoints in current and old formats loading back to the same forward output."""

import json
import struct

import insightface_models as im
import numpy as np
import pytest

SMALL_UNITS = (1, 1, 1, 1)


@pytest.fixture(scope="module")
def mfn():
    sym = im.mobilefacenet_symbol()
    arg, aux = im.seeded_params(sym, (8, 3, 112, 112), seed=0)
    return sym, arg, aux


@pytest.fixture(scope="module")
def ir_small():
    sym = im.iresnet_symbol(SMALL_UNITS, emb_size=128)
    arg, aux = im.seeded_params(sym, (4, 3, 112, 112), seed=1)
    return sym, arg, aux


def _nodes(sym):
    return {n["name"]: n for n in json.loads(sym.tojson())["nodes"]}


def _input_chain(sym, first):
    nodes = json.loads(sym.tojson())["nodes"]
    return [(n["op"], n.get("attrs", {}).get("scalar")) for n in nodes[first:first + 3]]


# ------------------------------------------------------------------------------ structure

def test_mobilefacenet_structure():
    sym = im.mobilefacenet_symbol()
    c = im.layer_counts(sym)
    assert (c["Convolution"], c["bn_eps_1e-3"], c["bn_eps_2e-5"]) == (49, 49, 1)
    assert c["bn_other_eps"] == 0
    assert (c["PReLU"], c["bn_fix_gamma"], c["FullyConnected"], c["elemwise_add"]) == (33, 1, 1, 12)
    assert set(c["ops"]) == {"_minus_scalar", "_mul_scalar", "Convolution", "BatchNorm",
                             "LeakyReLU", "elemwise_add", "FullyConnected"}
    nodes = _nodes(sym)
    assert _input_chain(sym, 1) == [("_minus_scalar", "127.5"), ("_mul_scalar", "0.0078125"),
                                    ("null", None)]
    for name in ["conv_1_conv2d", "conv_1_batchnorm", "conv_1_relu", "conv_2_dw_conv2d",
                 "dconv_23_conv_sep_conv2d", "dconv_23_conv_dw_conv2d",
                 "dconv_23_conv_proj_batchnorm",
                 "res_3_block3_conv_proj_conv2d", "res_4_block5_conv_dw_relu",
                 "res_5_block1_conv_sep_batchnorm", "conv_6sep_relu", "conv_6dw7_7_conv2d",
                 "conv_6dw7_7_batchnorm", "pre_fc1", "fc1"]:
        assert name in nodes, name
    bn = nodes["conv_1_batchnorm"]["attrs"]
    assert "eps" not in bn and bn["fix_gamma"] == "False"  # MXNet's default eps 1e-3 applies
    assert nodes["fc1"]["attrs"]["fix_gamma"] == "True" and nodes["fc1"]["attrs"]["eps"] == "2e-05"
    assert nodes["conv_6dw7_7_conv2d"]["attrs"]["num_group"] == "512"
    assert nodes["conv_6dw7_7_conv2d"]["attrs"]["kernel"] == "(7, 7)"
    assert "conv_6dw7_7_relu" not in nodes  # Linear: no PReLU
    assert sym.list_outputs() == ["fc1_output"]
    assert sym.infer_shape(data=(2, 3, 112, 112))[1] == [(2, 128)]
    # the MobileFaceNet paper's figures: 0.99M parameters, 221M multiply-adds
    assert im.parameter_count(sym) == 1_003_264
    assert im.multiply_adds(sym) == 220_965_376


def test_mobilefacenet_residual_stem():
    """blocks[0] > 1: the stem's conv_2_dw becomes Residual res_2 (group 64, out 64)."""
    sym = im.mobilefacenet_symbol(emb_size=64, blocks=(2, 1, 1, 1))
    nodes = _nodes(sym)
    assert "conv_2_dw_conv2d" not in nodes and "res_2_block1_conv_dw_conv2d" in nodes
    assert nodes["res_2_block0_conv_dw_conv2d"]["attrs"]["num_group"] == "64"
    assert im.layer_counts(sym)["elemwise_add"] == 5
    assert sym.infer_shape(data=(1, 3, 112, 112))[1] == [(1, 64)]


def test_iresnet_r100_structure():
    sym = im.iresnet_symbol()
    c = im.layer_counts(sym)
    assert (c["Convolution"], c["bn_eps_2e-5"], c["bn_eps_1e-3"]) == (103, 154, 0)
    assert c["bn_other_eps"] == 0
    assert (c["PReLU"], c["bn_fix_gamma"], c["FullyConnected"], c["elemwise_add"]) == (50, 1, 1, 49)
    assert c["ops"]["Dropout"] == 1 and c["ops"]["_copy"] == 1
    assert _input_chain(sym, 1) == [("_copy", None), ("_minus_scalar", "127.5"),
                                    ("_mul_scalar", "0.0078125")]
    nodes = _nodes(sym)
    assert nodes["id"]["op"] == "_copy" and nodes["dropout0"]["attrs"]["p"] == "0.4"
    assert all(f"stage{s}_unit1_conv1sc" in nodes and f"stage{s}_unit1_sc" in nodes
               for s in range(1, 5))
    assert "stage3_unit30_bn3" in nodes and "stage3_unit31_bn1" not in nodes
    assert nodes["stage2_unit1_conv2"]["attrs"]["stride"] == "(2, 2)"
    assert nodes["stage2_unit1_conv1"]["attrs"]["stride"] == "(1, 1)"
    assert sym.infer_shape(data=(1, 3, 112, 112))[1] == [(1, 512)]
    # ncnn's arcface example's model (§12.4): 65.13 MParams, 24.2 GFLOPs. Our count includes
    # the 23,168 gamma/beta pairs of the BNs that follow a convolution; folded into that
    # convolution's bias (as OpenVINO counts) it is 65,132,992.
    params = im.parameter_count(sym)
    assert params == 65_156_160
    assert round((params - 23_168) / 1e6, 2) == 65.13
    assert round(2 * im.multiply_adds(sym) / 1e9, 1) == 24.2


def test_iresnet_small_builds(ir_small):
    sym, arg, _ = ir_small
    c = im.layer_counts(sym)
    assert (c["Convolution"], c["bn_eps_2e-5"], c["PReLU"], c["bn_fix_gamma"]) == (13, 19, 5, 1)
    assert arg["pre_fc1_weight"].shape == (128, 512 * 7 * 7)


# ------------------------------------------------------------------------------ seeded weights

def _embedding_ok(emb):
    assert np.isfinite(emb).all()
    assert np.abs(emb).max() < 100
    norms = np.linalg.norm(emb, axis=1)
    assert (np.abs(emb).max(axis=1) < 0.5 * norms).all()  # spread across dims
    assert (emb.std(axis=1) > 0.3).all()
    unit = emb / norms[:, None]
    cos = unit @ unit.T
    assert cos[np.triu_indices(len(emb), 1)].max() < 0.9  # different for different inputs


@pytest.mark.parametrize("net", ["mfn", "ir_small"])
def test_seeded_embedding(net, request):
    sym, arg, aux = request.getfixturevalue(net)
    emb = im.forward(sym, arg, aux, im.random_images(3, seed=42))
    _embedding_ok(emb)
    # every parameter exercised: nothing constant, PReLU slopes in (0, 0.5)
    assert all(v.std() > 0 for k, v in arg.items() if v.size > 1 and k != "fc1_gamma"), \
        [k for k, v in arg.items() if v.size > 1 and v.std() == 0]
    slopes = [v for k, v in arg.items() if k.endswith("_relu_gamma") or k.endswith("relu0_gamma")
              or k.endswith("_relu1_gamma")]
    assert slopes and all(((s > 0) & (s < 0.5)).all() for s in slopes)
    for name in [k for k in aux if k.endswith("_moving_var")]:
        assert (aux[name] > 0).all() and np.isfinite(aux[name]).all()


def test_seeded_is_deterministic():
    sym = im.iresnet_symbol(SMALL_UNITS, emb_size=32)
    a1, x1 = im.seeded_params(sym, (4, 3, 112, 112), seed=7)
    a2, x2 = im.seeded_params(sym, (4, 3, 112, 112), seed=7)
    assert all(np.array_equal(a1[k], a2[k]) for k in a1)
    assert all(np.array_equal(x1[k], x2[k]) for k in x1)
    a3, _ = im.seeded_params(sym, (4, 3, 112, 112), seed=8)
    assert not np.array_equal(a1["conv0_weight"], a3["conv0_weight"])


@pytest.mark.parametrize("net", ["mfn", "ir_small"])
def test_fix_gamma_trap(net, request):
    """fc1's stored gamma is ~3e-4; MXNet ignores it (fix_gamma=True). Reading it shrinks the
    normalised embedding ~3000x: the output collapses to fc1's beta."""
    sym, arg, aux = request.getfixturevalue(net)
    gamma = arg["fc1_gamma"]
    assert 2e-4 < gamma.min() and gamma.max() < 4e-4
    x = im.random_images(2, seed=3)
    emb = im.forward(sym, arg, aux, x)
    for stored in (np.ones_like(gamma), 7 * np.ones_like(gamma), -gamma):
        assert np.array_equal(im.forward(sym, {**arg, "fc1_gamma": stored}, aux, x), emb)
    pre = im.forward(sym, arg, aux, x, output="pre_fc1_output").astype(np.float64)
    norm = (pre - aux["fc1_moving_mean"]) / np.sqrt(aux["fc1_moving_var"] + 2e-5)
    assert np.allclose(norm + arg["fc1_beta"], emb, rtol=1e-4, atol=1e-4)  # gamma taken as 1
    wrong = gamma * norm + arg["fc1_beta"]
    assert np.abs(wrong - emb).max() > 1  # a converter that reads gamma is far off
    ratio = np.linalg.norm(norm, axis=1) / np.linalg.norm(wrong - arg["fc1_beta"], axis=1)
    assert (ratio > 2500).all()


def test_r100_seeded_sane():
    """100 layers of seeded weights keep the embedding sane (about 4 s on 2 cores)."""
    sym = im.iresnet_symbol()
    arg, aux = im.seeded_params(sym, (4, 3, 112, 112), seed=2)
    emb = im.forward(sym, arg, aux, im.random_images(2, seed=5))
    assert emb.shape == (2, 512)
    _embedding_ok(emb)


# ------------------------------------------------------------------------------ checkpoints

def test_checkpoint_roundtrip(mfn, tmp_path):
    sym, arg, aux = mfn
    js, params = im.save_checkpoint(sym, arg, aux, tmp_path / "model")
    assert js.endswith("model-symbol.json") and params.endswith("model-0000.params")
    import mxnet as mx

    keys = set(mx.nd.load(params))
    assert keys == {f"arg:{k}" for k in arg} | {f"aux:{k}" for k in aux}
    x = im.random_images(2, seed=11)
    s, a, b = im.load_checkpoint(tmp_path / "model", 0)
    assert np.array_equal(im.forward(s, a, b, x), im.forward(sym, arg, aux, x))


@pytest.mark.parametrize("form,old_names", [("1.3", False), ("0.8", False), ("0.8", True)])
def test_legacy_symbol_json(ir_small, tmp_path, form, old_names):
    sym, arg, aux = ir_small
    text = im.legacy_symbol_json(sym, form, old_op_names=old_names)
    doc = json.loads(text)
    if form == "1.3":
        assert doc["attrs"] == {"mxnet_version": ["int", 10300]}
        assert all("param" not in n for n in doc["nodes"])
    else:
        assert "attrs" not in doc and "node_row_ptr" not in doc
        assert all(n["backward_source_id"] == -1 and "param" in n and "attrs" not in n
                   for n in doc["nodes"])
        assert all(len(e) == 2 for n in doc["nodes"] for e in n["inputs"])
        names = {n["name"] for n in doc["nodes"]}
        assert not names & set(aux)  # no auxiliary states before 0.9
        params = {n["name"]: n["param"] for n in doc["nodes"]}
        assert params["conv0"]["kernel"] == "(3,3)" and params["conv0"]["dilate"] == "(1,1)"
        assert params["bn0"]["eps"] == "2e-05" and params["fc1"]["fix_gamma"] == "True"
        assert params["relu0"]["act_type"] == "prelu"
        assert not any("attr" in n for n in doc["nodes"])  # no initializer attributes
    ops = {n["op"] for n in doc["nodes"]}
    assert ({"_MinusScalar", "_MulScalar", "_Plus"} <= ops) == old_names
    (tmp_path / "old-symbol.json").write_text(text)
    im.save_checkpoint(sym, arg, aux, tmp_path / "new")
    (tmp_path / "new-0000.params").rename(tmp_path / "old-0000.params")
    s, a, b = im.load_checkpoint(tmp_path / "old", 0)
    assert s.list_arguments() == sym.list_arguments()
    assert s.list_auxiliary_states() == sym.list_auxiliary_states()
    x = im.random_images(1, seed=12)
    assert np.array_equal(im.forward(s, a, b, x), im.forward(sym, arg, aux, x))


@pytest.mark.parametrize("version", [0, 1])
def test_legacy_params(tmp_path, version):
    import mxnet as mx

    rng = np.random.default_rng(0)
    arrays = {"arg:w": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
              "arg:b": rng.normal(size=(4,)).astype(np.float32),
              "aux:s": np.arange(6, dtype=np.float32).reshape(2, 3)}
    path = tmp_path / "legacy.params"
    im.save_legacy_params(path, arrays, version)
    raw = path.read_bytes()
    assert struct.unpack("<QQQ", raw[:24]) == (0x112, 0, 3)
    first = struct.unpack("<I", raw[24:28])[0]
    assert first == (4 if version == 0 else 0xF993FAC8)  # not the current 0xF993FAC9
    mx.nd.save(str(tmp_path / "current.params"), {k: mx.nd.array(v) for k, v in arrays.items()})
    assert struct.unpack("<I", (tmp_path / "current.params").read_bytes()[24:28])[0] == 0xF993FAC9
    loaded = mx.nd.load(str(path))
    assert list(loaded) == list(arrays)
    for k, v in arrays.items():
        assert loaded[k].dtype == np.float32 and np.array_equal(loaded[k].asnumpy(), v)


@pytest.mark.parametrize("version", [0, 1])
def test_old_checkpoint(mfn, tmp_path, version):
    sym, arg, aux = mfn
    im.save_old_checkpoint(sym, arg, aux, tmp_path / "y1", json_form="0.8",
                           ndarray_version=version, old_op_names=True)
    s, a, b = im.load_checkpoint(tmp_path / "y1", 0)
    x = im.random_images(2, seed=13)
    assert np.array_equal(im.forward(s, a, b, x), im.forward(sym, arg, aux, x))


def test_softmax_output_checkpoint(tmp_path):
    sym = im.classifier_symbol(num_classes=5)
    assert sym.list_outputs() == ["softmax_output"]
    assert "softmax_label" in sym.list_arguments()
    arg, aux = im.seeded_params(sym, (4, 3, 32, 32), seed=4)
    assert "softmax_label" not in arg
    im.save_checkpoint(sym, arg, aux, tmp_path / "cls")
    import mxnet as mx

    assert "arg:softmax_label" not in mx.nd.load(str(tmp_path / "cls-0000.params"))
    s, a, b = im.load_checkpoint(tmp_path / "cls", 0)
    assert "softmax_label" in s.list_arguments()
    x = im.random_images(3, seed=14, size=32)
    prob = im.forward(s, a, b, x)
    assert prob.shape == (3, 5) and np.allclose(prob.sum(axis=1), 1, atol=1e-5)
    assert np.array_equal(prob, im.forward(sym, arg, aux, x))
    logits = im.forward(s, a, b, x, output="fc_output")
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    assert np.allclose(prob, e / e.sum(axis=1, keepdims=True), atol=1e-6)


def test_grayscale_checkpoint(tmp_path):
    sym = im.classifier_symbol(num_classes=4, softmax_output=False)
    arg, aux = im.seeded_params(sym, (4, 1, 32, 32), seed=5)
    im.save_checkpoint(sym, arg, aux, tmp_path / "gray")
    doc = json.loads((tmp_path / "gray-symbol.json").read_text())
    data = next(n for n in doc["nodes"] if n["name"] == "data")
    assert "attrs" not in data  # no shape in the graph: only conv0's weight gives C = 1
    s, a, b = im.load_checkpoint(tmp_path / "gray", 0)
    assert a["conv0_weight"].shape == (8, 1, 3, 3)
    x = im.random_images(2, seed=15, channels=1, size=32)
    out = im.forward(s, a, b, x)
    assert out.shape == (2, 4) and np.isfinite(out).all()
    assert np.array_equal(out, im.forward(sym, arg, aux, x))


def test_old_softmax_and_grayscale_checkpoint(tmp_path):
    """The oldest forms together: 0.8 JSON (SoftmaxOutput with every default parameter written)
    + version-0 NDArrays, for a 1-channel classifier saved for training."""
    sym = im.classifier_symbol(num_classes=3)
    arg, aux = im.seeded_params(sym, (4, 1, 32, 32), seed=6)
    js, _ = im.save_old_checkpoint(sym, arg, aux, tmp_path / "old", json_form="0.8",
                                   ndarray_version=0)
    doc = json.loads(open(js).read())
    softmax = next(n for n in doc["nodes"] if n["op"] == "SoftmaxOutput")
    assert softmax["param"]["normalization"] == "null" and len(softmax["inputs"]) == 2
    s, a, b = im.load_checkpoint(tmp_path / "old", 0)
    assert "softmax_label" in s.list_arguments() and a["conv0_weight"].shape == (8, 1, 3, 3)
    x = im.random_images(2, seed=16, channels=1, size=32)
    assert np.array_equal(im.forward(s, a, b, x), im.forward(sym, arg, aux, x))
