"""Element-wise sums, per-channel constant multiplies and arithmetic with a scalar."""

from __future__ import annotations

import math

import numpy as np

from .registry import ConvertContext, converter


@converter("elemwise_add", "_Plus", "_plus", "broadcast_add", "elemwise_sum", "add_n",
           "ElementWiseSum")
def add(node, ctx: ConvertContext):
    shapes = [ctx.in_shape(node, i) for i in range(len(node.inputs))]
    if any(s != shapes[0] for s in shapes):
        return ctx.refuse(node, f"inputs of shapes {shapes}: only same-shape sums are supported")
    if any(ctx.is_param_input(node, i) for i in range(len(node.inputs))):
        return ctx.refuse(node, "adding a constant tensor is not supported")
    blobs = [ctx.in_blob(node, i) for i in range(len(node.inputs))]
    return [ctx.make(node, "Eltwise", blobs, {"operation": "sum", "coeffs": ()})]


@converter("broadcast_mul")
def broadcast_mul(node, ctx: ConvertContext):
    """x * c with c a (1, C, 1, 1) constant: a per-channel Scale (VGG's init_scale, L2 scale)."""
    for const_pos, x_pos in ((1, 0), (0, 1)):
        c = ctx.param(node, const_pos)
        if c is None:
            continue
        shape = ctx.in_shape(node, x_pos)
        if c.ndim == 4 and c.shape[0] == 1 and c.shape[2:] == (1, 1) and c.shape[1] == shape[1]:
            return [ctx.make(node, "Scale", [ctx.in_blob(node, x_pos)], {"bias": False},
                             {"scale": c.reshape(-1)})]
        if c.size == 1:
            return [ctx.make(node, "Scale", [ctx.in_blob(node, x_pos)], {"bias": False},
                             {"scale": np.full(shape[1], float(c.reshape(-1)[0]))})]
    return ctx.refuse(node, "only multiplication by a per-channel constant is supported")


@converter("_mul_scalar")
def mul_scalar(node, ctx: ConvertContext):
    return _power(node, ctx, scale=node.attrs.float("scalar"))


@converter("_div_scalar")
def div_scalar(node, ctx: ConvertContext):
    """x / c as x * (1/c): the same float only when 1/c is exact, i.e. c a power of two."""
    c = node.attrs.float("scalar")
    mantissa, _ = math.frexp(c)
    if abs(mantissa) != 0.5:
        return ctx.refuse(node, f"division by {c:g}: only a power of two divides exactly as a "
                          "multiplication (Power)")
    return _power(node, ctx, scale=1.0 / c)


@converter("_plus_scalar")
def plus_scalar(node, ctx: ConvertContext):
    return _power(node, ctx, shift=node.attrs.float("scalar"))


@converter("_minus_scalar")
def minus_scalar(node, ctx: ConvertContext):
    return _power(node, ctx, shift=-node.attrs.float("scalar"))


def _power(node, ctx: ConvertContext, scale: float = 1.0, shift: float = 0.0):
    """One multiply or one add (Power with power 1): the single float32 rounding MXNet does.
    The scalar becomes a float32 in both, MXNet casting it to the tensor's type and the caffe
    and ncnn fields being float32."""
    return [ctx.make(node, "Power", [ctx.in_blob(node)],
                     {"power": 1.0, "scale": scale, "shift": shift})]
