"""Resampling: GluonCV's nearest upsample (two `repeat`s) and the `slice_like` crop after it;
MXNet's `UpSampling` (nearest) and `Crop`, RetinaFace's neck (insightface).

GluonCV's YOLOv3 upsamples with `x.repeat(axis=-1, repeats=2).repeat(axis=-2, repeats=2)`
(`model_zoo/yolo/yolo3.py` `_upsample`) and then crops the result to the route it is
concatenated with, `slice_like(up, route * 0, axes=(2, 3))`. Neither caffe-ssd nor ncnn has a
repeat layer, but the pair is exactly one nearest `Upsample`, so the outer repeat writes that
and the inner one writes nothing. A repeat that is not half of such a pair has no exact form
and is refused, saying why.
"""

from __future__ import annotations

from ..ir.graph import Node
from ..mxnet.source import SourceNode
from .registry import ConvertContext, converter

SPATIAL_AXES = {2, 3}


def _sole_repeat_reader(node: SourceNode, ctx: ConvertContext) -> SourceNode | None:
    """The repeat that is the only reader of `node`'s output (and it no graph output)."""
    readers = ctx.source.consumers(node.index)
    if len(readers) != 1 or readers[0].op != "repeat":
        return None
    if any(i == node.index for i, _ in ctx.source.heads):
        return None
    return readers[0]


def _repeat_of_input(node: SourceNode, ctx: ConvertContext) -> SourceNode | None:
    """The repeat whose only reader is `node` and whose output `node` reads."""
    producer = ctx.source.nodes[node.inputs[0][0]]
    if producer.op == "repeat" and _sole_repeat_reader(producer, ctx) is node:
        return producer
    return None


def _axis(node: SourceNode, ctx: ConvertContext) -> int | None:
    """The repeat's axis as a non-negative index, None for MXNet's flattening default."""
    axis = node.attrs.str("axis")
    if axis == "None":
        return None
    return int(axis) % len(ctx.in_shape(node))


def _pair_fault(inner: SourceNode, outer: SourceNode, ctx: ConvertContext) -> str | None:
    """Why repeat `inner` then repeat `outer` is not one nearest upsample, or None."""
    shape = ctx.in_shape(inner)
    axes = [_axis(inner, ctx), _axis(outer, ctx)]
    repeats = [inner.attrs.int("repeats"), outer.attrs.int("repeats")]
    if len(shape) != 4 or set(axes) != SPATIAL_AXES:
        return (f"repeats along axes {axes} of a {len(shape)}-D tensor: only one repeat along H "
                "and one along W of an NCHW tensor (a nearest upsample) is supported")
    if repeats[0] != repeats[1] or repeats[0] < 2:
        return (f"repeats {repeats} on H and W: only equal factors >= 2 make a nearest "
                "upsample")
    if _repeat_of_input(inner, ctx) is not None or _sole_repeat_reader(outer, ctx) is not None:
        return "more than two repeats in a row: only a pair (H and W) is supported"
    return None


LONE_REPEAT = ("a repeat on its own has no caffe-ssd or ncnn layer; only a repeat along H "
               "read only by a repeat along W (or the reverse), GluonCV's nearest upsample, "
               "is supported")


@converter("repeat")
def repeat(node: SourceNode, ctx: ConvertContext) -> list[Node]:
    """The outer repeat of a pair writes `Upsample(scale=r)` from the inner one's input; the
    inner one writes nothing (its only reader is the outer one)."""
    outer = _sole_repeat_reader(node, ctx)
    if outer is not None:
        fault = _pair_fault(node, outer, ctx)
        return ctx.refuse(node, fault) if fault else []
    inner = _repeat_of_input(node, ctx)
    if inner is None:
        return ctx.refuse(node, LONE_REPEAT)
    fault = _pair_fault(inner, node, ctx)
    if fault:
        return ctx.refuse(node, fault)
    return [ctx.make(node, "Upsample", [ctx.in_blob(inner)],
                     {"scale": node.attrs.int("repeats")})]


def crop(node: SourceNode, ctx: ConvertContext, starts: dict[int, int]) -> list[Node]:
    """Input 0 cut to the node's output shape, axis k kept from `starts[k]` (default 0): an
    Identity when nothing is cut, else one Slice per cut axis whose kept output is the middle
    piece [start, start + size) (the pieces before and after go to outputs nothing reads). The
    node's other inputs are read for their shape only, so they are not inputs of the IR nodes;
    their producers are still translated by the walker and removed by the `drop_unread` pass.
    Refuses a cut of the batch axis and a window the input does not hold."""
    src, out = ctx.in_shape(node), ctx.out_shape(node)
    if len(src) != len(out):
        return ctx.refuse(node, f"input {src} and output {out} differ in rank")
    cut = [axis for axis, (a, b) in enumerate(zip(src, out))
           if a != b or starts.get(axis, 0)]
    if 0 in cut:
        return ctx.refuse(node, "cropping the batch axis is not supported")
    bad = [(axis, starts.get(axis, 0), out[axis], src[axis]) for axis in cut
           if not 0 <= starts.get(axis, 0) <= starts.get(axis, 0) + out[axis] <= src[axis]]
    if bad:
        return ctx.refuse(node, "; ".join(
            f"axis {a}: window [{lo}, {lo + n}) outside an axis of {size}"
            for a, lo, n, size in bad))
    if not cut:
        return [ctx.make(node, "Identity", [ctx.in_blob(node)], {})]
    blob, nodes = ctx.in_blob(node), []
    for k, axis in enumerate(cut):
        last = k == len(cut) - 1
        kept = node.name if last else f"{node.name}_crop{axis}"
        lo, hi = starts.get(axis, 0), starts.get(axis, 0) + out[axis]
        points = tuple(p for p in (lo, hi) if 0 < p < src[axis])
        outputs = [kept if p == lo else f"{node.name}_drop{axis}" + ("_head" if p == 0 else "")
                   for p in (0, *points)]
        nodes.append(Node(name=f"{node.name}_axis{axis}" if not last else node.name,
                          op="Slice", inputs=[blob], outputs=outputs,
                          attrs={"axis": axis, "slice_points": points}, source=node.name))
        blob = kept
    return nodes


@converter("slice_like")
def slice_like(node: SourceNode, ctx: ConvertContext) -> list[Node]:
    """x cropped from index 0 to `like`'s sizes (`crop`)."""
    return crop(node, ctx, {})


@converter("Crop")
def crop_op(node: SourceNode, ctx: ConvertContext) -> list[Node]:
    """MXNet's Crop (crop-inl.h, checked against MXNet 1.9.1): the H, W window of the output's
    size (the second input's H, W with num_args 2, `h_w` with one input) starting at `offset`
    (default (0, 0)), or with `center_crop` at ((H - h) // 2, (W - w) // 2), `offset` then
    ignored. RetinaFace's `Crop(up, lateral)` is the top-left crop: one Slice per trimmed axis.
    An offset crop keeps a Slice's middle piece; nothing is computed, so it is exact."""
    a = node.attrs
    src, out = ctx.in_shape(node), ctx.out_shape(node)
    if len(src) != 4:
        return ctx.refuse(node, f"a {len(src)}-D input: Crop works on NCHW")
    if a.bool("center_crop"):
        starts = {2: (src[2] - out[2]) // 2, 3: (src[3] - out[3]) // 2}
    else:
        starts = dict(zip((2, 3), a.int_tuple("offset", 2, 0)))
    return crop(node, ctx, starts)


@converter("UpSampling")
def upsampling(node: SourceNode, ctx: ConvertContext) -> list[Node]:
    """MXNet's UpSampling with sample_type 'nearest', one input and an integer scale >= 2 is
    y[c, i, j] = x[c, i // s, j // s] (checked against MXNet 1.9.1): the IR's Upsample.
    Bilinear (a learned or fixed Deconvolution weight input) and several inputs are refused."""
    a = node.attrs
    kind, args, scale = a.str("sample_type"), a.int("num_args"), a.int("scale")
    if kind != "nearest" or args != 1 or len(node.inputs) != 1:
        return ctx.refuse(node, f"sample_type={kind} with num_args={args}: only nearest on one "
                          "input is supported")
    if scale < 2 or len(ctx.in_shape(node)) != 4:
        return ctx.refuse(node, f"scale {scale} on a {len(ctx.in_shape(node))}-D input: only "
                          "an integer scale >= 2 of an NCHW tensor is supported")
    return [ctx.make(node, "Upsample", [ctx.in_blob(node)], {"scale": scale})]
