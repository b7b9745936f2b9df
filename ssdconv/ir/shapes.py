"""Shape inference over the IR, with Caffe's semantics.

Passes and lowerings add nodes (a Slice after a floor pooling, a Power after a PriorBox); this
recomputes every blob shape from the graph inputs so emitters and checks can rely on
`graph.shapes`. Rules are registered per op in a table, not chosen by an if/elif chain. A rule
refuses (ValueError) what it cannot compute from: an axis out of range, an order that is not a
permutation, slice points outside the axis, blobs that do not fit together; such a graph breaks
the IR contract (`ssdconv.ir.ops`), a bug in ssdconv.
"""

from __future__ import annotations

import math

from ..registry import Registry
from ..ssd.prior_counts import priors_per_cell
from .graph import Graph

Shape = tuple[int, ...]
_RULES = Registry("shape rule")
rule = _RULES.register


def _axis(node, axis: int, rank: int) -> int:
    """`axis` (negative counts from the end) as a non-negative index, or ValueError."""
    if not -rank <= axis < rank:
        raise ValueError(f"{node.name}: axis {axis} out of range for rank {rank}")
    return axis % rank


def pool_out(size: int, k: int, s: int, p: int, rounding: str) -> int:
    """Output length of a pooling window walk; 'ceil' applies Caffe's last-window rule."""
    if rounding == "floor":
        return (size + 2 * p - k) // s + 1
    out = int(math.ceil((size + 2 * p - k) / s)) + 1
    if p > 0 and (out - 1) * s >= size + p:
        out -= 1
    return out


@rule("Input")
def _input(node, ins):
    return [tuple(node.attrs["shape"])]


@rule("Conv")
def _conv(node, ins):
    n, c, h, w = ins[0]
    group = node.attrs["group"]
    if c % group or node.attrs["num_output"] % group:
        raise ValueError(f"{node.name}: group {group} does not divide {c} inputs and "
                         f"{node.attrs['num_output']} outputs")
    kh, kw = node.attrs["kernel"]
    sh, sw = node.attrs["stride"]
    ph, pw = node.attrs["pad"]
    dh, dw = node.attrs["dilation"]
    oh = (h + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    ow = (w + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    return [(n, node.attrs["num_output"], oh, ow)]


@rule("Identity", "BatchNorm", "ReLU", "Clip", "Normalize", "Power", "Sigmoid", "Exp", "ELU",
      "TanH")
def _same(node, ins):
    return [ins[0]]


@rule("InnerProduct")
def _inner_product(node, ins):
    """(1, O) from any (1, ...) blob, whose non-batch axes the weight (O, K) must cover."""
    k = math.prod(ins[0][1:])
    weight = node.weights.get("weight")
    if len(ins[0]) < 2 or (weight is not None and tuple(weight.shape) != (
            node.attrs["num_output"], k)):
        raise ValueError(f"{node.name}: InnerProduct weight of shape "
                         f"{None if weight is None else weight.shape} does not map {ins[0]} to "
                         f"{node.attrs['num_output']} outputs")
    return [(ins[0][0], node.attrs["num_output"])]


@rule("PReLU")
def _prelu(node, ins):
    """One slope per channel (axis 1) or one for all."""
    slope = node.weights.get("slope")
    if len(ins[0]) < 2 or (slope is not None and slope.size not in (1, ins[0][1])):
        raise ValueError(f"{node.name}: {None if slope is None else slope.size} PReLU slopes "
                         f"for a blob of shape {ins[0]}")
    return [ins[0]]


@rule("ShuffleChannel")
def _shuffle_channel(node, ins):
    group = node.attrs["group"]
    if len(ins[0]) != 4 or group < 1 or ins[0][1] % group:
        raise ValueError(f"{node.name}: cannot shuffle {ins[0]} in {group} groups (needs "
                         "(1, C, H, W) with group dividing C)")
    return [ins[0]]


@rule("Scale")
def _scale(node, ins):
    """One input: shape kept. Two: the factors s (1, N) must match the first two axes of x."""
    if len(ins) == 2 and (len(ins[0]) < 2 or tuple(ins[1]) != tuple(ins[0][:2])):
        raise ValueError(f"{node.name}: Scale factors of shape {ins[1]} do not match the first "
                         f"two axes of {ins[0]}")
    return [ins[0]]


@rule("Upsample")
def _upsample(node, ins):
    if len(ins[0]) != 4:
        raise ValueError(f"{node.name}: Upsample needs a 4-D (1,C,H,W) blob, not {ins[0]}")
    n, c, h, w = ins[0]
    s = node.attrs["scale"]
    return [(n, c, h * s, w * s)]


@rule("Softmax")
def _softmax(node, ins):
    _axis(node, node.attrs["axis"], len(ins[0]))
    return [ins[0]]


@rule("Pool")
def _pool(node, ins):
    n, c, h, w = ins[0]
    if node.attrs["global_pool"]:
        return [(n, c, 1, 1)]
    kh, kw = node.attrs["kernel"]
    sh, sw = node.attrs["stride"]
    ph, pw = node.attrs["pad"]
    r = node.attrs["round"]
    return [(n, c, pool_out(h, kh, sh, ph, r), pool_out(w, kw, sw, pw, r))]


@rule("Eltwise")
def _eltwise(node, ins):
    if any(s != ins[0] for s in ins):
        raise ValueError(f"{node.name}: Eltwise inputs differ in shape: {ins}")
    return [ins[0]]


@rule("Concat")
def _concat(node, ins):
    axis = _axis(node, node.attrs["axis"], len(ins[0]))
    if any(len(s) != len(ins[0]) or s[:axis] + s[axis + 1:] != ins[0][:axis] + ins[0][axis + 1:]
           for s in ins):
        raise ValueError(f"{node.name}: Concat inputs {ins} differ off axis {axis}")
    out = list(ins[0])
    out[axis] = sum(s[axis] for s in ins)
    return [tuple(out)]


@rule("Permute")
def _permute(node, ins):
    order = tuple(node.attrs["order"])
    if sorted(order) != list(range(len(ins[0]))):
        raise ValueError(f"{node.name}: order {order} is not a permutation of {len(ins[0])} axes")
    return [tuple(ins[0][a] for a in order)]


@rule("Flatten")
def _flatten(node, ins):
    s = ins[0]
    a = _axis(node, node.attrs["axis"], len(s))
    e = _axis(node, node.attrs["end_axis"], len(s))
    return [s[:a] + (math.prod(s[a : e + 1]),) + s[e + 1 :]]


@rule("Reshape")
def _reshape(node, ins):
    s = ins[0]
    dims = [s[i] if d == 0 else d for i, d in enumerate(node.attrs["dims"])]
    if -1 in dims:
        known = math.prod(d for d in dims if d != -1)
        dims[dims.index(-1)] = math.prod(s) // known
    if math.prod(dims) != math.prod(s):
        raise ValueError(f"{node.name}: cannot reshape {s} to {node.attrs['dims']}")
    return [tuple(dims)]


@rule("Slice")
def _slice(node, ins):
    s = ins[0]
    axis = _axis(node, node.attrs["axis"], len(s))
    points = [0, *node.attrs["slice_points"], s[axis]]
    if any(b <= a for a, b in zip(points[:-1], points[1:])) or len(points) - 1 != len(
            node.outputs):
        raise ValueError(f"{node.name}: slice points {points[1:-1]} do not cut axis {axis} of "
                         f"{s} into {len(node.outputs)} parts")
    outs = []
    for a, b in zip(points[:-1], points[1:]):
        o = list(s)
        o[axis] = b - a
        outs.append(tuple(o))
    return outs


@rule("PriorBox")
def _priorbox(node, ins):
    _, _, h, w = ins[0]
    a = node.attrs
    return [(1, 2, h * w * priors_per_cell(a["max_size"], a["aspect_ratios"], a["flip"]) * 4)]


@rule("DetectionOutput")
def _detout(node, ins):
    loc, conf, priors = (math.prod(s) for s in ins)
    a = node.attrs
    n = priors // 8
    loc_classes = 1 if a["share_location"] else a["num_classes"]
    if len(ins[2]) != 3 or ins[2][1] != 2 or priors % 8 or loc != 4 * n * loc_classes or (
            conf != a["num_classes"] * n):
        raise ValueError(f"{node.name}: loc {ins[0]}, conf {ins[1]} and priors {ins[2]} do not "
                         f"fit one set of (1, 2, 4N) priors and {a['num_classes']} classes")
    return [(1, 1, a["keep_top_k"], 7)]


@rule("Yolov3DetectionOutput")
def _yolov3_detout(node, ins):
    a = node.attrs
    channels = int(a["num_box"]) * (5 + int(a["num_class"]))
    if any(len(s) != 4 or s[0] != 1 or s[1] != channels for s in ins):
        raise ValueError(f"{node.name}: inputs {ins} are not (1, {channels}, H, W) predictions of "
                         f"{a['num_box']} boxes and {a['num_class']} classes")
    # An upper bound, as DetectionOutput's keep_top_k rows: every box of every input passes.
    return [(1, sum(int(a["num_box"]) * h * w for _, _, h, w in ins), 6)]


def gluon_post_nms(nms_threshold: float, post_nms: int) -> int:
    """How many rows GluonCV's detectors return: the first `post_nms` after box_nms, or every
    row (-1) when post_nms <= 0 or NMS is off (nms_threshold outside (0, 1): GluonCV's SSD and
    YOLOv3 then skip box_nms and the slice both). The one copy of that rule: the IR's shapes
    and the ONNX heads' box_nms read it."""
    return int(post_nms) if post_nms > 0 and 0 < nms_threshold < 1 else -1


def _gluon_outputs(rows: int, attrs: dict) -> list[Shape]:
    """GluonCV's ids, scores, bboxes: its first `post_nms` rows (`gluon_post_nms`)."""
    post_nms = gluon_post_nms(float(attrs["nms_threshold"]), int(attrs["post_nms"]))
    p = rows if post_nms < 0 else min(post_nms, rows)
    return [(1, p, 1), (1, p, 1), (1, p, 4)]


def _pre_nms_outputs(boxes: int, attrs: dict) -> list[Shape]:
    """A gluon head written with nms='none': boxes (1, N, 4) and per-class scores (1, N, C)."""
    return [(1, boxes, 4), (1, boxes, int(attrs["num_classes"]))]


@rule("SsdDetections")
def _ssd_detections(node, ins):
    a = node.attrs
    anchors = node.weights["anchors"].shape[0]
    if ins[0] != (1, 4 * anchors) or ins[1] != (1, anchors, a["num_classes"] + 1):
        raise ValueError(f"{node.name}: loc {ins[0]} and class logits {ins[1]} do not fit "
                         f"{anchors} anchors and {a['num_classes']} classes")
    if a.get("nms", "box_nms") == "none":
        return _pre_nms_outputs(anchors, a)
    return _gluon_outputs(anchors * a["num_classes"], a)


@rule("YoloDetections")
def _yolo_detections(node, ins):
    a = node.attrs
    c = int(a["num_classes"])
    if len(ins) != len(a["anchors"]) or len(ins) != len(a["strides"]) or any(
            len(s) != 4 or s[1] != len(k) * (5 + c) for s, k in zip(ins, a["anchors"])):
        raise ValueError(f"{node.name}: inputs {ins} do not fit anchors {a['anchors']} and "
                         f"{c} classes")
    boxes = sum(len(k) * h * w for (_, _, h, w), k in zip(ins, a["anchors"]))
    if a.get("nms", "box_nms") == "none":
        return _pre_nms_outputs(boxes, a)
    return _gluon_outputs(boxes * c, a)


def infer_shapes(graph: Graph) -> dict[str, Shape]:
    """Recompute `graph.shapes` from `graph.inputs`; returns it. Raises on an unknown op."""
    shapes: dict[str, Shape] = dict(graph.inputs)
    for node in graph.nodes:
        if node.op == "Input":
            for b in node.outputs:
                shapes[b] = tuple(node.attrs["shape"])
            continue
        fn = _RULES.get(node.op)
        if fn is None:
            raise KeyError(f"no shape rule for IR op {node.op} (node {node.name})")
        outs = fn(node, [shapes[b] for b in node.inputs])
        for b, s in zip(node.outputs, outs):
            shapes[b] = tuple(int(x) for x in s)
    graph.shapes = shapes
    return shapes
