"""Resampling: GluonCV's nearest upsample (two `repeat`s) and the `slice_like` crop after it.

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


@converter("slice_like")
def slice_like(node: SourceNode, ctx: ConvertContext) -> list[Node]:
    """x cropped from index 0 to `like`'s sizes: an Identity when nothing is cut, else one
    Slice per cut axis keeping the first part (the rest goes to an output nothing reads).
    `like` is read for its shape only, so it is not an input of the IR nodes; its producers are
    still translated by the walker and removed by the `drop_unread` pass."""
    src, out = ctx.in_shape(node), ctx.out_shape(node)
    cut = [axis for axis, (a, b) in enumerate(zip(src, out)) if a != b]
    if 0 in cut:
        return ctx.refuse(node, "cropping the batch axis is not supported")
    if not cut:
        return [ctx.make(node, "Identity", [ctx.in_blob(node)], {})]
    blob, nodes = ctx.in_blob(node), []
    for k, axis in enumerate(cut):
        last = k == len(cut) - 1
        kept = node.name if last else f"{node.name}_crop{axis}"
        nodes.append(Node(name=f"{node.name}_axis{axis}" if not last else node.name,
                          op="Slice", inputs=[blob], outputs=[kept, f"{node.name}_drop{axis}"],
                          attrs={"axis": axis, "slice_points": (out[axis],)},
                          source=node.name))
        blob = kept
    return nodes
