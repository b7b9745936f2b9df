"""One small lowering per IR op: IR node -> ONNX nodes and float32 initializers.

Why a registry of functions, as in the other backends: each op's translation has its own traps
and a table keyed by op keeps each trap beside its op; registering an op twice is an error and
an op without a lowering is a refusal, never a guess. Lowerings see validated IR only
(`ssdconv.backend`'s rule): a valid node ONNX cannot compute exactly raises `Refused`; a broken
invariant raises RuntimeError. Every lowering computes what `ssdconv.ir.ops` says in float32,
with no approximation; where an ONNX op's own rule differs from Caffe's (ceil pooling, average
pooling past the padded edge) the lowering composes the exact result instead. What was measured
in onnxruntime 1.31.1 and OpenVINO 2026.4.1 (CPU, f32) to choose a form is noted at the op.

Naming: the ONNX node producing an IR node's output is named after the IR node and writes the
IR's blob names, so users extract the same tensor names as from Caffe and ncnn; helper nodes,
intermediate tensors and initializers get fresh names derived from the IR node's.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ...ir.graph import Graph, Node
from ...registry import NameAllocator, Registry
from .. import Refused

# Opset 13: the lowest that writes every body op without a workaround. Softmax-13 normalises
# along one real axis (Softmax-1/11 flatten the blob to 2-D at `axis`, which would need a
# Transpose pair around a middle-axis softmax); Clip takes min/max as inputs (>= 11); Split
# takes its sizes as an input and ReduceSumSquare its axes as an attribute (13..17). Keeping it
# low keeps older runtimes (TensorRT 8, older OpenVINO) able to load the model.
OPSET = 13

# The ops the ONNX target writes elsewhere, as the family's own head: the body writer refuses
# them with this reason.
HEAD_OPS = {
    "PriorBox": "caffe-ssd's PriorBox",
    "DetectionOutput": "caffe-ssd's DetectionOutput",
    "Yolov3DetectionOutput": "ncnn's Yolov3DetectionOutput",
}


class Builder:
    """The ONNX nodes and initializers of one IR node, kept only if the node is not refused.

    `fresh` is shared by the whole model, so every name it hands out is unique in the file.
    """

    def __init__(self, node: Node, graph: Graph, fresh: Callable[[str], str],
                 choices: list[str]) -> None:
        self.node = node
        self.graph = graph
        self.fresh = fresh
        self.choices = choices
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def shape(self, blob: str) -> tuple[int, ...]:
        return tuple(int(s) for s in self.graph.shapes[blob])

    def note(self, text: str) -> None:
        """Record a non-obvious but exact decision (one line of the writer's `choices`)."""
        self.choices.append(f"{self.node.name} ({self.node.op}): {text}")

    def const(self, tag: str, values, dtype=np.float32) -> str:
        """A new initializer holding `values` (float32 unless told); returns its name."""
        name = self.fresh(f"{self.node.name}_{tag}")
        self.initializers.append(numpy_helper.from_array(np.asarray(values, dtype=dtype), name))
        return name

    def weight(self, role: str, shape: Sequence[int]) -> str:
        """The node's weight `role` as a float32 initializer of exactly `shape`."""
        if role not in self.node.weights:
            raise RuntimeError(f"{self.node.name} ({self.node.op}) lacks weight {role!r}")
        w = np.asarray(self.node.weights[role], dtype=np.float32)
        if w.size != int(np.prod(shape)):
            raise RuntimeError(f"{self.node.name}: weight {role} has {w.size} values, "
                               f"not {tuple(shape)}")
        return self.const(role, w.reshape(tuple(shape)))

    def op(self, op_type: str, inputs: Sequence[str], out: str | Sequence[str] | None = None,
           **attrs) -> str:
        """Append one ONNX node; returns its (first) output.

        `out` None makes a fresh intermediate tensor. The node writing one of the IR node's
        outputs takes the IR node's name; helper nodes get fresh names.
        """
        if out is None:
            outputs = [self.fresh(f"{self.node.name}_{op_type.lower()}")]
        else:
            outputs = [out] if isinstance(out, str) else list(out)
        writes_ir = any(o in self.node.outputs for o in outputs)
        name = self.node.name if writes_ir else self.fresh(f"{self.node.name}_{op_type}")
        self.nodes.append(helper.make_node(op_type, list(inputs), outputs, name=name, **attrs))
        return outputs[0]


LOWERINGS = Registry("onnx lowering")
lowers = LOWERINGS.register


def lower_node(node: Node, graph: Graph, fresh: Callable[[str], str],
               choices: list[str]) -> Builder:
    """The ONNX form of `node`; raises `Refused` when there is no exact one."""
    fn = LOWERINGS.get(node.op)
    if fn is None:
        raise Refused("no ONNX lowering for this op")
    b = Builder(node, graph, fresh, choices)
    fn(node, b)
    return b


def new_name_allocator(graph: Graph) -> NameAllocator:
    """Fresh names avoiding every IR node name and blob (ONNX tensor names must be unique)."""
    return NameAllocator.for_graph(graph)


def _channel_shape(size: int, rank: int) -> tuple[int, ...]:
    """A per-channel (axis 1) vector broadcast against a blob of `rank` axes (batch first)."""
    return (size,) + (1,) * (rank - 2)


def _axis(axis: int, rank: int) -> int:
    return int(axis) % rank


@lowers("Input")
def _input(node: Node, b: Builder) -> None:
    """Written as a graph input (float32, the IR's static shape), not as a node."""


@lowers("Identity")
def _identity(node: Node, b: Builder) -> None:
    b.op("Identity", node.inputs, node.outputs[0])


@lowers("Conv")
def _conv(node: Node, b: Builder) -> None:
    a = node.attrs
    cin = b.shape(node.inputs[0])[1]
    group, cout = int(a["group"]), int(a["num_output"])
    kh, kw = (int(k) for k in a["kernel"])
    ph, pw = (int(p) for p in a["pad"])
    inputs = [node.inputs[0], b.weight("weight", (cout, cin // group, kh, kw))]
    if a["bias"]:
        inputs.append(b.weight("bias", (cout,)))
    b.op("Conv", inputs, node.outputs[0], kernel_shape=[kh, kw], pads=[ph, pw, ph, pw],
         strides=[int(s) for s in a["stride"]], dilations=[int(d) for d in a["dilation"]],
         group=group)


@lowers("InnerProduct")
def _inner_product(node: Node, b: Builder) -> None:
    """Flatten (axis 1, C-major as Caffe's) then Gemm with the (O, K) weight transposed."""
    a = node.attrs
    x, (y,) = node.inputs[0], node.outputs
    k = int(np.prod(b.shape(x)[1:]))
    cout = int(a["num_output"])
    flat = x if len(b.shape(x)) == 2 else b.op("Flatten", [x], axis=1)
    inputs = [flat, b.weight("weight", (cout, k))]
    if a["bias"]:
        inputs.append(b.weight("bias", (cout,)))
    b.op("Gemm", inputs, y, transB=1)


@lowers("BatchNorm")
def _batchnorm(node: Node, b: Builder) -> None:
    """Normally folded into the conv before; written exactly anyway (inference form, eps as
    the node's, stored as ONNX's float32 attribute)."""
    c = b.shape(node.inputs[0])[1]
    params = [b.weight(role, (c,)) for role in ("gamma", "beta", "mean", "var")]
    b.op("BatchNormalization", [node.inputs[0], *params], node.outputs[0],
         epsilon=float(node.attrs["eps"]))


@lowers("Scale")
def _scale(node: Node, b: Builder) -> None:
    x_shape = b.shape(node.inputs[0])
    rank = len(x_shape)
    (y,) = node.outputs
    if len(node.inputs) == 2:
        # x (1, N, ...) times s (1, N): s reshaped to (1, N, 1, ...) broadcasts over the rest.
        s = node.inputs[1]
        if rank > 2:
            s = b.op("Reshape", [s, b.const("shape", (1, x_shape[1]) + (1,) * (rank - 2),
                                            np.int64)])
        b.op("Mul", [node.inputs[0], s], y)
        return
    c = x_shape[1]
    scaled_to = b.fresh(f"{node.name}_mul") if node.attrs["bias"] else y
    scaled = b.op("Mul", [node.inputs[0], b.weight("scale", _channel_shape(c, rank))],
                  scaled_to)
    if node.attrs["bias"]:  # x*scale, then + bias: Caffe's two roundings, in its order
        b.op("Add", [scaled, b.weight("bias", _channel_shape(c, rank))], y)


@lowers("ReLU")
def _relu(node: Node, b: Builder) -> None:
    slope = float(node.attrs.get("negative_slope", 0.0) or 0.0)
    if slope == 0.0:
        b.op("Relu", node.inputs, node.outputs[0])
    else:
        b.op("LeakyRelu", node.inputs, node.outputs[0], alpha=slope)


@lowers("PReLU")
def _prelu(node: Node, b: Builder) -> None:
    """PRelu with the slopes broadcast along axis 1: (C, 1, 1) on a 4-D blob, (C,) on (1, C);
    one shared slope as a (1,) tensor."""
    shape = b.shape(node.inputs[0])
    slope = np.asarray(node.weights.get("slope", ())).ravel()
    to = (1,) if slope.size == 1 else _channel_shape(shape[1], len(shape))
    b.op("PRelu", [node.inputs[0], b.weight("slope", to)], node.outputs[0])


@lowers("ELU")
def _elu(node: Node, b: Builder) -> None:
    b.op("Elu", node.inputs, node.outputs[0], alpha=float(node.attrs["alpha"]))


@lowers("TanH")
def _tanh(node: Node, b: Builder) -> None:
    b.op("Tanh", node.inputs, node.outputs[0])


@lowers("Clip")
def _clip(node: Node, b: Builder) -> None:
    lo, hi = b.const("min", float(node.attrs["min"])), b.const("max", float(node.attrs["max"]))
    b.op("Clip", [node.inputs[0], lo, hi], node.outputs[0])


def _end_pad(size: int, k: int, s: int, p: int, out: int) -> int:
    """The end pad that makes ONNX's floor rule (ceil_mode 0) give `out` windows.

    The pad itself when the floor count is already `out`; else Caffe's ceil added a last window
    reaching past the padded edge, and the end pad is how far that window reaches.
    """
    if (size + 2 * p - k) // s + 1 == out:
        return p
    return (out - 1) * s + k - size - p


@lowers("Pool")
def _pool(node: Node, b: Builder) -> None:
    """Always ceil_mode 0 with explicit end pads, because ONNX's ceil_mode is not Caffe's ceil
    and the runtimes disagree on it: on (size 5, k 2, s 2, p 1) onnxruntime drops the window
    starting in the padding (3 outputs, Caffe's rule), OpenVINO keeps it (4 outputs, the last
    row all -FLT_MAX) and onnx's shape inference says 4. Average pooling that counts the
    padding with a window past the padded edge (Caffe divides by the part inside the padded
    image) is an explicit zero Pad and an AveragePool that does not count its own end pads:
    OpenVINO divides by the whole window there."""
    a = node.attrs
    x, (y,) = node.inputs[0], node.outputs
    avg = a["method"] == "avg"
    if a["global_pool"]:
        b.op("GlobalAveragePool" if avg else "GlobalMaxPool", [x], y)
        return
    _, _, h, w = b.shape(x)
    _, _, oh, ow = b.shape(y)
    kernel = [int(k) for k in a["kernel"]]
    stride = [int(s) for s in a["stride"]]
    pad = [int(p) for p in a["pad"]]
    if any(p >= k for p, k in zip(pad, kernel, strict=True)):
        raise Refused(f"pad {tuple(pad)} not below kernel {tuple(kernel)}: onnxruntime "
                      "refuses it (and Caffe)")
    ends = []
    for size, k, s, p, out in zip((h, w), kernel, stride, pad, (oh, ow), strict=True):
        if (out - 1) * s - p >= size:
            raise Refused(f"the last of {out} windows (stride {s}, kernel {k}, pad {p}) starts "
                          f"past the {size} rows of the image: Caffe pools an empty window")
        e = _end_pad(size, k, s, p, out)
        if not 0 <= e < k or (size + p + e - k) // s + 1 != out:
            raise RuntimeError(f"{node.name}: no end pad gives {out} windows on {size} rows")
        ends.append(e)
    if ends != pad:
        b.note(f"rounding written as ceil_mode 0 with end pads {tuple(ends)} for the "
               f"{oh}x{ow} output (Caffe's last-window rule)")
    if not avg:
        b.op("MaxPool", [x], y, kernel_shape=kernel, strides=stride, pads=pad + ends,
             ceil_mode=0)
        return
    include_pad = bool(a["count_include_pad"])
    if include_pad and any(e > p for e, p in zip(ends, pad, strict=True)):
        if any(pad):
            zeros = b.const("pads", [0, 0, *pad, 0, 0, *pad], np.int64)
            x = b.op("Pad", [x, zeros], mode="constant")
        b.note("average pooling past the padded edge written as a zero Pad then an "
               "AveragePool not counting its end pads (Caffe's divisor stops at the pad)")
        pads = [0, 0] + [e - p for e, p in zip(ends, pad, strict=True)]
        b.op("AveragePool", [x], y, kernel_shape=kernel, strides=stride, pads=pads,
             count_include_pad=0, ceil_mode=0)
        return
    b.op("AveragePool", [x], y, kernel_shape=kernel, strides=stride, pads=pad + ends,
         count_include_pad=int(include_pad), ceil_mode=0)


@lowers("Eltwise")
def _eltwise(node: Node, b: Builder) -> None:
    """sum with coeffs: ((c0*x0 + c1*x1) + c2*x2) ..., left to right as Caffe accumulates; a
    coefficient 1 is no Mul. prod: a left-to-right Mul chain. max: one n-ary Max (exact)."""
    op, coeffs = node.attrs["operation"], tuple(node.attrs["coeffs"] or ())
    (y,) = node.outputs
    if op == "max":
        b.op("Max", node.inputs, y)
        return
    terms = list(node.inputs)
    if coeffs:
        terms = [t if float(c) == 1.0 else b.op("Mul", [t, b.const(f"coeff{i}", float(c))])
                 for i, (t, c) in enumerate(zip(terms, coeffs, strict=True))]
    if len(terms) == 1:
        b.op("Identity", terms, y)
        return
    binary = "Add" if op == "sum" else "Mul"
    acc = terms[0]
    for i, t in enumerate(terms[1:], start=2):
        acc = b.op(binary, [acc, t], y if i == len(terms) else None)


@lowers("Concat")
def _concat(node: Node, b: Builder) -> None:
    rank = len(b.shape(node.inputs[0]))
    b.op("Concat", node.inputs, node.outputs[0], axis=_axis(node.attrs["axis"], rank))


@lowers("Permute")
def _permute(node: Node, b: Builder) -> None:
    b.op("Transpose", node.inputs, node.outputs[0], perm=[int(o) for o in node.attrs["order"]])


@lowers("ShuffleChannel")
def _shuffle_channel(node: Node, b: Builder) -> None:
    """Reshape (1, g, C/g, H, W), swap axes 1 and 2, reshape back: only data moves."""
    n, c, h, w = b.shape(node.inputs[0])
    g = int(node.attrs["group"])
    split = b.op("Reshape", [node.inputs[0], b.const("groups", (n, g, c // g, h, w), np.int64)])
    swapped = b.op("Transpose", [split], perm=[0, 2, 1, 3, 4])
    b.op("Reshape", [swapped, b.const("shape", (n, c, h, w), np.int64)], node.outputs[0])


@lowers("Flatten", "Reshape")
def _reshape_to_output(node: Node, b: Builder) -> None:
    """A Reshape to the IR's concrete output shape: no 0/-1 codes left for a runtime to read.
    Caffe's Flatten merges axis..end_axis (ONNX's Flatten always makes 2-D): a Reshape too."""
    (y,) = node.outputs
    b.op("Reshape", [node.inputs[0], b.const("shape", b.shape(y), np.int64)], y)


@lowers("Softmax")
def _softmax(node: Node, b: Builder) -> None:
    rank = len(b.shape(node.inputs[0]))
    b.op("Softmax", node.inputs, node.outputs[0], axis=_axis(node.attrs["axis"], rank))


@lowers("Normalize")
def _normalize(node: Node, b: Builder) -> None:
    """y = x / sqrt(sum x^2 + eps) * scale, in that order (ops.py, caffe-ssd): the sum over
    channels at each position, or over every non-batch axis with across_spatial."""
    a = node.attrs
    x, (y,) = node.inputs[0], node.outputs
    shape = b.shape(x)
    rank = len(shape)
    axes = list(range(1, rank)) if a["across_spatial"] else [1]
    squares = b.op("ReduceSumSquare", [x], axes=axes, keepdims=1)
    plus_eps = b.op("Add", [squares, b.const("eps", float(a["eps"]))])
    norm = b.op("Sqrt", [plus_eps])
    normed = b.op("Div", [x, norm])
    scale = (b.weight("scale", ()) if a["channel_shared"]
             else b.weight("scale", _channel_shape(shape[1], rank)))
    b.op("Mul", [normed, scale], y)


@lowers("Slice")
def _slice(node: Node, b: Builder) -> None:
    shape = b.shape(node.inputs[0])
    axis = _axis(node.attrs["axis"], len(shape))
    points = [0, *(int(p) for p in node.attrs["slice_points"]), shape[axis]]
    sizes = [q - p for p, q in itertools.pairwise(points)]
    b.op("Split", [node.inputs[0], b.const("split", sizes, np.int64)], node.outputs, axis=axis)


@lowers("Power")
def _power(node: Node, b: Builder) -> None:
    """(shift + scale*x)^power as Caffe computes it: scale, then shift, then the power; steps
    that are identities are left out (a Power(1, 1, 0) is an Identity). Powers with a correctly
    rounded ONNX op use it, measured against float64 rounded to float32 on 400k values:
    0.5 -> Sqrt (0 mismatches in both runtimes; Pow(x, 0.5): 252 in onnxruntime), -1 ->
    Reciprocal (Pow: 61 in onnxruntime), 2 -> Mul(t, t) (Pow: 0 in both, a square by
    construction everywhere). Other powers stay Pow (1.5: 55 mismatches of 1 ulp in both)."""
    a = node.attrs
    power, scale, shift = float(a["power"]), float(a["scale"]), float(a["shift"])
    (y,) = node.outputs
    steps: list[tuple[str, list[str] | None]] = []  # (op, operands after t; None: t again)
    if scale != 1.0:
        steps.append(("Mul", [b.const("scale", scale)]))
    if shift != 0.0:
        steps.append(("Add", [b.const("shift", shift)]))
    if power == 0.5:
        steps.append(("Sqrt", []))
    elif power == -1.0:
        steps.append(("Reciprocal", []))
    elif power == 2.0:
        steps.append(("Mul", None))
    elif power != 1.0:
        steps.append(("Pow", [b.const("power", power)]))
    if not steps:
        b.op("Identity", node.inputs, y)
        return
    t = node.inputs[0]
    for i, (op, extra) in enumerate(steps):
        operands = [t, t] if extra is None else [t, *extra]
        t = b.op(op, operands, y if i == len(steps) - 1 else None)


@lowers("Sigmoid")
def _sigmoid(node: Node, b: Builder) -> None:
    """1 / (1 + exp(-x)) from Neg, Exp, Add, Reciprocal, as ops.py states it, because
    onnxruntime's Sigmoid kernel is accurate in absolute terms only: on x in [-30, 30] its
    relative error reaches 6.5 on outputs below 1e-7 and 2.2e-3 at x = -10, where the
    composition measures 1.5e-7 (OpenVINO: 2.7e-7 for its Sigmoid, 2.8e-7 composed). Scores
    taken through a sigmoid and compared with a threshold or with each other need the small
    values right. exp(-x) overflowing to inf below x = -88.7 gives 0, the float32 result."""
    e = b.op("Exp", [b.op("Neg", node.inputs)])
    b.op("Reciprocal", [b.op("Add", [e, b.const("one", 1.0)])], node.outputs[0])
    b.note("Sigmoid written as 1 / (1 + exp(-x)): onnxruntime's Sigmoid loses small values")


@lowers("Exp")
def _exp(node: Node, b: Builder) -> None:
    b.op("Exp", node.inputs, node.outputs[0])


@lowers("Upsample")
def _upsample(node: Node, b: Builder) -> None:
    """Resize nearest, asymmetric, floor, with the IR's integer factor: source row = floor(i /
    s) = i // s. Measured exact (bit-equal to numpy repeat) in onnxruntime and OpenVINO for
    s = 2..32, 49, 50, 97, 100 on outputs up to 3750 rows, with scales and with sizes."""
    s = float(int(node.attrs["scale"]))
    scales = b.const("scales", [1.0, 1.0, s, s])
    b.op("Resize", [node.inputs[0], "", scales], node.outputs[0], mode="nearest",
         coordinate_transformation_mode="asymmetric", nearest_mode="floor")


def _head(node: Node, b: Builder) -> None:
    raise Refused(f"{HEAD_OPS[node.op]} has no ONNX lowering: the ONNX target writes the "
                  "family's own head")


lowers(*HEAD_OPS)(_head)
