"""Convolution (plain, grouped and dilated)."""

from __future__ import annotations

from .registry import ConvertContext, converter


@converter("Convolution")
def convolution(node, ctx: ConvertContext):
    a = node.attrs
    kernel = a.tuple("kernel")
    if len(kernel) != 2:
        return ctx.refuse(node, f"kernel {kernel}: only 2-D convolutions are supported")
    if a.str("layout") not in ("None", "NCHW"):
        return ctx.refuse(node, f"layout {a.str('layout')}: only NCHW is supported")
    weight = ctx.param(node, 1)
    if weight is None:
        return ctx.refuse(node, "weights are computed at run time, not a parameter")
    no_bias = a.bool("no_bias")
    weights = {"weight": weight}
    if not no_bias:
        bias = ctx.param(node, 2)
        if bias is None:
            return ctx.refuse(node, "bias is computed at run time, not a parameter")
        weights["bias"] = bias
    attrs = {
        "num_output": a.int("num_filter"),
        "kernel": tuple(int(k) for k in kernel),
        "stride": a.int_tuple("stride", 2, 1),
        "pad": a.int_tuple("pad", 2, 0),
        "dilation": a.int_tuple("dilate", 2, 1),
        "group": a.int("num_group"),
        "bias": not no_bias,
    }
    return [ctx.make(node, "Conv", [ctx.in_blob(node)], attrs, weights)]
