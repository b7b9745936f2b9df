"""A written prototxt linted against the NPU toolchains' constraints
(`ssdconv.headless.constraints`): layer kinds, Permute orders, Power exponents, Reshape dims,
and every blob's rank as OpenCV's Caffe importer shapes the net (the shapes a toolchain's
parser infers the same way)."""

from __future__ import annotations

import cv2
from google.protobuf import text_format

from ...headless import constraints as rules
from . import caffe_ssd_pb2 as pb

FORMAT = "caffe"


def _blob_ranks(prototxt: str, caffemodel: str | None,
                input_shape: list[int]) -> dict[str, tuple[int, ...]]:
    """Every layer's first output shape, by layer name, as OpenCV computes it (layers with
    weights need them for that: `caffemodel`)."""
    net = (cv2.dnn.readNetFromCaffe(prototxt, caffemodel) if caffemodel
           else cv2.dnn.readNetFromCaffe(prototxt))
    ids, _, outs = net.getLayersShapes(list(input_shape))
    names = net.getLayerNames()
    return {names[i - 1]: tuple(int(d) for d in o[0]) for i, o in zip(ids, outs) if i > 0}


def lint(prototxt: str, caffemodel: str | None, input_shape: list[int]) -> list[str]:
    """Every violation, one line each naming the layer and the rule; [] when clean."""
    net = text_format.Parse(open(prototxt).read(), pb.NetParameter())
    found = []
    for layer in net.layer:
        found.append(rules.forbidden(layer.type, layer.name, FORMAT))
        if layer.type == "Permute":
            found.append(rules.permute(tuple(layer.permute_param.order), layer.name, FORMAT))
        elif layer.type == "Power":
            found.append(rules.power(layer.power_param.power, layer.name, FORMAT))
        elif layer.type == "Reshape":
            dims = list(layer.reshape_param.shape.dim)
            if len(dims) != rules.RANK or dims[0] != 0:
                found.append(f"{FORMAT} Reshape {layer.name} dims {dims}: NNIE takes 4-D "
                             "Reshapes with dim 0 = 0 only")
    for name, shape in _blob_ranks(prototxt, caffemodel, input_shape).items():
        found.append(rules.rank(shape, name, FORMAT))
    return [f for f in found if f]
