"""Element-wise sums and per-channel constant multiplies."""

from __future__ import annotations

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
