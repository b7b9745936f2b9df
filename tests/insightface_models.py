"""insightface's face-recognition networks and old MXNet checkpoint formats, rebuilt with
`mxnet.symbol` from the published architecture facts (/work/shared/facts.md §12.3, §12.4) —
no insightface code — with seeded weights, for tests. MXNet only: nothing here imports the
converter.

Facts each builder follows:

`mobilefacenet_symbol` — MobileFaceNet "y1" (model-y1-test2), insightface fmobilefacenet.py
(§12.3.2):
- input `data` -> `_minus_scalar` 127.5 -> `_mul_scalar` 0.0078125, no identity node; 112x112.
- Conv = Convolution(no_bias) `'%s%s_conv2d'` + BatchNorm `'%s%s_batchnorm'` (fix_gamma=False,
  momentum=bn_mom 0.9, **no eps**: MXNet's default 1e-3 applies, §12.3.3; the tensorrtx eps trap
  §12.3.2) + PReLU = LeakyReLU(act_type='prelu') `'%s%s_relu'`; Linear = Conv without the PReLU.
- conv_1 3x3 s2 64; conv_2_dw dw3x3 64 (blocks[0] == 1); DResidual = conv_sep 1x1 -> conv_dw dw3x3
  (stride) -> conv_proj 1x1 Linear; Residual = DResidual + identity (elemwise_add `_plusN`):
  dconv_23 (128, s2, ->64), res_3 blocks[1]x(128, ->64), dconv_34 (256, s2, ->128),
  res_4 blocks[2]x(256, ->128), dconv_45 (512, s2, ->128), res_5 blocks[3]x(256, ->128),
  conv_6sep 1x1 512.
- GDC head (symbol_utils.get_fc1 'GDC'): conv_6dw7_7 Linear dw 7x7 512 pad 0 -> FullyConnected
  `pre_fc1` (emb_size, bias) -> BatchNorm `fc1` fix_gamma=True eps=2e-5.

`iresnet_symbol` — LResNet100E-IR (model-r100-ii), insightface fresnet.py (§12.3.1):
- `mx.sym.identity(name='id')` (op `_copy`), `_minus_scalar` 127.5, `_mul_scalar` 0.0078125.
- conv0 3x3 s1 p1 64 no_bias; bn0 (fix_gamma=False, eps=2e-5); relu0 PReLU.
- filter_list [64, 64, 128, 256, 512], units (3, 13, 30, 3) for r100; the first unit of every
  stage has stride 2 (112 -> 56 -> 28 -> 14 -> 7) and a shortcut `_conv1sc` 1x1 (stride, no_bias)
  + BatchNorm `_sc`; the others an identity shortcut.
- residual_unit_v3: `_bn1` -> `_conv1` 3x3 s1 -> `_bn2` -> PReLU `_relu1` -> `_conv2` 3x3 (stride)
  -> `_bn3`; `bn3 + shortcut` (elemwise_add). Every BN fix_gamma=False eps=2e-5 momentum 0.9.
- output 'E': `bn1` (fix_gamma=False, eps=2e-5) -> `Dropout(p=0.4)` (`dropout0`) -> FullyConnected
  `pre_fc1` (emb_size, bias, flattens 512x7x7) -> BatchNorm `fc1` fix_gamma=True eps=2e-5.
- r100 should be ncnn arcface example's model (§12.4): 65.13 MParams, 24.2 GFLOPs.

`seeded_params` — seeded weights that exercise every parameter, with each BN's moving
mean/var calibrated on a seeded batch (then jittered) so activations stay sane through 100
layers, and the fix_gamma trap (§12.3.3, §12.3.4): every fix_gamma=True BatchNorm's stored
gamma is ~3e-4, not 1 (as in the real MobileFaceNet file); MXNet ignores it at inference.

Old checkpoint formats (read from apache/mxnet's loaders):
- symbol JSON: `legacy_symbol_json(sym, "1.3")` is what MXNet 1.0–1.3 wrote (top-level
  `"attrs": {"mxnet_version": ["int", 10300]}`, per-node "attrs"); `legacy_symbol_json(sym, "0.8")`
  the pre-nnvm form (MXNet <= 0.8, as in MXNet's own tests/python/unittest/save_000800.json):
  per-node "param" (every op parameter, defaults written out, tuples as "(3,3)") and "attr" keys,
  `"backward_source_id": -1`, two-element input entries, no node_row_ptr, no version (=> 0.8.0),
  and no auxiliary-state variables (BatchNorm moving_mean/var): MXNet's LoadLegacyJSON
  (src/nnvm/legacy_json_util.cc UpgradeJSON_000800_000900) adds them back as
  `<bn>_moving_mean`/`<bn>_moving_var`; nnvm's JSONNode::Load still reads "param"/"attr".
  `old_op_names=True` writes the 0.x operator names MXNet still registers as aliases
  (`_MinusScalar`, `_MulScalar`, `_Plus`).
- params: `save_legacy_params(path, arrays, version)` writes the NDArray list file
  (uint64 0x112, uint64 0, uint64 count, arrays, uint64 count, names as uint64 length + bytes)
  with every array in a pre-sparse format NDArray::Load hands to NDArray::LegacyLoad
  (src/ndarray/ndarray.cc): version 0 = no magic, uint32 ndim + uint32 dims (the original
  format, "magic is ndim here"); version 1 = NDARRAY_V1_MAGIC 0xF993fac8 + int32 ndim + int64
  dims. Both continue with Context (int32 dev_type 1 = cpu, int32 dev_id), int32 type_flag
  (0 = float32) and the raw little-endian data. MXNet 1.9.1 itself writes V2 (0xF993fac9 +
  storage type).
- `classifier_symbol`: a tiny conv net ending in `SoftmaxOutput` (its `softmax_label` input
  unbound, as a checkpoint saved for training is); seeded for a (N, 1, H, W) data_shape, a
  grayscale net: the symbol carries no input shape, only conv0's weight says the input's
  channel count.
"""

from __future__ import annotations

import json
import re
import struct

import numpy as np

BN_MOM = 0.9
EMBED_INPUT = 112


def _mx():
    import mxnet as mx

    return mx


# ---------------------------------------------------------------------------------------------
# MobileFaceNet (§12.3.2)

def _mfn_conv(data, num_filter, kernel=(1, 1), stride=(1, 1), pad=(0, 0), num_group=1,
              name="", suffix="", act=True):
    mx = _mx()
    x = mx.sym.Convolution(data=data, num_filter=num_filter, kernel=kernel, num_group=num_group,
                           stride=stride, pad=pad, no_bias=True, name=f"{name}{suffix}_conv2d")
    x = mx.sym.BatchNorm(data=x, fix_gamma=False, momentum=BN_MOM,
                         name=f"{name}{suffix}_batchnorm")  # no eps: MXNet's default 1e-3
    if act:
        x = mx.sym.LeakyReLU(data=x, act_type="prelu", name=f"{name}{suffix}_relu")
    return x


def _mfn_linear(data, num_filter, **kw):
    return _mfn_conv(data, num_filter, act=False, **kw)


def _mfn_dresidual(data, num_out, stride, num_group, name, suffix=""):
    x = _mfn_conv(data, num_group, name=f"{name}{suffix}_conv_sep")
    x = _mfn_conv(x, num_group, kernel=(3, 3), stride=stride, pad=(1, 1), num_group=num_group,
                  name=f"{name}{suffix}_conv_dw")
    return _mfn_linear(x, num_out, name=f"{name}{suffix}_conv_proj")


def _mfn_residual(data, num_block, num_out, num_group, name):
    identity = data
    for i in range(num_block):
        block = _mfn_dresidual(identity, num_out, (1, 1), num_group, f"{name}_block", str(i))
        identity = block + identity
    return identity


def mobilefacenet_symbol(emb_size=128, blocks=(1, 4, 6, 2)):
    """MobileFaceNet y1 (GDC head); output `fc1` (N, emb_size) for a (N, 3, 112, 112) input."""
    mx = _mx()
    with mx.name.NameManager():
        data = mx.sym.Variable("data")
        x = data - 127.5
        x = x * 0.0078125
        x = _mfn_conv(x, 64, kernel=(3, 3), stride=(2, 2), pad=(1, 1), name="conv_1")
        if blocks[0] == 1:
            x = _mfn_conv(x, 64, kernel=(3, 3), pad=(1, 1), num_group=64, name="conv_2_dw")
        else:
            x = _mfn_residual(x, blocks[0], 64, 64, "res_2")
        x = _mfn_dresidual(x, 64, (2, 2), 128, "dconv_23")
        x = _mfn_residual(x, blocks[1], 64, 128, "res_3")
        x = _mfn_dresidual(x, 128, (2, 2), 256, "dconv_34")
        x = _mfn_residual(x, blocks[2], 128, 256, "res_4")
        x = _mfn_dresidual(x, 128, (2, 2), 512, "dconv_45")
        x = _mfn_residual(x, blocks[3], 128, 256, "res_5")
        x = _mfn_conv(x, 512, name="conv_6sep")
        return _gdc_head(x, emb_size, 512)


def _gdc_head(x, emb_size, channels):
    mx = _mx()
    x = _mfn_linear(x, channels, kernel=(7, 7), num_group=channels, name="conv_6dw7_7")
    x = mx.sym.FullyConnected(data=x, num_hidden=emb_size, name="pre_fc1")
    return mx.sym.BatchNorm(data=x, fix_gamma=True, eps=2e-5, momentum=BN_MOM, name="fc1")


# ---------------------------------------------------------------------------------------------
# LResNet-E-IR (§12.3.1)

def _bn(data, name, fix_gamma=False):
    return _mx().sym.BatchNorm(data=data, fix_gamma=fix_gamma, eps=2e-5, momentum=BN_MOM,
                               name=name)


def _conv(data, num_filter, kernel, stride, pad, name):
    return _mx().sym.Convolution(data=data, num_filter=num_filter, kernel=kernel, stride=stride,
                                 pad=pad, no_bias=True, name=name)


def _residual_unit_v3(data, num_filter, stride, dim_match, name):
    mx = _mx()
    x = _bn(data, name + "_bn1")
    x = _conv(x, num_filter, (3, 3), (1, 1), (1, 1), name + "_conv1")
    x = _bn(x, name + "_bn2")
    x = mx.sym.LeakyReLU(data=x, act_type="prelu", name=name + "_relu1")
    x = _conv(x, num_filter, (3, 3), stride, (1, 1), name + "_conv2")
    x = _bn(x, name + "_bn3")
    if dim_match:
        shortcut = data
    else:
        shortcut = _conv(data, num_filter, (1, 1), stride, (0, 0), name + "_conv1sc")
        shortcut = _bn(shortcut, name + "_sc")
    return x + shortcut


def iresnet_symbol(units=(3, 13, 30, 3), emb_size=512):
    """LResNet-E-IR (r100 for units (3, 13, 30, 3)); output `fc1` (N, emb_size) for 112x112."""
    mx = _mx()
    filter_list = [64, 64, 128, 256, 512]
    with mx.name.NameManager():
        data = mx.sym.Variable("data")
        x = mx.sym.identity(data=data, name="id")
        x = x - 127.5
        x = x * 0.0078125
        x = _conv(x, filter_list[0], (3, 3), (1, 1), (1, 1), "conv0")
        x = _bn(x, "bn0")
        x = mx.sym.LeakyReLU(data=x, act_type="prelu", name="relu0")
        for i, n in enumerate(units):
            x = _residual_unit_v3(x, filter_list[i + 1], (2, 2), False, f"stage{i + 1}_unit1")
            for j in range(n - 1):
                x = _residual_unit_v3(x, filter_list[i + 1], (1, 1), True,
                                      f"stage{i + 1}_unit{j + 2}")
        x = _bn(x, "bn1")
        x = mx.sym.Dropout(data=x, p=0.4)
        x = mx.sym.FullyConnected(data=x, num_hidden=emb_size, name="pre_fc1")
        return _bn(x, "fc1", fix_gamma=True)


# ---------------------------------------------------------------------------------------------
# small classifiers: SoftmaxOutput (saved for training) and grayscale input

def classifier_symbol(num_classes=10, softmax_output=True):
    """conv0 3x3 (-> 8) + BN + relu -> max pool -> conv1 -> global avg pool -> FullyConnected
    `fc` -> SoftmaxOutput `softmax` (input `softmax_label`) when softmax_output. The input's
    channel count is not in the symbol: seeded_params' data_shape gives conv0's weight its
    (8, C, 3, 3) shape, which is all a converter has to read it from."""
    mx = _mx()
    with mx.name.NameManager():
        data = mx.sym.Variable("data")
        x = mx.sym.Convolution(data=data, num_filter=8, kernel=(3, 3), pad=(1, 1), name="conv0")
        x = mx.sym.BatchNorm(data=x, fix_gamma=False, eps=2e-5, name="bn0")
        x = mx.sym.Activation(data=x, act_type="relu", name="relu0")
        x = mx.sym.Pooling(data=x, kernel=(2, 2), stride=(2, 2), pool_type="max", name="pool0")
        x = mx.sym.Convolution(data=x, num_filter=16, kernel=(3, 3), pad=(1, 1), name="conv1")
        x = mx.sym.Activation(data=x, act_type="relu", name="relu1")
        x = mx.sym.Pooling(data=x, kernel=(1, 1), global_pool=True, pool_type="avg",
                           name="pool1")
        x = mx.sym.Flatten(data=x, name="flatten0")
        x = mx.sym.FullyConnected(data=x, num_hidden=num_classes, name="fc")
        if softmax_output:
            x = mx.sym.SoftmaxOutput(data=x, name="softmax")
        return x


# ---------------------------------------------------------------------------------------------
# inspection

def _nodes(sym):
    return json.loads(sym.tojson())["nodes"]


def _attr_bool(attrs, key, default):
    v = attrs.get(key)
    return default if v is None else v.lower() in ("true", "1")


def layer_counts(sym) -> dict:
    """Convolutions, BatchNorms by eps and by fix_gamma (MXNet's defaults: eps 1e-3,
    fix_gamma True), PReLUs and other op counts of `sym`."""
    c = {"Convolution": 0, "bn_eps_1e-3": 0, "bn_eps_2e-5": 0, "bn_other_eps": 0,
         "bn_fix_gamma": 0, "PReLU": 0, "FullyConnected": 0, "elemwise_add": 0, "ops": {}}
    for n in _nodes(sym):
        op, a = n["op"], n.get("attrs", {})
        if op == "null":
            continue
        c["ops"][op] = c["ops"].get(op, 0) + 1
        if op == "Convolution":
            c["Convolution"] += 1
        elif op == "BatchNorm":
            eps = float(a.get("eps", "0.001"))
            key = {1e-3: "bn_eps_1e-3", 2e-5: "bn_eps_2e-5"}.get(eps, "bn_other_eps")
            c[key] += 1
            c["bn_fix_gamma"] += _attr_bool(a, "fix_gamma", True)
        elif op == "LeakyReLU" and a.get("act_type") == "prelu":
            c["PReLU"] += 1
        elif op in c:
            c[op] += 1
    return c


def _label_names(sym):
    return [a for a in sym.list_arguments() if a.endswith("_label")]


def _shapes(sym, data_shape):
    arg_shapes, _, aux_shapes = sym.infer_shape(data=tuple(data_shape))
    return (dict(zip(sym.list_arguments(), arg_shapes)),
            dict(zip(sym.list_auxiliary_states(), aux_shapes)))


def parameter_count(sym, data_shape=(1, 3, EMBED_INPUT, EMBED_INPUT)) -> int:
    """Learned parameters (arguments other than the data and labels; no BN running stats)."""
    args, _ = _shapes(sym, data_shape)
    skip = {"data", *_label_names(sym)}
    return int(sum(np.prod(s) for k, s in args.items() if k not in skip))


def multiply_adds(sym, data_shape=(1, 3, EMBED_INPUT, EMBED_INPUT)) -> int:
    """Multiply-adds of the convolutions and fully connected layers for one image."""
    shape = (1, *tuple(data_shape)[1:])
    internals = sym.get_internals()
    _, out_shapes, _ = internals.infer_shape(data=shape)
    out = dict(zip(internals.list_outputs(), out_shapes))
    args, _ = _shapes(sym, shape)
    total = 0
    for n in _nodes(sym):
        if n["op"] == "Convolution":
            w = args[n["name"] + "_weight"]
            total += int(np.prod(out[n["name"] + "_output"])) * int(np.prod(w[1:]))
        elif n["op"] == "FullyConnected":
            total += int(np.prod(args[n["name"] + "_weight"]))
    return total


# ---------------------------------------------------------------------------------------------
# seeded weights

def _fix_gamma_bns(sym):
    return [n["name"] for n in _nodes(sym)
            if n["op"] == "BatchNorm" and _attr_bool(n.get("attrs", {}), "fix_gamma", True)]


def bn_variables(sym):
    """{BatchNorm name: (gamma, beta, moving mean, moving var) variable names}, read from the
    graph: `<bn>_gamma` ... `<bn>_moving_var` for a symbol-API BatchNorm, but e.g. a Gluon
    block's `<prefix>batchnormN_running_mean` for its `<prefix>batchnormN_fwd`."""
    nodes = _nodes(sym)
    return {n["name"]: tuple(nodes[e[0]]["name"] for e in n["inputs"][1:5])
            for n in nodes if n["op"] == "BatchNorm"}


def _without_dropout(sym):
    """`sym` with every Dropout an identity (the calibration forward runs in training mode)."""
    doc = json.loads(sym.tojson())
    for n in doc["nodes"]:
        if n["op"] == "Dropout":
            n["op"], n["attrs"] = "_copy", {}
    return _mx().sym.load_json(json.dumps(doc))


def _bn_inputs(sym):
    """{BatchNorm name: internals output name of its data input}."""
    nodes = _nodes(sym)
    found = {}
    for n in nodes:
        if n["op"] == "BatchNorm":
            src = nodes[n["inputs"][0][0]]
            found[n["name"]] = src["name"] + ("" if src["op"] == "null" else "_output")
    return found


def random_images(n, seed, channels=3, size=EMBED_INPUT):
    """n seeded smooth-ish images, 0..255 float32, NCHW, `size` x `size` or (H, W) (a
    low-resolution random pattern upsampled, plus pixel noise: unlike white noise, they have
    structure a conv net sees)."""
    h, w = (size, size) if np.isscalar(size) else tuple(size)
    rng = np.random.default_rng(seed)
    low = rng.uniform(0, 255, size=(n, channels, 8, 8))
    img = np.repeat(np.repeat(low, -(-h // 8), axis=2), -(-w // 8), axis=3)[..., :h, :w]
    img = img + rng.normal(0, 20, size=img.shape)
    return np.clip(img, 0, 255).astype(np.float32)


def seeded_params(sym, data_shape, seed, gamma_trap=3e-4, images=None):
    """(arg_params, aux_params) as float32 numpy dicts for `sym` on `data_shape` (N, C, H, W);
    N images (`random_images`, seeded) calibrate the BatchNorms, so keep N >= 4 for a net with
    a BatchNorm after a fully connected layer (its statistics are over the batch only).

    Conv weights He-scaled, FC weights 1/sqrt(fan_in), biases small; BN gamma ~ U(0.8, 1.2),
    beta ~ N(0, 0.1); PReLU slopes ~ U(0, 0.5). Moving mean/var: the batch statistics of each
    BN's input in one training-mode forward (Dropout made an identity), so at inference every
    BN normalises its input as it did on that batch (a BN on (N, C), fc1, has its variances
    shrunk halfway to their mean: N samples estimate them poorly); then jittered
    (mean += 0.1 std * N(0, 1), var *= exp(0.2 N(0, 1))). Every fix_gamma=True BatchNorm's
    stored gamma is then set to ~`gamma_trap` (MXNet ignores it; a converter reading it is off
    by ~1/gamma_trap). `images` (N, C, H, W), if given, is the calibration batch instead."""
    mx = _mx()
    data_shape = tuple(data_shape)
    rng = np.random.default_rng(seed)
    args, auxs = _shapes(sym, data_shape)
    inputs = {"data", *_label_names(sym)}
    prelus = _prelu_names(sym)
    arg, aux = {}, {}
    for name, shape in args.items():
        if name in inputs:
            continue
        if name.endswith("_weight") and len(shape) == 4:
            fan_in = int(np.prod(shape[1:]))
            v = rng.normal(0, np.sqrt(2.0 / fan_in), size=shape)
        elif name.endswith("_weight"):
            v = rng.normal(0, 1 / np.sqrt(shape[1]), size=shape)
        elif name.endswith("_bias"):
            v = rng.normal(0, 0.05, size=shape)
        elif name.endswith("_gamma") and name[:-len("_gamma")] in prelus:
            v = rng.uniform(0.0, 0.5, size=shape)
        elif name.endswith("_gamma"):
            v = rng.uniform(0.8, 1.2, size=shape)
        elif name.endswith("_beta"):
            v = rng.normal(0, 0.1, size=shape)
        else:
            raise ValueError(f"no rule to seed {name}")
        arg[name] = v.astype(np.float32)
    for name, shape in auxs.items():
        aux[name] = (np.zeros if name.endswith("_mean") else np.ones)(shape, np.float32)

    # calibrate: one training-mode forward = every BN normalised by its batch statistics
    calib = _without_dropout(sym)
    bn_in = _bn_inputs(calib)
    internals = calib.get_internals()
    wanted = sorted(set(bn_in.values()))
    group = mx.sym.Group([internals[o] for o in wanted])
    if images is None:
        images = random_images(data_shape[0], seed + 1, data_shape[1], data_shape[2:4])
    outs = dict(zip(wanted, (o.astype(np.float64)
                             for o in _run(group, {**arg, **aux, "data": images}, True))))
    bn_vars = bn_variables(sym)
    for bn, src in bn_in.items():
        x = outs[src]
        axes = (0,) + tuple(range(2, x.ndim))
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        if x.ndim == 2:  # statistics over the batch alone (fc1): shrink to the layer's mean
            var = 0.5 * var + 0.5 * var.mean()
        mean = mean + 0.1 * np.sqrt(var) * rng.normal(size=mean.shape)
        var = var * np.exp(0.2 * rng.normal(size=var.shape))
        aux[bn_vars[bn][2]] = mean.astype(np.float32)
        aux[bn_vars[bn][3]] = var.astype(np.float32)
    for bn in _fix_gamma_bns(sym):
        g = arg[bn_vars[bn][0]]
        arg[bn_vars[bn][0]] = (gamma_trap * rng.uniform(0.8, 1.2, size=g.shape)).astype(np.float32)
    return arg, aux


def _prelu_names(sym):
    return {n["name"] for n in _nodes(sym)
            if n["op"] == "LeakyReLU" and n.get("attrs", {}).get("act_type") == "prelu"}


# ---------------------------------------------------------------------------------------------
# running MXNet

def forward(sym, arg, aux, data, output=None):
    """MXNet inference output (numpy) of `sym` (or its internal `output`) on `data` (NCHW)."""
    if output is not None:
        sym = sym.get_internals()[output]
    return forward_all(sym, arg, aux, data)[0]


def forward_all(sym, arg, aux, data):
    """MXNet inference outputs (a list of numpy arrays) of `sym` on `data` (NCHW)."""
    data = np.asarray(data, np.float32)
    values = {**arg, **aux, "data": data}
    for label in _label_names(sym):
        values[label] = np.zeros((data.shape[0],), np.float32)
    return _run(sym, values, False)


def _run(sym, values, is_train):
    """`sym`'s outputs (numpy) with its inputs from `values`. Run as a CachedOp (what a
    hybridized Gluon block runs, as ssdconv.mxnet.run does): unlike `Symbol.bind` it applies no
    MKL-DNN subgraph fusion (which also breaks binding a Group of internals)."""
    mx = _mx()
    inputs = [mx.nd.array(np.asarray(values[k], np.float32)) for k in sym.list_inputs()]
    op = mx.nd.CachedOp(sym)
    with mx.autograd.train_mode() if is_train else mx.autograd.predict_mode():
        outs = op(*inputs)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    return [o.asnumpy() for o in outs]


def load_checkpoint(prefix, epoch=0):
    """mx.model.load_checkpoint as numpy dicts: (sym, arg_params, aux_params)."""
    sym, arg, aux = _mx().model.load_checkpoint(prefix, epoch)
    return (sym, {k: v.asnumpy() for k, v in arg.items()},
            {k: v.asnumpy() for k, v in aux.items()})


# ---------------------------------------------------------------------------------------------
# writing checkpoints: current and old formats

def save_checkpoint(sym, arg, aux, prefix, epoch=0):
    """mx.model.save_checkpoint: PREFIX-symbol.json + PREFIX-%04d.params (arg:/aux: keys).
    Returns the two paths."""
    mx = _mx()
    mx.model.save_checkpoint(str(prefix), epoch, sym,
                             {k: mx.nd.array(np.asarray(v)) for k, v in arg.items()},
                             {k: mx.nd.array(np.asarray(v)) for k, v in aux.items()})
    return f"{prefix}-symbol.json", f"{prefix}-{epoch:04d}.params"


OLD_OP_NAMES = {"_minus_scalar": "_MinusScalar", "_mul_scalar": "_MulScalar",
                "elemwise_add": "_Plus"}

# Parameters MXNet 0.8 wrote out even when left at their defaults (its save_000800.json test
# file and 0.x symbol files: every op parameter, tuples without spaces, e.g. "(1,1)").
OLD_DEFAULTS = {
    "Convolution": {"cudnn_off": "False", "cudnn_tune": "off", "dilate": "(1,1)",
                    "no_bias": "False", "num_group": "1", "pad": "(0,0)", "stride": "(1,1)",
                    "workspace": "512"},
    "BatchNorm": {"eps": "0.001", "fix_gamma": "True", "momentum": "0.9",
                  "use_global_stats": "False"},
    "FullyConnected": {"no_bias": "False"},
    "LeakyReLU": {"act_type": "leaky", "lower_bound": "0.125", "slope": "0.25",
                  "upper_bound": "0.334"},
    "Dropout": {"p": "0.5"},
    "Pooling": {"global_pool": "False", "pad": "(0,0)", "stride": "(1,1)"},
    "SoftmaxOutput": {"grad_scale": "1", "ignore_label": "-1", "multi_output": "False",
                      "normalization": "null", "out_grad": "False", "preserve_shape": "False",
                      "use_ignore": "False"},
}


def legacy_symbol_json(sym, form="1.3", old_op_names=False) -> str:
    """`sym` as an older MXNet wrote it: form "1.3" (mxnet_version 10300, per-node "attrs")
    or "0.8" (pre-nnvm: "param" with every parameter, defaults included (OLD_DEFAULTS), tuples
    as "(3,3)"; "attr" for user attributes; "backward_source_id"; no version; no aux
    variables; no initializer attributes, which MXNet added in 0.9.2)."""
    doc = json.loads(sym.tojson())
    canonical = {n["name"]: n["op"] for n in doc["nodes"]}
    if old_op_names:
        for n in doc["nodes"]:
            n["op"] = OLD_OP_NAMES.get(n["op"], n["op"])
    if form == "1.3":
        doc["attrs"] = {"mxnet_version": ["int", 10300]}
        return json.dumps(doc, indent=2)
    if form != "0.8":
        raise ValueError(f"unknown JSON form {form!r}")
    aux = set(sym.list_auxiliary_states())
    old_nodes, keep = doc["nodes"], []
    for i, n in enumerate(old_nodes):
        if not (n["op"] == "null" and n["name"] in aux):
            keep.append(i)
    index = {old: new for new, old in enumerate(keep)}
    nodes = []
    for old in keep:
        n = old_nodes[old]
        attrs = n.get("attrs", {})
        user = {k.strip("_"): v for k, v in attrs.items()
                if k.startswith("__") and k != "__init__"}
        param = {}
        if n["op"] != "null":
            param = dict(OLD_DEFAULTS.get(canonical[n["name"]], {}))
            param.update((k, v) for k, v in attrs.items() if not k.startswith("__"))
            param = {k: re.sub(r",\s+", ",", v) if v.startswith("(") else v
                     for k, v in sorted(param.items())}
        node = {"op": n["op"], "param": param, "name": n["name"],
                "inputs": [[index[e[0]], e[1]] for e in n["inputs"] if e[0] in index],
                "backward_source_id": -1}
        if user:
            node["attr"] = user
        nodes.append(node)
    out = {"nodes": nodes,
           "arg_nodes": [index[i] for i in doc["arg_nodes"] if i in index],
           "heads": [[index[h[0]], h[1]] for h in doc["heads"]]}
    return json.dumps(out, indent=2)


_NDARRAY_LIST_MAGIC = 0x112
_NDARRAY_V1_MAGIC = 0xF993FAC8
_DTYPE_FLAG = {np.dtype(np.float32): 0, np.dtype(np.float64): 1, np.dtype(np.float16): 2,
               np.dtype(np.uint8): 3, np.dtype(np.int32): 4}


def _legacy_ndarray(a, version) -> bytes:
    a = np.ascontiguousarray(a)
    if a.ndim == 0:
        a = a.reshape(1)
    if version == 0:
        head = struct.pack(f"<I{a.ndim}I", a.ndim, *a.shape)
    elif version == 1:
        head = struct.pack(f"<Ii{a.ndim}q", _NDARRAY_V1_MAGIC, a.ndim, *a.shape)
    else:
        raise ValueError(f"legacy NDArray version {version} (0 or 1)")
    ctx = struct.pack("<ii", 1, 0)  # Context: cpu, device 0
    flag = struct.pack("<i", _DTYPE_FLAG[a.dtype])
    return head + ctx + flag + a.astype(a.dtype.newbyteorder("<")).tobytes()


def save_legacy_params(path, arrays: dict, version=0):
    """An NDArray list file (mx.nd.save's container) whose arrays are in the legacy format
    `version` 0 (no magic, uint32 shape) or 1 (V1 magic, int64 shape); see the docstring."""
    names = list(arrays)
    blob = [struct.pack("<QQQ", _NDARRAY_LIST_MAGIC, 0, len(names))]
    blob += [_legacy_ndarray(np.asarray(arrays[k]), version) for k in names]
    blob.append(struct.pack("<Q", len(names)))
    for k in names:
        b = k.encode()
        blob.append(struct.pack("<Q", len(b)) + b)
    with open(path, "wb") as f:
        f.write(b"".join(blob))


def save_old_checkpoint(sym, arg, aux, prefix, epoch=0, json_form="0.8", ndarray_version=0,
                        old_op_names=False):
    """A checkpoint as an old MXNet wrote it: legacy_symbol_json + save_legacy_params.
    Returns the two paths."""
    sym_path, params_path = f"{prefix}-symbol.json", f"{prefix}-{epoch:04d}.params"
    with open(sym_path, "w") as f:
        f.write(legacy_symbol_json(sym, json_form, old_op_names))
    arrays = {f"arg:{k}": np.asarray(v, np.float32) for k, v in arg.items()}
    arrays.update({f"aux:{k}": np.asarray(v, np.float32) for k, v in aux.items()})
    save_legacy_params(params_path, arrays, ndarray_version)
    return sym_path, params_path
