"""Element-wise activations: ReLU, LeakyReLU, clip (ReLU6), sigmoid and exp (YOLO's box and
score transforms)."""

from __future__ import annotations

from .registry import ConvertContext, converter


@converter("Activation")
def activation(node, ctx: ConvertContext):
    act = node.attrs.str("act_type")
    if act == "sigmoid":
        return sigmoid(node, ctx)
    if act != "relu":
        return ctx.refuse(node, f"act_type={act}: only relu and sigmoid are supported")
    return [ctx.make(node, "ReLU", [ctx.in_blob(node)], {"negative_slope": 0.0})]


@converter("sigmoid")
def sigmoid(node, ctx: ConvertContext):
    return [ctx.make(node, "Sigmoid", [ctx.in_blob(node)], {})]


@converter("exp")
def exp(node, ctx: ConvertContext):
    return [ctx.make(node, "Exp", [ctx.in_blob(node)], {})]


@converter("relu")
def relu(node, ctx: ConvertContext):
    return [ctx.make(node, "ReLU", [ctx.in_blob(node)], {"negative_slope": 0.0})]


@converter("LeakyReLU")
def leaky_relu(node, ctx: ConvertContext):
    act = node.attrs.str("act_type")
    if act != "leaky":
        return ctx.refuse(node, f"LeakyReLU act_type={act}: only 'leaky' is supported")
    return [ctx.make(node, "ReLU", [ctx.in_blob(node)],
                     {"negative_slope": node.attrs.float("slope")})]


@converter("clip")
def clip(node, ctx: ConvertContext):
    lo, hi = node.attrs.float("a_min"), node.attrs.float("a_max")
    if lo != 0.0 or hi <= 0:
        return ctx.refuse(node, f"clip({lo:g}, {hi:g}): only clip(0, M) (ReLU6-like) is supported")
    return [ctx.make(node, "Clip", [ctx.in_blob(node)], {"min": lo, "max": hi})]
