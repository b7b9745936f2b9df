"""FullyConnected: Caffe's InnerProduct, the input flattened from axis 1.

MXNet's `flatten=True` (Gluon's Dense default) flattens every non-batch axis in C-major order,
which is Caffe's InnerProduct rule; `flatten=False` applies the weight to the last axis only,
the same thing on a 2-D input and something else above it, which is refused.
"""

from __future__ import annotations

from ..ir.graph import Node
from ..mxnet.source import SourceNode
from .registry import ConvertContext, converter


@converter("FullyConnected")
def fully_connected(node: SourceNode, ctx: ConvertContext) -> list[Node]:
    a = node.attrs
    shape = ctx.in_shape(node)
    if not a.bool("flatten") and len(shape) != 2:
        return ctx.refuse(node, f"flatten=False on a {len(shape)}-D input {shape}: only a 2-D "
                          "input (where it equals flatten=True) maps to InnerProduct")
    weight = ctx.param(node, 1)
    if weight is None:
        return ctx.refuse(node, "weights are computed at run time, not a parameter")
    weights = {"weight": weight.reshape(weight.shape[0], -1)}
    no_bias = a.bool("no_bias")
    if not no_bias:
        bias = ctx.param(node, 2)
        if bias is None:
            return ctx.refuse(node, "bias is computed at run time, not a parameter")
        weights["bias"] = bias
    attrs = {"num_output": a.int("num_hidden"), "bias": not no_bias}
    return [ctx.make(node, "InnerProduct", [ctx.in_blob(node)], attrs, weights)]
