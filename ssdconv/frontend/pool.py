"""Pooling: MXNet 'valid' rounds down, 'full' up; the IR says which, emitters make it exact."""

from __future__ import annotations

from ..ir.shapes import pool_out
from .registry import ConvertContext, converter


@converter("Pooling")
def pooling(node, ctx: ConvertContext):
    a = node.attrs
    method = a.str("pool_type")
    if method not in ("max", "avg"):
        return ctx.refuse(node, f"pool_type={method}: only max and avg are supported")
    if a.str("layout") not in ("None", "NCHW"):
        return ctx.refuse(node, f"layout {a.str('layout')}: only NCHW is supported")
    glob = a.bool("global_pool")
    conv = a.str("pooling_convention")
    if conv not in ("valid", "full") and not glob:
        return ctx.refuse(node, f"pooling_convention={conv}: only valid and full are supported")
    kernel = a.int_tuple("kernel", 2, 1)
    stride = a.int_tuple("stride", 2, 1)
    pad = a.int_tuple("pad", 2, 0)
    count_pad = a.bool("count_include_pad")
    if method == "avg" and not count_pad and any(pad) and not glob:
        return ctx.refuse(node, "avg pooling with count_include_pad=False and padding: Caffe "
                          "always counts the padding")
    rounding = "floor" if conv == "valid" else "ceil"
    if not glob and rounding == "ceil":
        _, _, h, w = ctx.in_shape(node)
        _, _, oh, ow = ctx.out_shape(node)
        if (pool_out(h, kernel[0], stride[0], pad[0], "ceil"),
                pool_out(w, kernel[1], stride[1], pad[1], "ceil")) != (oh, ow):
            return ctx.refuse(node, "pooling_convention=full gives a shape Caffe's ceil rule "
                              "does not reproduce")
    attrs = {"method": method, "kernel": kernel, "stride": stride, "pad": pad,
             "global_pool": glob, "round": rounding, "count_include_pad": True}
    return [ctx.make(node, "Pool", [ctx.in_blob(node)], attrs)]


@converter("_contrib_AdaptiveAvgPooling2D")
def adaptive_avg_pooling(node, ctx: ConvertContext):
    """Output size 1x1 (GluonCV's SE blocks) is a global average pool; other sizes average
    windows of varying size, which no Caffe/ncnn pooling reproduces, and are refused."""
    _, _, oh, ow = ctx.out_shape(node)
    if (oh, ow) != (1, 1):
        return ctx.refuse(node, f"output size {oh}x{ow}: only output_size 1 (a global average "
                          "pool) is supported")
    attrs = {"method": "avg", "kernel": (1, 1), "stride": (1, 1), "pad": (0, 0),
             "global_pool": True, "round": "floor", "count_include_pad": True}
    return [ctx.make(node, "Pool", [ctx.in_blob(node)], attrs)]
