"""Layout ops (transpose, Flatten, Concat, Reshape, softmax) and no-ops."""

from __future__ import annotations

from .registry import ConvertContext, converter


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


@converter("Reshape", "reshape")
def reshape(node, ctx: ConvertContext):
    a = node.attrs
    if a.bool("reverse"):
        return ctx.refuse(node, "reverse=True is not supported")
    dims = tuple(int(d) for d in a.tuple("shape"))
    if any(d < -1 for d in dims):
        return ctx.refuse(node, f"shape={dims}: MXNet's special codes -2/-3/-4 are not supported")
    out = ctx.out_shape(node)
    if not dims or out[0] != ctx.in_shape(node)[0]:
        return ctx.refuse(node, f"shape={dims}: the batch axis must be kept")
    return [ctx.make(node, "Reshape", [ctx.in_blob(node)], {"dims": (0,) + tuple(out[1:])})]


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


@converter("Dropout", "_copy", "identity", "BlockGrad", "stop_gradient")
def noop(node, ctx: ConvertContext):
    return [ctx.make(node, "Identity", [ctx.in_blob(node)], {})]
