"""insightface's RetinaFace face detector, rebuilt with `mxnet.symbol` from the published
architecture facts (/work/shared/facts.md §12.1, §12.3.3) — no insightface code — with seeded
weights, for tests. MXNet only: nothing here imports the converter. The generic pieces
(seeding with calibrated BatchNorms, running a symbol, checkpoints) are
tests/insightface_models.py's, imported.

`mnet25_symbol` — the released mnet.25 (§12.1.1):
- input `data`, RGB 0..255, no normalisation (§12.1.5).
- backbone = Gluon mobilenet0.25, Gluon names: `mobilenet0_convN_fwd` (no_bias, layout NCHW),
  `mobilenet0_batchnormN_fwd` (eps 1e-5, fix_gamma False, momentum 0.9; its variables
  `mobilenet0_batchnormN_gamma/_beta/_running_mean/_running_var`, as a Gluon block names them),
  `mobilenet0_reluN_fwd`; conv0 3x3 s2 3->8, then 13 dw/pw pairs; taps relu10 (stride 8, 64 ch),
  relu22 (stride 16, 128 ch), relu26 (stride 32, 256 ch).
- neck (symbol_common.get_sym_conv): conv `X` (bias) + BatchNorm `X_bn` (eps 2e-5, fix_gamma
  False) + Activation `X_relu`: rf_c3_lateral; `rf_c3_upsampling` UpSampling nearest scale 2
  num_args 1 workspace 512; rf_c2_lateral; `crop0` Crop num_args 2 [upsampled, lateral];
  `_plus0` elemwise_add(lateral, crop); rf_c2_aggr 3x3; rf_c1_red_conv; rf_c2_upsampling; crop1;
  _plus1; rf_c1_aggr.
- SSH modules `rf_cK_det` (K = 3, 2, 1 on rf_c3_lateral, rf_c2_aggr, rf_c1_aggr): conv1 3x3 32
  +BN; context_conv1 3x3 16 +BN+relu; context_conv2 16 +BN; context_conv3_1 16 +BN+relu;
  context_conv3_2 16 +BN; `_concat` Concat dim 1 -> `_concat_relu`.
- per stride S (A = 2 anchors): face_rpn_cls_score_strideS 1x1 -> 4,
  face_rpn_bbox_pred_strideS -> 8, face_rpn_landmark_pred_strideS -> 20;
  face_rpn_cls_score_reshape_strideS Reshape (0, 2, -1, 0) -> face_rpn_cls_prob_strideS softmax
  axis 1 (or, `softmax="SoftmaxActivation"`, the training-side deploy export's
  SoftmaxActivation mode channel, §12.1.2) -> face_rpn_cls_prob_reshape_strideS Reshape
  (0, 4, -1, 0). Outputs: cls_prob_reshape, bbox_pred, landmark_pred of stride 32, then 16,
  then 8 (no landmark outputs for landmarks=False).
- op counts (with landmarks): Convolution 56, BatchNorm 47, Activation 41 (relu), Reshape 6,
  Concat 3, softmax 3, UpSampling 2, Crop 2, elemwise_add 2.

`r50_symbol` — retinaface-R50 ("net3", §12.1.3), reduced: `units` bottleneck units per stage
((3, 4, 6, 3) is the real one) and a `width` factor on every channel count (1 = the real one):
- `bn_data` BatchNorm fix_gamma True eps 2e-5 on `data`; conv0 7x7 s2 p3 64 no bias; bn0; relu0;
  pooling0 max 3x3 s2 p1, no pooling_convention (MXNet's default 'valid', floor).
- pre-activation bottleneck units (MXNet's resnet v2): stageS_unitU_{bn1, relu1, conv1 1x1,
  bn2, relu2, conv2 3x3 (stride), bn3, relu3, conv3 1x1}, unit1's shortcut `_sc` 1x1 (stride)
  on relu1; `conv3 + shortcut` (`_plusN`); filters 256, 512, 1024, 2048 (bottleneck 1/4);
  stage1 stride 1, the others 2; final bn1, relu1. Every BN but bn_data fix_gamma False,
  eps 2e-5, no_bias convs.
- taps: stride 8 = stage3_unit1_relu2 (256 ch), stride 16 = stage4_unit1_relu2 (512),
  stride 32 = relu1 (2048).
- neck: ssh_c3_lateral 1x1 256, ssh_c3_up, crop0, ssh_c2_lateral 1x1 256, add, ssh_c2_aggr 3x3
  256, ssh_m2_red_up, ssh_m1_red_conv 1x1 256, crop1, add, ssh_c1_aggr 3x3 256 (biased convs,
  `_bn` eps 2e-5, `_relu`); SSH heads ssh_m3_det, ssh_m2_det, ssh_m1_det (conv1 256, context
  128, concat 512); predictors and outputs as mnet.25.

`seeded_params` — insightface_models.seeded_params (He-scaled weights, every BN's statistics
calibrated on a seeded batch of random images then jittered, fix_gamma=True BNs' stored gamma
~3e-4, which MXNet ignores), then the predictors rescaled on the two sample photos
(samples/astronaut.jpg, samples/grace_hopper.jpg, at the batch's H, W) so that:
- face_rpn_cls_score: the face logit margin (fg - bg logit of an anchor; its face probability
  is the sigmoid of it) has standard deviation `cls_spread` (2) over the photos' anchors of
  each stride, and the fg biases are shifted so that a fraction `FACE_FRACTION[S]` of them is
  above logit(0.8): some anchors, a few dozen per stride and photo, score > 0.8, the rest lower
  (median < 0.5);
- face_rpn_bbox_pred / face_rpn_landmark_pred: outputs of standard deviation `delta_std` (0.3),
  deltas of order 0.1-1 as a trained detector's.
"Faces" here means high scores from seeded weights, NOT real face detection: where the
high-scoring anchors fall says nothing about faces, and another image may get none (e.g.
samples/cat.jpg on the full-size R50). The photos, not the random batch, set the head: the
features' scale on photos differs from that on random images by up to 2-3x (the full-size R50
the most), so a fraction set on random images does not carry over reliably
(`head_images="batch"` does that).
"""

from __future__ import annotations

import json

import numpy as np

try:
    from . import insightface_models as im
except ImportError:  # imported as a top-level module (tests/ on sys.path)
    import insightface_models as im

NUM_ANCHORS = 2
STRIDES = (32, 16, 8)
FACE_THRESHOLD = 0.8
# fraction of the calibration batch's anchors scoring above FACE_THRESHOLD, per stride
# (at 320x320 about 24, 48 and 64 of the 200, 800 and 3200 anchors)
FACE_FRACTION = {32: 0.12, 16: 0.06, 8: 0.02}
CALIB_SIZE = (320, 320)

_mx = im._mx


def output_names(landmarks=True):
    """The detector's outputs, in the released symbol's order."""
    names = []
    for s in STRIDES:
        names += [f"face_rpn_cls_prob_reshape_stride{s}", f"face_rpn_bbox_pred_stride{s}"]
        if landmarks:
            names.append(f"face_rpn_landmark_pred_stride{s}")
    return names


# ---------------------------------------------------------------------------------------------
# pieces shared by both detectors (insightface symbol_common.py, §12.1.1)

def _conv_act(data, name, num_filter, kernel=(1, 1), pad=(0, 0), act=True):
    """conv_act_layer: biased conv `name`, BatchNorm `name_bn` (eps 2e-5), relu `name_relu`."""
    mx = _mx()
    x = mx.sym.Convolution(data=data, kernel=kernel, pad=pad, stride=(1, 1),
                           num_filter=num_filter, name=name)
    x = mx.sym.BatchNorm(data=x, fix_gamma=False, eps=2e-5, momentum=0.9, name=name + "_bn")
    if act:
        x = mx.sym.Activation(data=x, act_type="relu", name=name + "_relu")
    return x


def _upsampling(data, name):
    return _mx().sym.UpSampling(data, scale=2, sample_type="nearest", workspace=512, name=name,
                                num_args=1)


def _ssh(data, num_filter, name):
    """ssh_detection_module: conv1 num_filter/2, context num_filter/4 (>= 16), concat, relu."""
    mx = _mx()
    conv3x3 = _conv_act(data, name + "_conv1", num_filter // 2, (3, 3), (1, 1), act=False)
    f = max(num_filter // 4, 16)
    dimred = _conv_act(data, name + "_context_conv1", f, (3, 3), (1, 1))
    conv5x5 = _conv_act(dimred, name + "_context_conv2", f, (3, 3), (1, 1), act=False)
    conv7x7_1 = _conv_act(dimred, name + "_context_conv3_1", f, (3, 3), (1, 1))
    conv7x7 = _conv_act(conv7x7_1, name + "_context_conv3_2", f, (3, 3), (1, 1), act=False)
    x = mx.sym.concat(conv3x3, conv5x5, conv7x7, dim=1, name=name + "_concat")
    return mx.sym.Activation(data=x, act_type="relu", name=name + "_concat_relu")


def _outputs(feat, stride, softmax, landmarks):
    mx = _mx()
    a = NUM_ANCHORS
    cls = mx.sym.Convolution(data=feat, kernel=(1, 1), pad=(0, 0), stride=(1, 1),
                             num_filter=2 * a, name=f"face_rpn_cls_score_stride{stride}")
    bbox = mx.sym.Convolution(data=feat, kernel=(1, 1), pad=(0, 0), stride=(1, 1),
                              num_filter=4 * a, name=f"face_rpn_bbox_pred_stride{stride}")
    x = mx.sym.Reshape(data=cls, shape=(0, 2, -1, 0),
                       name=f"face_rpn_cls_score_reshape_stride{stride}")
    if softmax == "softmax":
        x = mx.sym.softmax(data=x, axis=1, name=f"face_rpn_cls_prob_stride{stride}")
    elif softmax == "SoftmaxActivation":
        x = mx.sym.SoftmaxActivation(data=x, mode="channel",
                                     name=f"face_rpn_cls_prob_stride{stride}")
    else:
        raise ValueError(f"softmax {softmax!r}: 'softmax' or 'SoftmaxActivation'")
    x = mx.sym.Reshape(data=x, shape=(0, 2 * a, -1, 0),
                       name=f"face_rpn_cls_prob_reshape_stride{stride}")
    out = [x, bbox]
    if landmarks:
        out.append(mx.sym.Convolution(data=feat, kernel=(1, 1), pad=(0, 0), stride=(1, 1),
                                      num_filter=10 * a,
                                      name=f"face_rpn_landmark_pred_stride{stride}"))
    return out


def _neck_and_heads(c1, c2, c3, f_neck, f_ssh, names, softmax, landmarks):
    """get_sym_conv with USE_CROP: c1/c2/c3 = the stride 8/16/32 taps; `names` the detector's
    layer names (rf_ or ssh_). Crop and add keep their automatic names (crop0, _plusN)."""
    mx = _mx()
    c3 = _conv_act(c3, names["c3_lateral"], f_neck)
    c3_up = _upsampling(c3, names["c3_up"])
    c2_lateral = _conv_act(c2, names["c2_lateral"], f_neck)
    c3_up = mx.sym.Crop(c3_up, c2_lateral)
    c2 = c2_lateral + c3_up
    c2 = _conv_act(c2, names["c2_aggr"], f_neck, (3, 3), (1, 1))
    c1_lateral = _conv_act(c1, names["c1_red"], f_neck)
    c2_up = _upsampling(c2, names["c2_up"])
    c2_up = mx.sym.Crop(c2_up, c1_lateral)
    c1 = c1_lateral + c2_up
    c1 = _conv_act(c1, names["c1_aggr"], f_neck, (3, 3), (1, 1))
    m1 = _ssh(c1, f_ssh, names["m1"])
    m2 = _ssh(c2, f_ssh, names["m2"])
    m3 = _ssh(c3, f_ssh, names["m3"])
    out = []
    for stride, m in zip(STRIDES, (m3, m2, m1)):
        out += _outputs(m, stride, softmax, landmarks)
    return mx.sym.Group(out)


# ---------------------------------------------------------------------------------------------
# mnet.25

MNET_RF_NAMES = {"c3_lateral": "rf_c3_lateral", "c3_up": "rf_c3_upsampling",
                 "c2_lateral": "rf_c2_lateral", "c2_aggr": "rf_c2_aggr",
                 "c1_red": "rf_c1_red_conv", "c2_up": "rf_c2_upsampling",
                 "c1_aggr": "rf_c1_aggr", "m1": "rf_c1_det", "m2": "rf_c2_det",
                 "m3": "rf_c3_det"}

# (channels, stride) of the 13 dw/pw pairs after conv0 (8 ch): dw keeps the channels
_MNET_PAIRS = [(16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2)] + [(128, 1)] * 5 + \
    [(256, 2), (256, 1)]


def _gluon_conv_bn_relu(data, i, num_filter, kernel, stride, pad, num_group=1):
    """A Gluon block's conv/BN/relu triple with its variables, as `net(mx.sym.var('data'))` of
    gluon mobilenet0.25 names them."""
    mx = _mx()
    p = "mobilenet0_"
    w = mx.sym.Variable(f"{p}conv{i}_weight")
    x = mx.sym.Convolution(data=data, weight=w, kernel=kernel, stride=stride, dilate=(1, 1),
                           pad=pad, num_filter=num_filter, num_group=num_group, no_bias=True,
                           layout="NCHW", name=f"{p}conv{i}_fwd")
    bn = f"{p}batchnorm{i}"
    x = mx.sym.BatchNorm(data=x, gamma=mx.sym.Variable(bn + "_gamma"),
                         beta=mx.sym.Variable(bn + "_beta"),
                         moving_mean=mx.sym.Variable(bn + "_running_mean"),
                         moving_var=mx.sym.Variable(bn + "_running_var"),
                         axis=1, eps=1e-5, momentum=0.9, fix_gamma=False,
                         use_global_stats=False, name=bn + "_fwd")
    return mx.sym.Activation(data=x, act_type="relu", name=f"{p}relu{i}_fwd")


def mnet25_symbol(softmax="softmax", landmarks=True):
    """RetinaFace mnet.25 (§12.1.1); a Group of output_names(landmarks)."""
    mx = _mx()
    with mx.name.NameManager():
        x = mx.sym.Variable("data")
        x = _gluon_conv_bn_relu(x, 0, 8, (3, 3), (2, 2), (1, 1))
        taps, channels = {}, 8
        for k, (out, stride) in enumerate(_MNET_PAIRS):
            x = _gluon_conv_bn_relu(x, 2 * k + 1, channels, (3, 3), (stride, stride), (1, 1),
                                    num_group=channels)
            x = _gluon_conv_bn_relu(x, 2 * k + 2, out, (1, 1), (1, 1), (0, 0))
            channels = out
            taps[2 * k + 2] = x
        return _neck_and_heads(taps[10], taps[22], taps[26], 64, 64, MNET_RF_NAMES, softmax,
                               landmarks)


# ---------------------------------------------------------------------------------------------
# R50

R50_SSH_NAMES = {"c3_lateral": "ssh_c3_lateral", "c3_up": "ssh_c3_up",
                 "c2_lateral": "ssh_c2_lateral", "c2_aggr": "ssh_c2_aggr",
                 "c1_red": "ssh_m1_red_conv", "c2_up": "ssh_m2_red_up",
                 "c1_aggr": "ssh_c1_aggr", "m1": "ssh_m1_det", "m2": "ssh_m2_det",
                 "m3": "ssh_m3_det"}


def _bn(data, name, fix_gamma=False):
    return _mx().sym.BatchNorm(data=data, fix_gamma=fix_gamma, eps=2e-5, momentum=0.9,
                               name=name)


def _relu(data, name):
    return _mx().sym.Activation(data=data, act_type="relu", name=name)


def _conv(data, num_filter, kernel, stride, pad, name):
    return _mx().sym.Convolution(data=data, num_filter=num_filter, kernel=kernel,
                                 stride=stride, pad=pad, no_bias=True, name=name)


def _bottleneck(data, num_filter, stride, dim_match, name, taps):
    """MXNet resnet v2 residual_unit, bottle_neck=True."""
    mid = num_filter // 4
    act1 = _relu(_bn(data, name + "_bn1"), name + "_relu1")
    x = _conv(act1, mid, (1, 1), (1, 1), (0, 0), name + "_conv1")
    act2 = _relu(_bn(x, name + "_bn2"), name + "_relu2")
    taps[name + "_relu2"] = act2
    x = _conv(act2, mid, (3, 3), stride, (1, 1), name + "_conv2")
    x = _relu(_bn(x, name + "_bn3"), name + "_relu3")
    x = _conv(x, num_filter, (1, 1), (1, 1), (0, 0), name + "_conv3")
    shortcut = data if dim_match else _conv(act1, num_filter, (1, 1), stride, (0, 0),
                                            name + "_sc")
    return x + shortcut


def r50_symbol(units=(1, 1, 1, 1), softmax="softmax", landmarks=True, width=1.0):
    """RetinaFace R50 (§12.1.3) with `units` bottleneck units per stage and every channel count
    times `width` (units (3, 4, 6, 3), width 1: the real one); a Group of
    output_names(landmarks)."""
    mx = _mx()
    filters = [int(round(f * width)) for f in (64, 256, 512, 1024, 2048)]
    if any(f % 4 for f in filters):
        raise ValueError(f"width {width}: channel counts {filters} not multiples of 4")
    with mx.name.NameManager():
        x = mx.sym.Variable("data")
        x = _bn(x, "bn_data", fix_gamma=True)
        x = _conv(x, filters[0], (7, 7), (2, 2), (3, 3), "conv0")
        x = _relu(_bn(x, "bn0"), "relu0")
        x = mx.sym.Pooling(data=x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max",
                           name="pooling0")
        taps = {}
        for i, n in enumerate(units):
            s = (1, 1) if i == 0 else (2, 2)
            x = _bottleneck(x, filters[i + 1], s, False, f"stage{i + 1}_unit1", taps)
            for j in range(n - 1):
                x = _bottleneck(x, filters[i + 1], (1, 1), True, f"stage{i + 1}_unit{j + 2}",
                                taps)
        x = _relu(_bn(x, "bn1"), "relu1")
        return _neck_and_heads(taps["stage3_unit1_relu2"], taps["stage4_unit1_relu2"], x,
                               int(round(256 * width)), int(round(512 * width)),
                               R50_SSH_NAMES, softmax, landmarks)


# ---------------------------------------------------------------------------------------------
# seeded weights

def _predictor_inputs(sym):
    """{predictor conv name: internals output name of its input} for the face_rpn_ convs."""
    nodes = json.loads(sym.tojson())["nodes"]
    found = {}
    for n in nodes:
        if n["op"] == "Convolution" and n["name"].startswith("face_rpn_"):
            src = nodes[n["inputs"][0][0]]
            found[n["name"]] = src["name"] + "_output"
    return found


def _conv1x1(x, w, b):
    """A 1x1 convolution in numpy: x (N, C, H, W), w (O, C, 1, 1), b (O,) -> (N, O, H, W)."""
    return np.einsum("nchw,oc->nohw", x, w[:, :, 0, 0]) + b[None, :, None, None]


def seeded_params(sym, data_shape=(4, 3, *CALIB_SIZE), seed=0, cls_spread=2.0,
                  delta_std=0.3, face_fraction=None, images=None, head_images="photos"):
    """(arg_params, aux_params) as float32 numpy dicts for a RetinaFace `sym` (see the module
    docstring): insightface_models.seeded_params on `data_shape` (N seeded random images
    calibrate the BatchNorms; `images` (N, 3, H, W, RGB 0..255), if given, instead), then the
    face_rpn_ predictors rescaled on `head_images`: "photos" = `sample_photos` at data_shape's
    H, W (the photos' features differ from random images' by up to 2-3x in scale, the full-size
    R50's most, so a fraction set on random images does not carry over reliably); "batch" =
    the BatchNorms' batch; or an array."""
    data_shape = tuple(data_shape)
    if images is None:
        images = im.random_images(data_shape[0], seed + 1, data_shape[1], data_shape[2:4])
    images = np.asarray(images, np.float32)
    arg, aux = im.seeded_params(sym, images.shape, seed, images=images)
    if isinstance(head_images, str):
        if head_images not in ("photos", "batch"):
            raise ValueError(f"head_images {head_images!r}: 'photos', 'batch' or an array")
        head_images = sample_photos(data_shape[2:4]) if head_images == "photos" else images
    fractions = {**FACE_FRACTION, **(face_fraction or {})}
    rng = np.random.default_rng(seed + 2)
    inputs = _predictor_inputs(sym)
    internals = sym.get_internals()
    wanted = sorted(set(inputs.values()))
    feats = dict(zip(wanted, (o.astype(np.float64) for o in im.forward_all(
        _mx().sym.Group([internals[o] for o in wanted]), arg, aux, head_images))))
    a = NUM_ANCHORS
    for conv, src in sorted(inputs.items()):
        x = feats[src]
        w, b = arg[conv + "_weight"].astype(np.float64), arg[conv + "_bias"].astype(np.float64)
        if "_cls_score_" in conv:
            stride = int(conv.rsplit("stride", 1)[1])
            # margin of anchor k = fg (channel A + k) - bg (channel k)
            margin = _conv1x1(x, w[a:] - w[:a], b[a:] - b[:a])
            w[a:] = w[:a] + (w[a:] - w[:a]) * (cls_spread / margin.std())
            margin = _conv1x1(x, w[a:] - w[:a], b[a:] - b[:a])
            cut = np.quantile(margin, 1.0 - fractions[stride])
            b[a:] += np.log(FACE_THRESHOLD / (1 - FACE_THRESHOLD)) - cut
        else:
            y = _conv1x1(x, w, b)
            w *= delta_std / y.std()
            b = rng.normal(0, 0.05, size=b.shape)
        arg[conv + "_weight"], arg[conv + "_bias"] = w.astype(np.float32), b.astype(np.float32)
    return arg, aux


# ---------------------------------------------------------------------------------------------
# ready checkpoints and inputs

def build(kind="mnet25", softmax="softmax", landmarks=True, **kw):
    """mnet25_symbol or r50_symbol (kw: units, width; default width 0.25 for r50)."""
    if kind == "mnet25":
        return mnet25_symbol(softmax, landmarks)
    if kind == "r50":
        kw.setdefault("width", 0.25)
        return r50_symbol(softmax=softmax, landmarks=landmarks, **kw)
    raise ValueError(f"kind {kind!r}: 'mnet25' or 'r50'")


def save_retinaface(prefix, kind="mnet25", softmax="softmax", landmarks=True, seed=0,
                    size=CALIB_SIZE, **kw):
    """A seeded RetinaFace checkpoint PREFIX-symbol.json + PREFIX-0000.params: seeded_params
    on a (4, 3, *size) batch, the head on the sample photos at `size`; kw: build's (units,
    width). Returns the symbol path."""
    sym = build(kind, softmax, landmarks, **kw)
    arg, aux = seeded_params(sym, (4, 3, *size), seed)
    return im.save_checkpoint(sym, arg, aux, prefix)[0]


def photo(path, size=None):
    """An image file as the detector's input: cv2 BGR -> RGB float32 0..255, (1, 3, H, W);
    resized to `size` (H, W) if given."""
    import cv2

    img = cv2.imread(str(path))
    if img is None:
        raise FileNotFoundError(path)
    if size is not None:
        img = cv2.resize(img, (size[1], size[0]))
    return img[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)


def sample_photos(size=CALIB_SIZE, names=("astronaut.jpg", "grace_hopper.jpg")):
    """The shipped sample photos as one (N, 3, H, W) RGB 0..255 batch."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "samples"
    return np.concatenate([photo(root / n, size) for n in names])


def face_scores(outputs, landmarks=True):
    """{stride: face probabilities (N, A, H, W)}: channels A..2A-1 of cls_prob_reshape."""
    per = 3 if landmarks else 2
    return {s: outputs[per * i][:, NUM_ANCHORS:] for i, s in enumerate(STRIDES)}
