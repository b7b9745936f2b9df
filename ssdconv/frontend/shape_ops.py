"""Layout ops (transpose, SwapAxis, Flatten, Concat, Reshape, expand_dims, softmax,
SoftmaxOutput) and no-ops."""

from __future__ import annotations

from ..ir.graph import Node
from ..mxnet.source import SourceNode
from .registry import ConvertContext, converter
from .shuffle import shuffle_part


@converter("transpose")
def transpose(node, ctx: ConvertContext):
    axes = tuple(int(a) for a in node.attrs.tuple("axes"))
    ndim = len(ctx.in_shape(node))
    if not axes:
        axes = tuple(reversed(range(ndim)))
    if axes[0] != 0:
        return ctx.refuse(node, f"axes={axes}: the batch axis must stay first")
    return [ctx.make(node, "Permute", [ctx.in_blob(node)], {"order": axes})]


@converter("Flatten", "flatten")
def flatten(node, ctx: ConvertContext):
    return [ctx.make(node, "Flatten", [ctx.in_blob(node)], {"axis": 1, "end_axis": -1})]


@converter("Concat", "concat")
def concat(node, ctx: ConvertContext):
    ndim = len(ctx.in_shape(node))
    dim = node.attrs.int("dim")
    axis = dim % ndim
    if axis == 0:
        return ctx.refuse(node, "concatenation along the batch axis is not supported")
    blobs = [ctx.in_blob(node, i) for i in range(len(node.inputs))]
    return [ctx.make(node, "Concat", blobs, {"axis": axis})]


@converter("SwapAxis", "swapaxes")
def swap_axis(node, ctx: ConvertContext):
    """A Permute exchanging two non-batch axes; part of a channel shuffle, nothing (the
    shuffle's last reshape writes it)."""
    part = shuffle_part(node, ctx)
    if part is not None:
        return part
    ndim = len(ctx.in_shape(node))
    d1, d2 = node.attrs.int("dim1") % ndim, node.attrs.int("dim2") % ndim
    if 0 in (d1, d2) and d1 != d2:
        return ctx.refuse(node, f"swapping axes {d1} and {d2}: the batch axis must stay first")
    order = list(range(ndim))
    order[d1], order[d2] = order[d2], order[d1]
    return [ctx.make(node, "Permute", [ctx.in_blob(node)], {"order": tuple(order)})]


def _to_output_shape(node: SourceNode, ctx: ConvertContext, what: str) -> list[Node]:
    """A Reshape to MXNet's inferred output shape, the batch axis kept: how MXNet spelled the
    shape (0, -1 or its codes -2, -3, -4) no longer matters once MXNet has inferred it."""
    out = ctx.out_shape(node)
    if len(out) < 1 or out[0] != ctx.in_shape(node)[0]:
        return ctx.refuse(node, f"{what}: the batch axis must be kept")
    return [ctx.make(node, "Reshape", [ctx.in_blob(node)], {"dims": (0,) + tuple(out[1:])})]


@converter("Reshape", "reshape")
def reshape(node, ctx: ConvertContext):
    part = shuffle_part(node, ctx)
    if part is not None:
        return part
    a = node.attrs
    if a.bool("reverse"):
        return ctx.refuse(node, "reverse=True is not supported")
    dims = tuple(int(d) for d in a.tuple("shape"))
    if not dims:
        return ctx.refuse(node, "an empty shape is not supported")
    if dims[0] in (-3, -4):
        return ctx.refuse(node, f"shape={dims}: merging or splitting the batch axis is not "
                          "supported")
    return _to_output_shape(node, ctx, f"shape={dims}")


@converter("expand_dims")
def expand_dims(node, ctx: ConvertContext):
    """A new axis of size 1 after the batch axis: a Reshape (SE blocks' (1, C) -> (1, C, 1,
    1)). A new axis 0 would move the batch axis, and is refused."""
    ndim = len(ctx.in_shape(node)) + 1
    axis = node.attrs.int("axis") % ndim
    if axis == 0:
        return ctx.refuse(node, "expand_dims(axis=0) adds a new batch axis")
    return _to_output_shape(node, ctx, f"expand_dims(axis={axis})")


@converter("softmax", "SoftmaxActivation")
def softmax(node, ctx: ConvertContext):
    a = node.attrs
    ndim = len(ctx.in_shape(node))
    if node.op == "SoftmaxActivation":
        axis = 1 if a.str("mode") == "channel" else ndim - 1
    else:
        if a.str("temperature") not in ("None", "1", "1.0"):
            return ctx.refuse(node, f"temperature={a.str('temperature')} is not supported")
        if a.bool("use_length"):
            return ctx.refuse(node, "use_length=True is not supported")
        axis = a.int("axis") % ndim
    return [ctx.make(node, "Softmax", [ctx.in_blob(node)], {"axis": axis})]


@converter("SoftmaxOutput", "Softmax", unread=(1,))
def softmax_output(node, ctx: ConvertContext):
    """The softmax SoftmaxOutput computes at inference; its `label` (input 1) is read only by
    training and is unbound in exported checkpoints, so the walker ignores it. The axis:
    multi_output -> 1, otherwise the last one, preserve_shape or not (MXNet 1.9's forward views
    the input FlatTo2D, every axis but the last merged: measured on a (1, 4, 4, 5) input; on
    the usual (N, K) logits that is axis 1)."""
    ndim = len(ctx.in_shape(node))
    axis = 1 if node.attrs.bool("multi_output") else ndim - 1
    return [ctx.make(node, "Softmax", [ctx.in_blob(node)], {"axis": axis})]


@converter("Dropout", "_copy", "identity", "BlockGrad", "stop_gradient")
def noop(node, ctx: ConvertContext):
    return [ctx.make(node, "Identity", [ctx.in_blob(node)], {})]
