"""slice_axis and SliceChannel/split: an IR Slice (Caffe's, several outputs).

slice_axis keeps one piece [begin, end) of an axis; the Slice cuts there and sends the rest to
outputs nothing reads. split cuts an axis into equal parts, one output each (ShuffleNet v2's
channel split is a slice_axis pair or a split in two).
"""

from __future__ import annotations

from ..ir.graph import Node
from ..mxnet.source import SourceNode
from .registry import ConvertContext, converter


def _bound(value: str, size: int, default: int) -> int:
    """A slice_axis bound: 'None' means `default`, negative counts from the end."""
    if value == "None":
        return default
    v = int(float(value))
    return v + size if v < 0 else v


@converter("slice_axis")
def slice_axis(node: SourceNode, ctx: ConvertContext) -> list[Node]:
    shape = ctx.in_shape(node)
    axis = node.attrs.int("axis") % len(shape)
    if axis == 0:
        return ctx.refuse(node, "slicing the batch axis is not supported")
    size = shape[axis]
    begin = _bound(node.attrs.str("begin"), size, 0)
    end = _bound(node.attrs.str("end"), size, size)
    if not 0 <= begin < end <= size:
        return ctx.refuse(node, f"slice [{begin}, {end}) of an axis of {size}")
    if (begin, end) == (0, size):
        return [ctx.make(node, "Identity", [ctx.in_blob(node)], {})]
    points = tuple(p for p in (begin, end) if 0 < p < size)
    outputs = []
    for lo in (0, *points):
        outputs.append(node.name if lo == begin else f"{node.name}_drop{lo}")
    return [Node(name=node.name, op="Slice", inputs=[ctx.in_blob(node)], outputs=outputs,
                 attrs={"axis": axis, "slice_points": points}, source=node.name)]


@converter("SliceChannel", "split")
def split(node: SourceNode, ctx: ConvertContext) -> list[Node]:
    """num_outputs equal parts along `axis`, output k named as the walker names it. With
    squeeze_axis, parts of size 1 each lose that axis: a Reshape after each Slice output."""
    a = node.attrs
    shape = ctx.in_shape(node)
    axis = a.int("axis") % len(shape)
    parts = a.int("num_outputs")
    if axis == 0:
        return ctx.refuse(node, "splitting the batch axis is not supported")
    if shape[axis] % parts:
        return ctx.refuse(node, f"{parts} parts of an axis of {shape[axis]}")
    squeeze = a.bool("squeeze_axis")
    if squeeze and shape[axis] != parts:
        return ctx.refuse(node, "squeeze_axis=True on parts longer than 1")
    if squeeze and len(shape) == 2:
        return ctx.refuse(node, "squeeze_axis=True would leave only the batch axis")
    names = [ctx.blob(node.index, k) for k in range(parts)]
    step = shape[axis] // parts
    pieces = [f"{b}_unsqueezed" for b in names] if squeeze else names
    cut = Node(name=node.name if not squeeze else f"{node.name}_slice", op="Slice",
               inputs=[ctx.in_blob(node)], outputs=pieces,
               attrs={"axis": axis, "slice_points": tuple(step * k for k in range(1, parts))},
               source=node.name)
    if parts == 1:
        cut = Node(name=cut.name, op="Identity", inputs=cut.inputs, outputs=pieces,
                   source=node.name)
    if not squeeze:
        return [cut]
    kept = (0,) + tuple(d for i, d in enumerate(shape) if i not in (0, axis))
    return [cut, *(Node(name=b if k else node.name, op="Reshape", inputs=[p], outputs=[b],
                        attrs={"dims": kept}, source=node.name)
                   for k, (b, p) in enumerate(zip(names, pieces)))]
