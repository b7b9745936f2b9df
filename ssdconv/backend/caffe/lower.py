"""Rewrite the IR ops caffe-ssd cannot express into exact compositions of its stock layers.

The emitter writes one caffe layer per IR node, so everything caffe-ssd lacks is decided here,
on a copy of the graph, and each new node keeps the `source` of the node it replaces (per-layer
comparisons still name the MXNet node). Every rewrite is exact, not an approximation:

given                                   result
Clip(0, M), M a whole number           ReLU(x) -> r1; Power(x, shift -M) -> s; ReLU(s) -> r2;
                                        Eltwise SUM (1, -1)(r1, r2)  (relu(x) - relu(x - M),
                                        exact for |x| < 2^24: `_relu_pair_exact`)
Clip(lo, hi), lo != 0 or hi not whole   -max(-max(x, lo), -hi): the constants are Power(x, scale
                                        0, shift lo / -hi), the negations Power(scale -1), the
                                        maxima Eltwise MAX; every step exact for finite x
ShuffleChannel(g) on (1, C, H, W)       Reshape (1, g, C/g, H, W) -> Permute (0, 2, 1, 3, 4) ->
                                        Reshape (1, C, H, W): caffe-ssd has no ShuffleChannel
Pool round='floor', shapes differ       Pool (caffe's ceil rule) -> Slice axis 2 / axis 3 at the
                                        floor size, the extra row/column going to an unused top
                                        (ceil only appends windows; shifting the pad would move
                                        every window)
PriorBox int_scale k > 1                PriorBox with sizes, steps and variances times k (caffe-ssd
                                        casts sizes to int) -> Power(scale 1/k) on the priors
Normalize channel_shared                per-channel Normalize with the scale repeated: caffe-ssd
                                        wants a 0-d scale blob there, which OpenCV cannot load
Normalize across_spatial, rank > 2      Flatten -> Normalize on (1, K), the scale repeated per
                                        element -> Reshape: OpenCV's across_spatial scale is
                                        one value or one per element, never one per channel
Identity (left when it is a graph       Power(power 1, scale 1, shift 0): caffe-ssd has no
output, which drop_noops keeps)         identity layer; this one copies exactly everywhere

What the caffe backend refuses is decided here too (the rule is in `ssdconv.backend`): the graph
is validated first (a broken IR contract is an internal error), then every node a stock layer
cannot reproduce exactly raises `Refused`, and after the last node one `UnsupportedError` lists
them all. The emitter after it only meets nodes it can write.
"""

from __future__ import annotations

import copy

import numpy as np

from ssdconv.ir.graph import Graph, Node
from ssdconv.ir.shapes import pool_out
from ssdconv.ir.validate import validate
from ssdconv.registry import NameAllocator, Registry
from ssdconv.ssd.priorbox import INT_MAX, SIZE_TOL

from .. import Refusals, Refused

#: ReLU6 in caffe-ssd: the exact stock-layer composition, or a ReLU6 layer (OpenCV and
#: caffe2ncnn know it; caffe-ssd does not).
RELU6_MODES = ("compose", "relu6_layer")

_LOWERINGS = Registry("caffe lowering")


class _Options:
    """Per-call settings, the notes collected while lowering, and fresh-name bookkeeping."""

    def __init__(self, graph: Graph, relu6: str, notes: list[str]) -> None:
        self.relu6 = relu6
        self.notes = notes
        self.fresh = NameAllocator.for_graph(graph).fresh


_lowers = _LOWERINGS.register


def lower_for_caffe(
    graph: Graph, relu6: str = "compose", notes: list[str] | None = None
) -> Graph:
    """Return a deep copy of `graph` using only ops the caffe emitter maps to caffe-ssd layers.

    `relu6="relu6_layer"` keeps Clip(0, 6) nodes as they are, for the emitter to write as a
    `ReLU6` layer (OpenCV and caffe2ncnn know it, stock caffe-ssd does not). Remarks about the
    choices taken are appended to `notes` when given. Graph inputs without an Input node get one
    (`Graph.with_input_nodes`). Raises `UnsupportedError` listing every node caffe-ssd cannot
    express. The input graph is not modified.
    """
    if relu6 not in RELU6_MODES:
        raise ValueError(f"relu6 must be one of {RELU6_MODES}, not {relu6!r}")
    g = copy.deepcopy(graph.with_input_nodes())
    validate(g, after="the passes (caffe backend)")
    opts = _Options(g, relu6, notes if notes is not None else [])
    refusals = Refusals("the caffe backend")
    for node in list(g.nodes):
        fn = _LOWERINGS.get(node.op)
        if fn is None:
            continue
        replacement = None
        with refusals.of(node):
            replacement = fn(g, node, opts)
        if replacement is not None:
            i = g.nodes.index(node)
            g.nodes[i : i + 1] = replacement
    refusals.raise_any()
    validate(g, after="caffe lowering")
    return g


def _derived(node: Node, name: str, op: str, inputs: list[str], outputs: list[str],
             **attrs) -> Node:
    """A new node standing in for (part of) `node`, keeping its provenance."""
    return Node(name=name, op=op, inputs=inputs, outputs=outputs, attrs=attrs,
                source=node.source)


def _clip_by_maxima(node: Node, opts: _Options, lo: float, hi: float) -> list[Node]:
    """min(max(x, lo), hi) as -max(-max(x, lo), -hi) from stock layers: each constant is a
    Power with scale 0 (0 * x + c is c for finite x), each negation a Power with scale -1, both
    exact, and Eltwise MAX picks a value; nothing rounds. (An infinite x gives NaN: 0 * inf.)"""
    x, (y,) = node.inputs[0], node.outputs
    low, lifted, neg, high, capped = (opts.fresh(f"{y}_{tag}") for tag in (
        "min", "max_min", "neg", "neg_max", "neg_clip"))
    return [
        _derived(node, low, "Power", [x], [low], power=1.0, scale=0.0, shift=lo),
        _derived(node, lifted, "Eltwise", [x, low], [lifted], operation="max", coeffs=()),
        _derived(node, neg, "Power", [lifted], [neg], power=1.0, scale=-1.0, shift=0.0),
        _derived(node, high, "Power", [x], [high], power=1.0, scale=0.0, shift=-hi),
        _derived(node, capped, "Eltwise", [neg, high], [capped], operation="max", coeffs=()),
        _derived(node, node.name, "Power", [capped], [y], power=1.0, scale=-1.0, shift=0.0),
    ]


def _relu_pair_exact(m: float) -> bool:
    """Whether relu(x) - relu(x - M) is min(max(x, 0), M) on every |x| < 2^24: x - M is exact
    when M is a multiple of x's ulp (at most 1 there), so when M is a whole number; a fraction
    such as 0.1 is not (x - 0.1 rounds for x > 0.2: measured 99.6 % of x in [0, 50] off by up
    to 1.5e-6). Beyond 2^24 * 2^k (2^k the largest power of two dividing M) it rounds too."""
    return float(np.float32(m)).is_integer() and m < 2.0**24


@_lowers("Clip")
def _clip(g: Graph, node: Node, opts: _Options) -> list[Node] | None:
    lo, hi = float(node.attrs["min"]), float(node.attrs["max"])
    if lo != 0.0 or not hi > 0.0 or not _relu_pair_exact(hi):
        return _clip_by_maxima(node, opts, lo, hi)
    if opts.relu6 == "relu6_layer":
        if hi == 6.0:
            return None
        opts.notes.append(
            f"{node.name}: Clip(0, {hi}) is not a ReLU6, composed from stock layers instead"
        )
    x, (y,) = node.inputs[0], node.outputs
    r1, shifted, r2 = (opts.fresh(f"{y}_{tag}") for tag in ("relu", "shift", "shift_relu"))
    # Never in place: each step gets its own blob, so x stays readable for the other branch.
    n1 = _derived(node, r1, "ReLU", [x], [r1])
    n2 = _derived(node, shifted, "Power", [x], [shifted], power=1.0, scale=1.0, shift=-hi)
    n3 = _derived(node, r2, "ReLU", [shifted], [r2])
    total = _derived(node, node.name, "Eltwise", [r1, r2], [y], operation="sum",
                     coeffs=(1.0, -1.0))
    return [n1, n2, n3, total]


@_lowers("Pool")
def _pool(g: Graph, node: Node, opts: _Options) -> list[Node] | None:
    a = node.attrs
    if a["global_pool"]:
        return None
    if any(p >= k for p, k in zip(a["pad"], a["kernel"])):
        raise Refused(f"pad {a['pad']} not below kernel {a['kernel']}: caffe requires it")
    if a["method"] == "avg" and not a["count_include_pad"] and any(a["pad"]):
        raise Refused("average pooling without the padding in the count: caffe always counts it")
    if a["round"] == "ceil":
        return None
    _, _, h, w = g.shapes[node.inputs[0]]
    sizes = {}
    for i, (axis, size) in enumerate(((2, h), (3, w))):
        k, s, p = a["kernel"][i], a["stride"][i], a["pad"][i]
        floor, ceil = pool_out(size, k, s, p, "floor"), pool_out(size, k, s, p, "ceil")
        if ceil < floor:
            raise RuntimeError(f"{node.name}: caffe's ceil rule gives {ceil} < floor {floor}")
        if ceil != floor:
            sizes[axis] = floor
    pooled = copy.copy(node)
    pooled.attrs = {**a, "round": "ceil"}
    if not sizes:
        return [pooled]
    (final,) = node.outputs
    blob = opts.fresh(f"{final}_ceil")
    pooled.outputs = [blob]
    out: list[Node] = [pooled]
    for axis, floor in sizes.items():
        tag = "h" if axis == 2 else "w"
        kept = final if axis == max(sizes) else opts.fresh(f"{final}_crop_{tag}")
        drop = opts.fresh(f"{node.name}_drop_{tag}")
        out.append(_derived(node, opts.fresh(f"{node.name}_crop_{tag}"), "Slice", [blob],
                            [kept, drop], axis=axis, slice_points=(floor,)))
        blob = kept
    return out


def _integral(what: str, value: float) -> float:
    if abs(value - round(value)) > SIZE_TOL:
        raise Refused(f"{what} {value:g} (times int_scale) is not an integer, and caffe-ssd "
                      "truncates it; an int_scale that makes every size integral is needed")
    return float(round(value))


@_lowers("PriorBox")
def _priorbox(g: Graph, node: Node, opts: _Options) -> list[Node] | None:
    a = dict(node.attrs)
    k = int(a["int_scale"])  # a positive integer: validate checked it
    if not (a["step_h"] and a["step_w"]) or a["step_h"] <= 0 or a["step_w"] <= 0:
        raise Refused("no explicit positive step; the int_scale rewrite needs one")
    _, _, ih, iw = g.shapes[node.inputs[1]]
    if (a["img_h"] and a["img_h"] != ih) or (a["img_w"] and a["img_w"] != iw):
        raise Refused(f"image size ({a['img_h']}, {a['img_w']}) differs from the image blob "
                      f"({ih}, {iw}); OpenCV always takes it from the blob")
    mn = _integral("min_size", a["min_size"] * k)
    mx = _integral("max_size", a["max_size"] * k) if a["max_size"] else None
    if mx is not None and not mx > mn:
        raise Refused("max_size does not exceed min_size, which caffe-ssd requires")
    if mx is not None and mn * mx > INT_MAX:
        raise Refused(f"min*max size {mn * mx:g} overflows caffe-ssd's int")
    if k > 1 and a["clip"]:
        raise Refused(f"clip cannot be combined with int_scale {k}")
    a.update(min_size=mn, max_size=mx, int_scale=1)
    scaled = copy.copy(node)
    scaled.attrs = a
    if k == 1:
        return [scaled]
    a.update(step_h=a["step_h"] * k, step_w=a["step_w"] * k,
             variance=tuple(float(v) * k for v in a["variance"]))
    (final,) = node.outputs
    scaled.outputs = [opts.fresh(f"{final}_x{k}")]
    unscale = _derived(node, opts.fresh(f"{node.name}_unscale"), "Power", scaled.outputs,
                       [final], power=1.0, scale=1.0 / k, shift=0.0)
    return [scaled, unscale]


def _normalize_flat(g: Graph, node: Node, opts: _Options, scale: np.ndarray) -> list[Node]:
    """Normalize across_spatial of a (1, C, H, W) blob as Flatten -> Normalize of (1, CHW)
    with the per-channel scale repeated over H*W -> Reshape: OpenCV's across_spatial takes a
    scale of one value or of C*H*W (normalize_bbox_layer.cpp), never C; on (1, K) both
    runtimes sum the same K squares and scale element k by scale k."""
    shape = g.shapes[node.inputs[0]]
    (y,) = node.outputs
    flat, normed = opts.fresh(f"{y}_flat"), opts.fresh(f"{y}_normed")
    per_element = np.repeat(scale, int(np.prod(shape[2:])))
    norm = _derived(node, normed, "Normalize", [flat], [normed], **{
        **node.attrs, "channel_shared": False})
    norm.weights = {"scale": per_element}
    return [_derived(node, flat, "Flatten", list(node.inputs), [flat], axis=1, end_axis=-1),
            norm,
            _derived(node, node.name, "Reshape", [normed], [y], dims=(0, *shape[1:]))]


@_lowers("Normalize")
def _normalize(g: Graph, node: Node, opts: _Options) -> list[Node] | None:
    shape = g.shapes[node.inputs[0]]
    scale = np.asarray(node.weights["scale"]).ravel()
    if node.attrs["channel_shared"]:
        if scale.size != 1 and not np.all(scale == scale[0]):
            raise RuntimeError(f"{node.name}: channel_shared Normalize with differing scales")
        scale = np.full(shape[1], scale[0], scale.dtype)
    if node.attrs["across_spatial"] and len(shape) > 2:
        return _normalize_flat(g, node, opts, scale)
    if not node.attrs["channel_shared"]:
        return None
    per_channel = copy.copy(node)
    per_channel.attrs = {**node.attrs, "channel_shared": False}
    per_channel.weights = {**node.weights, "scale": scale}
    return [per_channel]


@_lowers("DetectionOutput")
def _detection_output(g: Graph, node: Node, opts: _Options) -> list[Node] | None:
    if node.attrs["keep_top_k"] <= 0:
        raise Refused(f"keep_top_k {node.attrs['keep_top_k']}: OpenCV needs a positive one")
    return None


@_lowers("Yolov3DetectionOutput")
def _yolov3_detection_output(g: Graph, node: Node, opts: _Options) -> list[Node] | None:
    raise Refused("ncnn's Yolov3DetectionOutput has no caffe-ssd layer; convert the caffe model "
                  "without --yolo-head native")


@_lowers("SsdDetections", "YoloDetections")
def _gluon_head(g: Graph, node: Node, opts: _Options) -> list[Node] | None:
    raise Refused("GluonCV's own post-processing (the head the ONNX target writes) has no "
                  "caffe-ssd layers; the caffe target writes the family's DetectionOutput head")


@_lowers("ShuffleChannel")
def _shuffle_channel(g: Graph, node: Node, opts: _Options) -> list[Node] | None:
    """The channel shuffle as the reshape/transpose/reshape it is: OpenCV and caffe-ssd permute
    5-D blobs; only data moves."""
    _, c, h, w = g.shapes[node.inputs[0]]
    group = int(node.attrs["group"])
    (y,) = node.outputs
    split, swapped = opts.fresh(f"{y}_groups"), opts.fresh(f"{y}_swapped")
    return [
        _derived(node, split, "Reshape", list(node.inputs), [split],
                 dims=(1, group, c // group, h, w)),
        _derived(node, swapped, "Permute", [split], [swapped], order=(0, 2, 1, 3, 4)),
        _derived(node, node.name, "Reshape", [swapped], [y], dims=(1, c, h, w)),
    ]


@_lowers("Identity")
def _identity(g: Graph, node: Node, opts: _Options) -> list[Node] | None:
    copy_ = _derived(node, node.name, "Power", list(node.inputs), list(node.outputs),
                     power=1.0, scale=1.0, shift=0.0)
    return [copy_]
