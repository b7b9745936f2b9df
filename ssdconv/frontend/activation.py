"""Element-wise activations: ReLU, LeakyReLU (leaky, prelu, elu), clip (ReLU6, hard-sigmoid),
sigmoid, tanh and exp (YOLO's box and score transforms).

`Activation` and `LeakyReLU` pick their function with `act_type`; each value has one builder in
a table, and a value without one is refused, naming those supported.
"""

from __future__ import annotations

from collections.abc import Callable

from ..ir.graph import Node
from ..mxnet.source import SourceNode
from .registry import ConvertContext, converter

Build = Callable[[SourceNode, ConvertContext], list[Node]]


def _unary(op: str, **attrs) -> Build:
    """A builder writing one IR `op` on the node's input, with fixed `attrs`."""
    def build(node: SourceNode, ctx: ConvertContext) -> list[Node]:
        return [ctx.make(node, op, [ctx.in_blob(node)], dict(attrs))]

    return build


ACTIVATIONS: dict[str, Build] = {
    "relu": _unary("ReLU", negative_slope=0.0),
    "sigmoid": _unary("Sigmoid"),
    "tanh": _unary("TanH"),
}


@converter("Activation")
def activation(node, ctx: ConvertContext):
    act = node.attrs.str("act_type")
    build = ACTIVATIONS.get(act)
    if build is None:
        return ctx.refuse(node, f"act_type={act}: only {', '.join(sorted(ACTIVATIONS))} are "
                          "supported (softrelu log(1 + e^x) has no Caffe or ncnn layer)")
    return build(node, ctx)


@converter("sigmoid")
def sigmoid(node, ctx: ConvertContext):
    return [ctx.make(node, "Sigmoid", [ctx.in_blob(node)], {})]


@converter("tanh")
def tanh(node, ctx: ConvertContext):
    return [ctx.make(node, "TanH", [ctx.in_blob(node)], {})]


@converter("exp")
def exp(node, ctx: ConvertContext):
    return [ctx.make(node, "Exp", [ctx.in_blob(node)], {})]


@converter("relu")
def relu(node, ctx: ConvertContext):
    return [ctx.make(node, "ReLU", [ctx.in_blob(node)], {"negative_slope": 0.0})]


def _leaky(node: SourceNode, ctx: ConvertContext) -> list[Node]:
    return [ctx.make(node, "ReLU", [ctx.in_blob(node)],
                     {"negative_slope": node.attrs.float("slope")})]


def _prelu(node: SourceNode, ctx: ConvertContext) -> list[Node]:
    """The learned gamma (input 1): one slope per channel (axis 1), or one for all (Gluon's
    nn.PReLU default, shape (1,))."""
    gamma = ctx.param(node, 1)
    if gamma is None:
        return ctx.refuse(node, "prelu's gamma is computed at run time, not a parameter")
    channels = ctx.in_shape(node)[1]
    if gamma.size not in (1, channels):
        return ctx.refuse(node, f"prelu gamma of shape {gamma.shape}: only ({channels},) or "
                          "(1,) slopes are supported")
    return [ctx.make(node, "PReLU", [ctx.in_blob(node)], {}, {"slope": gamma.reshape(-1)})]


def _elu(node: SourceNode, ctx: ConvertContext) -> list[Node]:
    """alpha is MXNet's `slope` attribute (default 0.25)."""
    return [ctx.make(node, "ELU", [ctx.in_blob(node)], {"alpha": node.attrs.float("slope")})]


LEAKY_RELUS: dict[str, Build] = {"leaky": _leaky, "prelu": _prelu, "elu": _elu}


@converter("LeakyReLU")
def leaky_relu(node, ctx: ConvertContext):
    act = node.attrs.str("act_type")
    build = LEAKY_RELUS.get(act)
    if build is None:
        return ctx.refuse(node, f"LeakyReLU act_type={act}: only {', '.join(LEAKY_RELUS)} are "
                          "supported (selu, gelu and rrelu have no exact Caffe/ncnn layer)")
    return build(node, ctx)


@converter("clip")
def clip(node, ctx: ConvertContext):
    """Any bounds: every target has an exact Clip (caffe composes one from stock layers)."""
    lo, hi = node.attrs.float("a_min"), node.attrs.float("a_max")
    if not lo <= hi:
        return ctx.refuse(node, f"clip({lo:g}, {hi:g}): a_min above a_max")
    return [ctx.make(node, "Clip", [ctx.in_blob(node)], {"min": lo, "max": hi})]
