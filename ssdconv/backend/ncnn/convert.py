"""One small converter per IR op: IR node -> ncnn layers with named params and weights.

Why a registry of functions: the op vocabulary grows and each op's translation has its own
traps (checked against ncnn's `src/layer/*.cpp`); a dict keyed by op keeps each trap next to the
op it belongs to and makes a missing op a refusal, never a guess. Converters are pure: they read
the node and the graph's shapes, write nothing, and note any non-obvious choice in the context so
it can go into the manifest. They see validated IR only (`ssdconv.backend`'s rule): a valid node
ncnn cannot run exactly raises `Refused`; a broken invariant raises RuntimeError.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from ...ir.graph import Graph, Node
from ...registry import Registry
from ...ssd.prior_counts import expanded_aspect_ratios, priors_per_cell
from .. import Refused
from . import tables
from .layout import batchless, ncnn_axis, permute_order_type, shape_params
from .writer import NcnnLayer


@dataclass
class Context:
    """Per-conversion state: the graph (with `shapes`) and the list of choices made."""

    graph: Graph
    choices: list[str] = field(default_factory=list)

    def shape(self, blob: str) -> tuple[int, ...]:
        return tuple(int(s) for s in self.graph.shapes[blob])

    def note(self, node: Node, text: str) -> None:
        self.choices.append(f"{node.name} ({node.op}): {text}")


CONVERTERS = Registry("ncnn converter")
converter = CONVERTERS.register


def _layer(node: Node, params: dict | None = None, weights: list | None = None,
           type_: str | None = None) -> NcnnLayer:
    return NcnnLayer(
        type=type_ or tables.LAYER_TYPES[node.op],
        name=node.name,
        inputs=list(node.inputs),
        outputs=list(node.outputs),
        params=params or {},
        weights=weights or [],
    )


def _weight(node: Node, role: str, size: int) -> np.ndarray:
    if role not in node.weights:
        raise RuntimeError(f"{node.name} ({node.op}) lacks weight {role!r}")
    w = np.asarray(node.weights[role], dtype=np.float64)
    if w.size != size:
        raise RuntimeError(f"{node.name}: weight {role} has {w.size} values, expected {size}")
    return w


@converter("Input")
def _input(node: Node, ctx: Context) -> list[NcnnLayer]:
    return [_layer(node, shape_params(node.attrs["shape"]))]


@converter("Conv")
def _conv(node: Node, ctx: Context) -> list[NcnnLayer]:
    a = node.attrs
    cin = batchless(ctx.shape(node.inputs[0]))[0]
    group, cout = int(a["group"]), int(a["num_output"])
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = a["kernel"], a["stride"], a["pad"], a["dilation"]
    weight = _weight(node, "weight", cout * (cin // group) * kh * kw)
    params = {
        "num_output": cout, "kernel_w": kw, "kernel_h": kh, "dilation_w": dw, "dilation_h": dh,
        "stride_w": sw, "stride_h": sh, "pad_left": pw, "pad_right": pw, "pad_top": ph,
        "pad_bottom": ph, "bias_term": int(bool(a["bias"])), "weight_data_size": weight.size,
    }
    weights = [weight] + ([_weight(node, "bias", cout)] if a["bias"] else [])
    if group == 1:
        return [_layer(node, params, weights)]
    params["group"] = group
    return [_layer(node, params, weights, type_=tables.GROUPED_CONV_TYPE)]


@converter("InnerProduct")
def _inner_product(node: Node, ctx: Context) -> list[NcnnLayer]:
    """ncnn's InnerProduct reads a (c, h, w) Mat channel by channel, row by row: the C-major
    flattening of the IR (innerproduct.cpp); its output is a 1-D Mat w = O, the IR's (1, O).
    The weight buffer is a flagged one (`mb.load(weight_data_size, 0)`), the bias raw."""
    a = node.attrs
    rest = batchless(ctx.shape(node.inputs[0]))
    k = int(np.prod(rest))
    if len(rest) == 2 and rest[1] == k:
        raise Refused(f"InnerProduct on a {ctx.shape(node.inputs[0])} blob: ncnn reads an h=1 "
                      "Mat whose w is the input size as one gemm row and writes a 2-D (1, O) "
                      "Mat, not the 1-D one its readers expect")
    cout = int(a["num_output"])
    weight = _weight(node, "weight", cout * k)
    params = {"num_output": cout, "bias_term": int(bool(a["bias"])),
              "weight_data_size": weight.size}
    weights = [weight] + ([_weight(node, "bias", cout)] if a["bias"] else [])
    return [_layer(node, params, weights)]


@converter("BatchNorm")
def _batchnorm(node: Node, ctx: Context) -> list[NcnnLayer]:
    c = batchless(ctx.shape(node.inputs[0]))[0]
    weights = [_weight(node, role, c) for role in ("gamma", "mean", "var", "beta")]
    return [_layer(node, {"channels": c, "eps": float(node.attrs["eps"])}, weights)]


@converter("Scale")
def _scale(node: Node, ctx: Context) -> list[NcnnLayer]:
    """Weights scale ncnn's outermost axis (c; h of a (1, N, C) blob; each element of w = K).
    A second input (1, N) is ncnn's scale_data_size -233: row n of the (h=N, w) Mat times s[n]."""
    c = batchless(ctx.shape(node.inputs[0]))[0]
    if len(node.inputs) == 2:
        return [_layer(node, {"scale_data_size": tables.UNSET, "bias_term": 0})]
    bias = bool(node.attrs["bias"])
    weights = [_weight(node, "scale", c)] + ([_weight(node, "bias", c)] if bias else [])
    return [_layer(node, {"scale_data_size": c, "bias_term": int(bias)}, weights)]


@converter("ReLU")
def _relu(node: Node, ctx: Context) -> list[NcnnLayer]:
    return [_layer(node, {"slope": float(node.attrs.get("negative_slope", 0.0))})]


@converter("PReLU")
def _prelu(node: Node, ctx: Context) -> list[NcnnLayer]:
    """num_slope 1 shares the slope; else one per outer ncnn axis (c, or w of a (1, K) blob:
    prelu.cpp indexes slope_data by channel, or by element of a 1-D Mat)."""
    c = batchless(ctx.shape(node.inputs[0]))[0]
    size = np.asarray(node.weights.get("slope", ())).size
    if size not in (1, c):
        raise RuntimeError(f"{node.name}: {size} slopes for {c} channels")
    return [_layer(node, {"num_slope": size}, [_weight(node, "slope", size)])]


@converter("ELU")
def _elu(node: Node, ctx: Context) -> list[NcnnLayer]:
    return [_layer(node, {"alpha": float(node.attrs["alpha"])})]


@converter("TanH")
def _tanh(node: Node, ctx: Context) -> list[NcnnLayer]:
    return [_layer(node)]


@converter("Clip")
def _clip(node: Node, ctx: Context) -> list[NcnnLayer]:
    return [_layer(node, {"min": float(node.attrs["min"]), "max": float(node.attrs["max"])})]


def _pool_len(size: int, k: int, s: int, p: int, mode: str) -> int:
    """ncnn's output length: 'full' pads the tail up to a whole stride (plain ceil, without
    Caffe's rule that the last window must start inside the image or the leading pad)."""
    span = size + 2 * p - k
    return (-(-span // s) if mode == "full" else span // s) + 1


@converter("Pool")
def _pool(node: Node, ctx: Context) -> list[NcnnLayer]:
    a = node.attrs
    ptype = tables.POOL_TYPES[a["method"]]
    if a["global_pool"]:
        # ncnn's global_pooling=1 returns a 1-D Mat (w=C); adaptive 1x1 keeps (C,1,1) as in Caffe.
        ctx.note(node, "global pooling written as adaptive pooling to 1x1 to keep the C,1,1 shape")
        return [_layer(node, {"pooling_type": ptype, "adaptive_pooling": 1, "out_w": 1,
                              "out_h": 1})]
    _, _, h, w = ctx.shape(node.inputs[0])
    _, _, oh, ow = ctx.shape(node.outputs[0])
    (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["pad"]
    # How far the last window reaches past the image: at most the pad for floor (negative when
    # floor leaves rows unused), maybe more for ceil. ncnn pads that tail with -FLT_MAX (max)
    # or leaves it out of the count (avg).
    tail_h, tail_w = (oh - 1) * sh + kh - h - ph, (ow - 1) * sw + kw - w - pw
    mode = "valid" if a["round"] == "floor" else "full"
    bottom, right = ph, pw
    if (_pool_len(h, kh, sh, ph, mode), _pool_len(w, kw, sw, pw, mode)) != (oh, ow):
        if min(tail_h, tail_w) < 0:
            raise RuntimeError(f"{node.name}: pooling output {oh}x{ow} unreachable from {h}x{w}")
        # Caffe's ceil drops a last window that would start in the padding; ncnn's 'full' keeps
        # it. Explicit tail pads in 'valid' mode give exactly the IR's window count.
        mode, bottom, right = "valid", tail_h, tail_w
        ctx.note(node, f"pooling written as pad_mode valid with tail pads bottom={bottom} "
                       f"right={right} to match the {oh}x{ow} output (Caffe's last-window rule)")
    include_pad = bool(a["count_include_pad"])
    if a["method"] == "avg" and include_pad and (tail_h > ph or tail_w > pw):
        raise Refused("average pooling counting padding with windows past the padded edge: "
                      "ncnn divides by the full window there, Caffe by the clipped window")
    params = {
        "pooling_type": ptype, "kernel_w": kw, "kernel_h": kh, "stride_w": sw, "stride_h": sh,
        "pad_left": pw, "pad_right": right, "pad_top": ph, "pad_bottom": bottom,
        "global_pooling": 0, "pad_mode": tables.POOL_PAD_MODES[mode],
        "avgpool_count_include_pad": int(include_pad),
    }
    return [_layer(node, params)]


@converter("Eltwise")
def _eltwise(node: Node, ctx: Context) -> list[NcnnLayer]:
    op, coeffs = node.attrs["operation"], tuple(node.attrs["coeffs"] or ())
    params: dict = {"op_type": tables.ELTWISE_OPS[op]}
    if coeffs:
        params["coeffs"] = [float(c) for c in coeffs]
    return [_layer(node, params)]


@converter("Concat")
def _concat(node: Node, ctx: Context) -> list[NcnnLayer]:
    return [_layer(node, {"axis": ncnn_axis(node.attrs["axis"], ctx.shape(node.inputs[0]))})]


@converter("Permute")
def _permute(node: Node, ctx: Context) -> list[NcnnLayer]:
    return [_layer(node, {"order_type": permute_order_type(node.attrs["order"])})]


@converter("ShuffleChannel")
def _shuffle_channel(node: Node, ctx: Context) -> list[NcnnLayer]:
    """ncnn's output channel g * j + i is input channel K * i + j (shufflechannel.cpp, reverse
    0): the IR's rule."""
    return [_layer(node, {"group": int(node.attrs["group"]), "reverse": 0})]


def _reshape_to_output(node: Node, ctx: Context) -> NcnnLayer:
    """A Reshape to the concrete output shape: no 0/-1 codes, whose ncnn meaning (0 = keep the
    ncnn axis at the same position counted from w) differs from Caffe's (0 = copy the axis at the
    same position counted from the batch) as soon as the ranks differ."""
    batchless(ctx.shape(node.inputs[0]))
    return _layer(node, shape_params(ctx.shape(node.outputs[0])),
                  type_=tables.LAYER_TYPES["Reshape"])


@converter("Flatten")
def _flatten(node: Node, ctx: Context) -> list[NcnnLayer]:
    batchless(ctx.shape(node.inputs[0]))
    if len(ctx.shape(node.outputs[0])) == 2:  # (1, N): ncnn's Flatten always makes a 1-D w=N
        return [_layer(node)]
    ctx.note(node, "partial Flatten written as Reshape to the concrete output shape")
    return [_reshape_to_output(node, ctx)]


@converter("Reshape")
def _reshape(node: Node, ctx: Context) -> list[NcnnLayer]:
    return [_reshape_to_output(node, ctx)]


@converter("Softmax")
def _softmax(node: Node, ctx: Context) -> list[NcnnLayer]:
    axis = ncnn_axis(node.attrs["axis"], ctx.shape(node.inputs[0]))
    # fixbug0=1 always: without it ncnn refuses any axis != 0 ("param is too old").
    return [_layer(node, {"axis": axis, "fixbug0": 1})]


@converter("Normalize")
def _normalize(node: Node, ctx: Context) -> list[NcnnLayer]:
    shape = ctx.shape(node.inputs[0])
    shared = bool(node.attrs["channel_shared"])
    whole = bool(node.attrs["across_spatial"]) and shared  # one sum, one scale: any rank
    if len(shape) != 4 and not whole:
        raise Refused(f"Normalize on a blob of shape {shape}; ncnn's is defined on C,H,W "
                      "(except across_spatial with one shared scale)")
    size = 1 if shared else shape[1]
    params = {
        "across_spatial": int(bool(node.attrs["across_spatial"])), "channel_shared": int(shared),
        "eps": float(node.attrs["eps"]), "scale_data_size": size, "across_channel": 1,
        "eps_mode": tables.NORMALIZE_EPS_MODE_CAFFE,
    }
    return [_layer(node, params, [_weight(node, "scale", size)])]


@converter("Slice")
def _slice(node: Node, ctx: Context) -> list[NcnnLayer]:
    shape = ctx.shape(node.inputs[0])
    axis = ncnn_axis(node.attrs["axis"], shape)
    points = [0, *(int(p) for p in node.attrs["slice_points"]), shape[axis + 1]]
    sizes = [b - a for a, b in itertools.pairwise(points)]
    return [_layer(node, {"slices": sizes, "axis": axis})]


@converter("Power")
def _power(node: Node, ctx: Context) -> list[NcnnLayer]:
    a = node.attrs
    return [_layer(node, {"power": float(a["power"]), "scale": float(a["scale"]),
                          "shift": float(a["shift"])})]


@converter("Sigmoid")
def _sigmoid(node: Node, ctx: Context) -> list[NcnnLayer]:
    return [_layer(node)]


@converter("Exp")
def _exp(node: Node, ctx: Context) -> list[NcnnLayer]:
    return [_layer(node, {"base": tables.EXP_BASE_E, "scale": 1.0, "shift": 0.0})]


def nearest_source_rows(size: int, scale: int) -> np.ndarray:
    """The input row ncnn's nearest Interp reads for each of `size * scale` output rows:
    min((int)(y * (1.f / scale)), size - 1), in float32 as interp.cpp computes it."""
    step = np.float32(1.0) / np.float32(scale)
    rows = (np.arange(size * scale, dtype=np.float32) * step).astype(np.int64)
    return np.minimum(rows, size - 1)


@converter("Upsample")
def _upsample(node: Node, ctx: Context) -> list[NcnnLayer]:
    """Interp nearest with the scale factors (not an output size: w/outw would round the same
    way, but the factor is the IR's own number). Exact only if float32 1/s times y truncates
    to y // s on every row, which is checked here, not assumed."""
    s = int(node.attrs["scale"])
    _, _, h, w = ctx.shape(node.inputs[0])
    for size in {h, w}:
        if not np.array_equal(nearest_source_rows(size, s), np.arange(size * s) // s):
            raise Refused(f"ncnn's nearest Interp with scale {s} on {size} rows does not pick "
                          "row i // s for every output row (float32 rounding of 1/s)")
    return [_layer(node, {"resize_type": tables.INTERP_NEAREST, "height_scale": float(s),
                          "width_scale": float(s)})]


def _image_size(node: Node, ctx: Context) -> tuple[int, int]:
    """Explicit ints: the IR's img_h/img_w if set, else the image blob's size (Caffe's rule)."""
    _, _, h, w = ctx.shape(node.inputs[1])
    ih = node.attrs["img_h"] or h
    iw = node.attrs["img_w"] or w
    if not float(ih).is_integer() or not float(iw).is_integer():
        raise Refused(f"image size {ih}x{iw} is not integral; ncnn's PriorBox takes ints")
    return int(ih), int(iw)


@converter("PriorBox")
def _priorbox(node: Node, ctx: Context) -> list[NcnnLayer]:
    a = node.attrs
    # ncnn flips without de-duplicating, so (2, 0.5) with flip would give 5 priors in ncnn and 3
    # in caffe-ssd; the expanded list written with flip=0 gives caffe-ssd's priors in its order.
    ratios = expanded_aspect_ratios(a["aspect_ratios"], bool(a["flip"]))
    _, _, fh, fw = ctx.shape(node.inputs[0])
    per_cell = priors_per_cell(a["max_size"], a["aspect_ratios"], bool(a["flip"]))
    if ctx.shape(node.outputs[0]) != (1, 2, fh * fw * per_cell * 4):
        raise RuntimeError(f"{node.name}: IR shape {ctx.shape(node.outputs[0])} disagrees with "
                           f"{per_cell} priors per cell on {fh}x{fw}")
    img_h, img_w = _image_size(node, ctx)
    variance = [float(v) for v in a["variance"]]
    steps = [float(a["step_w"] or 0.0), float(a["step_h"] or 0.0)]
    unset = float(tables.UNSET)  # Caffe's default step: image size / feature size
    # int_scale is ignored on purpose: it exists only for caffe-ssd's int cast of sizes.
    params = {
        "min_sizes": [float(a["min_size"])],
        **({"max_sizes": [float(a["max_size"])]} if a["max_size"] else {}),
        **({"aspect_ratios": ratios} if ratios else {}),
        "variance0": variance[0], "variance1": variance[1], "variance2": variance[2],
        "variance3": variance[3], "flip": 0, "clip": int(bool(a["clip"])),
        "image_width": img_w, "image_height": img_h,
        "step_width": steps[0] or unset, "step_height": steps[1] or unset,
        "offset": float(a["offset"]), "step_mmdetection": 0, "center_mmdetection": 0,
    }
    return [_layer(node, params)]


@converter("DetectionOutput")
def _detection_output(node: Node, ctx: Context) -> list[NcnnLayer]:
    a = node.attrs
    fixed = {"share_location": True, "background_label_id": 0, "code_type": "CENTER_SIZE"}
    for key, value in fixed.items():
        if a[key] != value:
            raise Refused(f"{key}={a[key]!r}; ncnn's DetectionOutput is fixed to {value!r}")
    classes = int(a["num_classes"])
    n_priors = ctx.shape(node.inputs[2])[2] // 4  # (1, 2, 4N): the shape rule checked it
    top_k, keep_top_k = int(a["top_k"]), int(a["keep_top_k"])
    # ncnn does vector.resize(top_k) whenever top_k < count: -1 becomes SIZE_MAX and aborts.
    # "No limit" is the largest count that can occur: all priors for one class, all classes.
    if top_k < 0:
        top_k = n_priors
        ctx.note(node, f"top_k -1 written as {top_k} (every prior)")
    if keep_top_k < 0:
        keep_top_k = n_priors * (classes - 1)
        ctx.note(node, f"keep_top_k -1 written as {keep_top_k} (every prior of every class)")
    threshold = a["confidence_threshold"]
    if threshold is None:  # caffe-ssd's unset value: keep every score
        threshold = -float(np.finfo(np.float32).max)
    params = {
        "num_class": classes, "nms_threshold": float(a["nms_threshold"]), "nms_top_k": top_k,
        "keep_top_k": keep_top_k, "confidence_threshold": threshold,
    }
    return [_layer(node, params)]


@converter("Yolov3DetectionOutput")
def _yolov3_detection_output(node: Node, ctx: Context) -> list[NcnnLayer]:
    a = node.attrs
    # ncnn sizes each input's boxes by net_w = (int)(anchors_scale * w): a stride that does not
    # give a whole input width there would silently scale every box of that input.
    for blob, stride in zip(node.inputs, a["anchors_scale"]):
        _, _, h, w = ctx.shape(blob)
        if not (float(stride) * w).is_integer() or not (float(stride) * h).is_integer():
            raise Refused(f"stride {stride} times the {h}x{w} grid of {blob} is not a whole "
                          "input size; ncnn truncates it")
    params = {
        "num_class": int(a["num_class"]), "num_box": int(a["num_box"]),
        "confidence_threshold": float(a["confidence_threshold"]),
        "nms_threshold": float(a["nms_threshold"]),
        "biases": [float(b) for b in a["biases"]],
        "mask": [float(m) for m in a["mask"]],
        "anchors_scale": [float(s) for s in a["anchors_scale"]],
    }
    return [_layer(node, params)]
