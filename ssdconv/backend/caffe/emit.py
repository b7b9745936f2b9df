"""Write an IR graph as a caffe-ssd model: real protobuf messages, one caffe layer per IR node.

The graph is first lowered (`lower.lower_for_caffe`) so every node has a stock caffe-ssd form;
the lowering also validates the graph and refuses, all at once, what caffe-ssd cannot express
(the rule both backends follow is in `ssdconv.backend`), so a builder that meets a node it cannot
write has found a bug (RuntimeError). Each IR op has one builder, registered in a table, that
fills the layer's parameters and blobs; every semantic field is written explicitly, because
OpenCV only sees fields that are set and its defaults differ from caffe-ssd's (PriorBox clip
defaults to true there, DetectionOutput refuses missing fields). The prototxt is `text_format`
of the net without blobs; the caffemodel is the same net with blobs, serialized. Blob shapes are
caffe-ssd's own, which real caffe checks on load.

The messages come from our own `caffe_ssd.proto` (caffe-ssd's field numbers). After editing it,
regenerate the Python module from the repository root with:

    .venv/bin/python -m grpc_tools.protoc -I ssdconv/backend/caffe \\
        --python_out=ssdconv/backend/caffe ssdconv/backend/caffe/caffe_ssd.proto
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from google.protobuf import text_format

from ssdconv.fileio import AtomicOutputs
from ssdconv.ir.graph import Graph, Node
from ssdconv.ir.shapes import pool_out
from ssdconv.registry import NameAllocator, Registry

from . import caffe_ssd_pb2 as pb
from .lower import lower_for_caffe

Layer = pb.LayerParameter


class _Context:
    """What a builder may need beyond its node: blob shapes, fresh names, the chosen options."""

    def __init__(self, graph: Graph, relu6: str) -> None:
        self.graph = graph
        self.shapes = graph.shapes
        self.relu6 = relu6
        self.fresh = NameAllocator.for_graph(graph).fresh


_BUILDERS = Registry("caffe builder")
builds = _BUILDERS.register  # the builder of caffe layers for an IR op


def _layer(node: Node, type_: str, name: str | None = None, bottom: list[str] | None = None,
           top: list[str] | None = None) -> Layer:
    return Layer(name=name or node.name, type=type_,
                 bottom=node.inputs if bottom is None else bottom,
                 top=node.outputs if top is None else top)


_DATA_TAG = (pb.BlobProto.DESCRIPTOR.fields_by_name["data"].number << 3) | 2  # packed


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _blob(layer: Layer, values: np.ndarray, shape: tuple[int, ...]) -> None:
    """Append a float32 blob of exactly `shape` (caffe refuses a weight of another shape).

    The data go in as one packed field parsed by protobuf itself (identical to extending the
    repeated field, about ten times faster: a ResNet50 backbone is 25M floats).
    """
    arr = np.asarray(values, dtype=np.float32)
    if arr.size != int(np.prod(shape)):
        raise RuntimeError(f"{layer.name}: blob of {arr.shape} cannot take shape {shape}")
    blob = layer.blobs.add()
    blob.shape.dim.extend(int(d) for d in shape)
    raw = np.ascontiguousarray(arr, dtype="<f4").tobytes()
    blob.MergeFromString(_varint(_DATA_TAG) + _varint(len(raw)) + raw)


def _weight(node: Node, role: str) -> np.ndarray:
    if role not in node.weights:
        raise RuntimeError(f"{node.name} ({node.op}) lacks weight {role!r}")
    return np.asarray(node.weights[role])


def _channels(node: Node, ctx: _Context) -> int:
    return ctx.shapes[node.inputs[0]][1]


@builds("Input")
def _input(node: Node, ctx: _Context) -> list[Layer]:
    layer = _layer(node, "Input", bottom=[])
    layer.input_param.shape.add().dim.extend(int(d) for d in node.attrs["shape"])
    return [layer]


@builds("Conv")
def _conv(node: Node, ctx: _Context) -> list[Layer]:
    a = node.attrs
    layer = _layer(node, "Convolution")
    p = layer.convolution_param
    p.num_output = a["num_output"]
    p.bias_term = bool(a["bias"])
    p.group = a["group"]
    p.kernel_h, p.kernel_w = a["kernel"]
    p.stride_h, p.stride_w = a["stride"]
    p.pad_h, p.pad_w = a["pad"]
    p.dilation.extend(a["dilation"])
    shape = (a["num_output"], _channels(node, ctx) // a["group"], *a["kernel"])
    _blob(layer, _weight(node, "weight"), shape)
    if a["bias"]:
        _blob(layer, _weight(node, "bias"), (a["num_output"],))
    return [layer]


@builds("InnerProduct")
def _inner_product(node: Node, ctx: _Context) -> list[Layer]:
    """axis 1: caffe flattens (1, C, H, W) C-major, as the IR says; weight (O, K)."""
    a = node.attrs
    k = int(np.prod(ctx.shapes[node.inputs[0]][1:]))
    layer = _layer(node, "InnerProduct")
    p = layer.inner_product_param
    p.num_output = a["num_output"]
    p.bias_term = bool(a["bias"])
    p.axis = 1
    p.transpose = False
    _blob(layer, _weight(node, "weight"), (a["num_output"], k))
    if a["bias"]:
        _blob(layer, _weight(node, "bias"), (a["num_output"],))
    return [layer]


@builds("BatchNorm")
def _batchnorm(node: Node, ctx: _Context) -> list[Layer]:
    """caffe's BatchNorm only normalises; gamma and beta go to a Scale layer after it."""
    c = _channels(node, ctx)
    normed = ctx.fresh(f"{node.outputs[0]}_bn")
    bn = _layer(node, "BatchNorm", top=[normed])
    bn.batch_norm_param.use_global_stats = True
    bn.batch_norm_param.eps = node.attrs["eps"]
    _blob(bn, _weight(node, "mean"), (c,))
    _blob(bn, _weight(node, "var"), (c,))
    _blob(bn, [1.0], (1,))  # moving-average factor: caffe divides mean and var by it
    sc = _layer(node, "Scale", name=ctx.fresh(f"{node.name}_scale"), bottom=[normed])
    sc.scale_param.axis = 1
    sc.scale_param.num_axes = 1
    sc.scale_param.bias_term = True
    _blob(sc, _weight(node, "gamma"), (c,))
    _blob(sc, _weight(node, "beta"), (c,))
    return [bn, sc]


@builds("Scale")
def _scale(node: Node, ctx: _Context) -> list[Layer]:
    layer = _layer(node, "Scale")
    if len(node.inputs) == 2:
        # caffe matches bottom[1]'s shape (1, N) against bottom[0].shape[axis:axis+2]: axis 0
        # makes it scale axis 1 of (1, N, ...) (scale_layer.cpp Reshape); no blobs, no bias.
        layer.scale_param.axis = 0
        layer.scale_param.bias_term = False
        return [layer]
    c = _channels(node, ctx)
    layer.scale_param.axis = 1
    layer.scale_param.num_axes = 1
    layer.scale_param.bias_term = bool(node.attrs["bias"])
    _blob(layer, _weight(node, "scale"), (c,))
    if node.attrs["bias"]:
        _blob(layer, _weight(node, "bias"), (c,))
    return [layer]


@builds("ReLU")
def _relu(node: Node, ctx: _Context) -> list[Layer]:
    layer = _layer(node, "ReLU")
    layer.relu_param.negative_slope = float(node.attrs.get("negative_slope", 0.0))
    return [layer]


@builds("PReLU")
def _prelu(node: Node, ctx: _Context) -> list[Layer]:
    """One slope: channel_shared with a (1,) blob; else one per channel (axis 1)."""
    slope = _weight(node, "slope").ravel()
    layer = _layer(node, "PReLU")
    layer.prelu_param.channel_shared = slope.size == 1
    _blob(layer, slope, (slope.size,))
    return [layer]


@builds("ELU")
def _elu(node: Node, ctx: _Context) -> list[Layer]:
    layer = _layer(node, "ELU")
    layer.elu_param.alpha = node.attrs["alpha"]
    return [layer]


@builds("TanH")
def _tanh(node: Node, ctx: _Context) -> list[Layer]:
    return [_layer(node, "TanH")]


@builds("Clip")
def _clip(node: Node, ctx: _Context) -> list[Layer]:
    """Only reached with relu6="relu6_layer": a non-stock layer OpenCV and caffe2ncnn accept."""
    if ctx.relu6 != "relu6_layer" or (node.attrs["min"], node.attrs["max"]) != (0, 6):
        raise RuntimeError(f"{node.name}: Clip reached the caffe emitter without lowering")
    return [_layer(node, "ReLU6")]


_POOL_METHODS = {"max": pb.PoolingParameter.MAX, "avg": pb.PoolingParameter.AVE}


@builds("Pool")
def _pool(node: Node, ctx: _Context) -> list[Layer]:
    a = node.attrs
    layer = _layer(node, "Pooling")
    p = layer.pooling_param
    p.pool = _POOL_METHODS[a["method"]]
    if a["global_pool"]:
        p.global_pooling = True
        return [layer]
    _, _, h, w = ctx.shapes[node.inputs[0]]
    for size, k, s, pad in zip((h, w), a["kernel"], a["stride"], a["pad"]):
        if pool_out(size, k, s, pad, "ceil") != pool_out(size, k, s, pad, a["round"]):
            raise RuntimeError(f"{node.name}: floor pooling reached the emitter unlowered")
    p.kernel_h, p.kernel_w = a["kernel"]
    p.stride_h, p.stride_w = a["stride"]
    p.pad_h, p.pad_w = a["pad"]
    return [layer]


_ELTWISE_OPS = {
    "sum": pb.EltwiseParameter.SUM,
    "prod": pb.EltwiseParameter.PROD,
    "max": pb.EltwiseParameter.MAX,
}


@builds("Eltwise")
def _eltwise(node: Node, ctx: _Context) -> list[Layer]:
    op, coeffs = node.attrs["operation"], tuple(node.attrs["coeffs"])
    layer = _layer(node, "Eltwise")
    layer.eltwise_param.operation = _ELTWISE_OPS[op]
    layer.eltwise_param.coeff.extend(float(c) for c in coeffs)
    return [layer]


@builds("Concat")
def _concat(node: Node, ctx: _Context) -> list[Layer]:
    layer = _layer(node, "Concat")
    layer.concat_param.axis = node.attrs["axis"]
    return [layer]


@builds("Permute")
def _permute(node: Node, ctx: _Context) -> list[Layer]:
    layer = _layer(node, "Permute")
    layer.permute_param.order.extend(node.attrs["order"])
    return [layer]


@builds("Flatten")
def _flatten(node: Node, ctx: _Context) -> list[Layer]:
    layer = _layer(node, "Flatten")
    layer.flatten_param.axis = node.attrs["axis"]
    layer.flatten_param.end_axis = node.attrs["end_axis"]
    return [layer]


@builds("Reshape")
def _reshape(node: Node, ctx: _Context) -> list[Layer]:
    layer = _layer(node, "Reshape")
    layer.reshape_param.shape.dim.extend(int(d) for d in node.attrs["dims"])
    return [layer]


@builds("Softmax")
def _softmax(node: Node, ctx: _Context) -> list[Layer]:
    layer = _layer(node, "Softmax")
    layer.softmax_param.axis = node.attrs["axis"]
    return [layer]


@builds("Normalize")
def _normalize(node: Node, ctx: _Context) -> list[Layer]:
    if node.attrs["channel_shared"]:
        raise RuntimeError(f"{node.name}: channel_shared Normalize reached the emitter unlowered")
    layer = _layer(node, "Normalize")
    p = layer.norm_param
    p.across_spatial = bool(node.attrs["across_spatial"])
    p.channel_shared = False
    p.eps = node.attrs["eps"]
    _blob(layer, _weight(node, "scale"), (_channels(node, ctx),))
    return [layer]


@builds("Slice")
def _slice(node: Node, ctx: _Context) -> list[Layer]:
    layer = _layer(node, "Slice")
    layer.slice_param.axis = node.attrs["axis"]
    layer.slice_param.slice_point.extend(node.attrs["slice_points"])
    return [layer]


@builds("Power")
def _power(node: Node, ctx: _Context) -> list[Layer]:
    layer = _layer(node, "Power")
    layer.power_param.power = node.attrs["power"]
    layer.power_param.scale = node.attrs["scale"]
    layer.power_param.shift = node.attrs["shift"]
    return [layer]


@builds("Sigmoid")
def _sigmoid(node: Node, ctx: _Context) -> list[Layer]:
    return [_layer(node, "Sigmoid")]


@builds("Exp")
def _exp(node: Node, ctx: _Context) -> list[Layer]:
    """base -1 means e; all three fields written, as OpenCV only sees fields that are set."""
    layer = _layer(node, "Exp")
    layer.exp_param.base = -1.0
    layer.exp_param.scale = 1.0
    layer.exp_param.shift = 0.0
    return [layer]


@builds("Upsample")
def _upsample(node: Node, ctx: _Context) -> list[Layer]:
    """Nearest upsampling as a depthwise Deconvolution with an s x s kernel of ones at stride s:
    the windows do not overlap, so each output pixel is exactly 1 * one input pixel."""
    c, s = _channels(node, ctx), int(node.attrs["scale"])
    layer = _layer(node, "Deconvolution")
    p = layer.convolution_param
    p.num_output = c
    p.bias_term = False
    p.group = c
    p.kernel_h = p.kernel_w = s
    p.stride_h = p.stride_w = s
    p.pad_h = p.pad_w = 0
    _blob(layer, np.ones(c * s * s), (c, 1, s, s))
    return [layer]


@builds("PriorBox")
def _priorbox(node: Node, ctx: _Context) -> list[Layer]:
    """Image size is never written: OpenCV ignores it and takes the image blob's dims."""
    a = node.attrs
    if a["int_scale"] != 1:
        raise RuntimeError(f"{node.name}: PriorBox with int_scale reached the emitter unlowered")
    layer = _layer(node, "PriorBox")
    p = layer.prior_box_param
    p.min_size.append(a["min_size"])
    if a["max_size"]:
        p.max_size.append(a["max_size"])
    p.aspect_ratio.extend(float(r) for r in a["aspect_ratios"])
    p.flip = bool(a["flip"])
    p.clip = bool(a["clip"])
    p.variance.extend(float(v) for v in a["variance"])
    if a["step_h"] == a["step_w"]:
        p.step = a["step_h"]
    else:
        p.step_h, p.step_w = a["step_h"], a["step_w"]
    p.offset = a["offset"]
    return [layer]


_CODE_TYPES = {
    "CORNER": pb.PriorBoxParameter.CORNER,
    "CENTER_SIZE": pb.PriorBoxParameter.CENTER_SIZE,
    "CORNER_SIZE": pb.PriorBoxParameter.CORNER_SIZE,
}


@builds("DetectionOutput")
def _detection_output(node: Node, ctx: _Context) -> list[Layer]:
    a = node.attrs
    layer = _layer(node, "DetectionOutput")
    p = layer.detection_output_param
    p.num_classes = a["num_classes"]
    p.share_location = bool(a["share_location"])
    p.background_label_id = a["background_label_id"]
    p.nms_param.nms_threshold = a["nms_threshold"]
    p.nms_param.top_k = a["top_k"]
    p.code_type = _CODE_TYPES[a["code_type"]]
    p.keep_top_k = a["keep_top_k"]
    p.confidence_threshold = a["confidence_threshold"]
    return [layer]


def build_net(
    graph: Graph, name: str, relu6: str = "compose"
) -> tuple[pb.NetParameter, list[str]]:
    """Lower `graph` and build the caffe-ssd net (with blobs); returns it and the choices taken.

    The choices are the remarks a manifest must carry: anything that is not stock caffe-ssd
    (a `ReLU6` layer) or that departs from what was asked. An empty list means a model stock
    caffe-ssd, OpenCV and caffe2ncnn all read with the IR's exact semantics.
    """
    choices: list[str] = []
    lowered = lower_for_caffe(graph, relu6=relu6, notes=choices)
    ctx = _Context(lowered, relu6)
    net = pb.NetParameter(name=name)
    for node in lowered.nodes:
        builder = _BUILDERS.get(node.op)
        if builder is None:
            raise RuntimeError(f"no caffe builder for IR op {node.op} ({node.name})")
        net.layer.extend(builder(node, ctx))
    relu6_layers = [n.name for n in lowered.nodes if n.op == "Clip"]
    if relu6_layers:
        choices.append(
            f"relu6_layer: {len(relu6_layers)} Clip(0, 6) node(s) written as type ReLU6 "
            "(OpenCV and caffe2ncnn accept it; stock caffe-ssd does not)"
        )
    return net, choices


def strip_weights(net: pb.NetParameter) -> pb.NetParameter:
    """A copy of `net` without blobs: the deploy prototxt's content."""
    bare = pb.NetParameter()
    bare.CopyFrom(net)
    for layer in bare.layer:
        del layer.blobs[:]
    return bare


def producer_layers(net: pb.NetParameter) -> dict[str, tuple[str, int]]:
    """Map each blob to (layer writing it, index among that layer's tops).

    OpenCV addresses outputs by layer name, not blob name: `net.forward(layer)` returns the
    first top only; `net.forwardAndRetrieve([layer])[0][index]` reaches any top (a Slice's).
    """
    return {top: (layer.name, i) for layer in net.layer for i, top in enumerate(layer.top)}


def write_caffe(graph: Graph, out_dir: str | os.PathLike, name: str,
                relu6: str = "compose") -> dict:
    """Write NAME.prototxt and NAME.caffemodel into `out_dir`, both or neither.

    Returns {"prototxt": Path, "caffemodel": Path, "choices": [str, ...]}.
    """
    net, choices = build_net(graph, name, relu6=relu6)
    text = text_format.MessageToString(strip_weights(net))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with AtomicOutputs(out) as files:
        prototxt = files.write(f"{name}.prototxt", text)
        caffemodel = files.write(f"{name}.caffemodel", net.SerializeToString())
        files.commit()
    return {"prototxt": prototxt, "caffemodel": caffemodel, "choices": choices}


def parse_prototxt_strict(path: str | os.PathLike) -> pb.NetParameter:
    """Parse a prototxt against caffe-ssd's fields; raises text_format.ParseError on any other."""
    return text_format.Parse(Path(path).read_text(), pb.NetParameter())
