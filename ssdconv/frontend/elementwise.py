"""Element-wise sums and products, per-channel multiplies (by a constant or by a computed
(1, C, 1, 1) factor: squeeze-excitation) and arithmetic with a scalar."""

from __future__ import annotations

import functools
import math

import numpy as np

from ..ir.graph import Node
from ..mxnet.source import SourceNode
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


def _product(node: SourceNode, ctx: ConvertContext) -> list[Node]:
    """a * b of one shape: Eltwise prod (MobileNetV3's hard-swish x * hsigmoid(x))."""
    blobs = [ctx.in_blob(node, i) for i in range(len(node.inputs))]
    return [ctx.make(node, "Eltwise", blobs, {"operation": "prod", "coeffs": ()})]


def _channel_factors(node: SourceNode, ctx: ConvertContext) -> tuple[int, int] | None:
    """(x position, s position) when input s is a computed (1, C, 1, 1) factor of the
    (1, C, H, W) input x; None otherwise."""
    for x_pos, s_pos in ((0, 1), (1, 0)):
        x, s = ctx.in_shape(node, x_pos), ctx.in_shape(node, s_pos)
        if len(x) == 4 and len(s) == 4 and s[0] == 1 and s[1] == x[1] and s[2:] == (1, 1):
            return x_pos, s_pos
    return None


def _scale_by_factors(node: SourceNode, ctx: ConvertContext, x_pos: int,
                      s_pos: int) -> list[Node]:
    """x * s with s computed (1, C, 1, 1): s flattened to (1, C), then the two-input Scale
    (y = x * s[c] over H, W), which caffe, ncnn and ONNX each run on a 4-D x."""
    flat = ctx.make(node, "Flatten", [ctx.in_blob(node, s_pos)], {"axis": 1, "end_axis": -1},
                    suffix="_factors")
    scaled = ctx.make(node, "Scale", [ctx.in_blob(node, x_pos), flat.outputs[0]],
                      {"bias": False})
    return [flat, scaled]


@converter("elemwise_mul", "_mul", "_Mul")
def elemwise_mul(node, ctx: ConvertContext):
    if any(ctx.is_param_input(node, i) for i in range(len(node.inputs))):
        return ctx.refuse(node, "multiplying by a constant tensor element-wise is not supported")
    return _product(node, ctx)


@converter("broadcast_mul")
def broadcast_mul(node, ctx: ConvertContext):
    """x * c with c a (1, C, 1, 1) constant: a per-channel Scale (VGG's init_scale, L2 scale);
    with c computed: a Scale by a second input (squeeze-excitation); two computed tensors of
    one shape: their product."""
    constant = _scale_by_constant(node, ctx)
    if constant is not None:
        return constant
    if any(ctx.is_param_input(node, i) for i in range(2)):
        return ctx.refuse(node, "only multiplication by a per-channel constant is supported")
    if ctx.in_shape(node, 0) == ctx.in_shape(node, 1):
        return _product(node, ctx)
    positions = _channel_factors(node, ctx)
    if positions is None:
        return ctx.refuse(node, f"inputs of shapes {ctx.in_shape(node, 0)} and "
                          f"{ctx.in_shape(node, 1)}: only one shape, or (1, C, H, W) times "
                          "(1, C, 1, 1), is supported")
    return _scale_by_factors(node, ctx, *positions)


def _scale_by_constant(node: SourceNode, ctx: ConvertContext) -> list[Node] | None:
    """x * c with c a constant (1, C, 1, 1) or scalar tensor: a Scale with weights; None when
    neither input is such a constant."""
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
    return None


@converter("_mul_scalar")
def mul_scalar(node, ctx: ConvertContext):
    return _power(node, ctx, scale=node.attrs.float("scalar"))


@functools.cache
def division_cost(c: float) -> dict:
    """How far float32 x * float32(1/c) lands from float32 x / c, measured on every float32 x
    in [1, 2): both scale with x's exponent, so that binade stands for every normal x (not the
    subnormal results). Returns the largest distance in ulps and the share of x it hits."""
    x = (np.arange(2**23, dtype=np.uint32) + np.uint32(0x3F800000)).view(np.float32)
    c32 = np.float32(c)
    got = (x * (np.float32(1) / c32)).view(np.int32).astype(np.int64)
    want = (x / c32).view(np.int32).astype(np.int64)
    ulps = np.abs(got - want)
    return {"max_ulp": int(ulps.max()), "share_differing": round(float((ulps > 0).mean()), 4)}


@converter("_div_scalar")
def div_scalar(node, ctx: ConvertContext):
    """x / c as x * (1/c): the same float when 1/c is exact, i.e. c a power of two. Otherwise
    (MobileNetV3's hard-sigmoid relu6(x + 3) / 6) no target has an exact division by a scalar
    (Caffe has none at all), so it is the multiplication by float32(1/c), recorded as an
    approximation with its measured per-element cost (`division_cost`)."""
    c = node.attrs.float("scalar")
    if c == 0 or not math.isfinite(c):
        return ctx.refuse(node, f"division by {c:g}")
    mantissa, _ = math.frexp(c)
    if abs(mantissa) != 0.5:
        cost = division_cost(c)
        ctx.approximate(node, f"x / {c:g} computed as x * float32(1 / {c:g}) (no target divides "
                        "by a scalar exactly)", {"divisor": c, **cost})
    return _power(node, ctx, scale=float(np.float32(1) / np.float32(c)))


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
