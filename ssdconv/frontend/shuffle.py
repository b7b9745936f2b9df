"""ShuffleNet's channel shuffle: three MXNet nodes, one IR op.

GluonCV writes it as `Reshape (0, -4, g, -1, -2)` -> `SwapAxis(dim1=1, dim2=2)` ->
`Reshape (0, -3, -2)` (model_zoo/shufflenet.py), which mxnet2ncnn's fuse_shufflechannel also
matches. The three together are `ShuffleChannel(g)`: the last reshape writes it from the first
one's input, the other two write nothing (each is read only by the next). The match is on
MXNet's inferred shapes, not on how the reshapes spell them: (1, C, H, W) -> (1, g, C/g, H, W)
-> axes 1 and 2 swapped -> (1, C, H, W). Anything else converts node by node (Reshape, Permute).
"""

from __future__ import annotations

from ..ir.graph import Node
from ..mxnet.source import SourceNode
from .registry import ConvertContext

RESHAPES = ("Reshape", "reshape")
SWAPS = ("SwapAxis", "swapaxes")


def _sole_reader(node: SourceNode, ctx: ConvertContext) -> SourceNode | None:
    """The only reader of `node`'s output, when it has one and is no graph output."""
    readers = ctx.source.consumers(node.index)
    if len(readers) != 1 or any(i == node.index for i, _ in ctx.source.heads):
        return None
    return readers[0]


def _producer(node: SourceNode, ctx: ConvertContext) -> SourceNode:
    return ctx.source.nodes[node.inputs[0][0]]


def _group(first: SourceNode, swap: SourceNode, last: SourceNode,
           ctx: ConvertContext) -> int | None:
    """The shuffle's group count if first -> swap -> last is a channel shuffle, else None."""
    if first.op not in RESHAPES or swap.op not in SWAPS or last.op not in RESHAPES:
        return None
    if _sole_reader(first, ctx) is not swap or _sole_reader(swap, ctx) is not last:
        return None
    if first.attrs.bool("reverse") or last.attrs.bool("reverse"):
        return None
    shape = ctx.in_shape(first)
    split = ctx.out_shape(first)
    if len(shape) != 4 or len(split) != 5 or shape[0] != 1 or ctx.out_shape(last) != shape:
        return None
    _, c, h, w = shape
    group = split[1]
    dims = {swap.attrs.int("dim1") % 5, swap.attrs.int("dim2") % 5}
    if split != (1, group, c // group, h, w) or dims != {1, 2}:
        return None
    return group


def _triples(node: SourceNode, ctx: ConvertContext):
    """Every (first, swap, last) triple `node` could take part in."""
    if node.op in SWAPS:
        last = _sole_reader(node, ctx)
        if last is not None:
            yield _producer(node, ctx), node, last
        return
    swap = _sole_reader(node, ctx)
    last = _sole_reader(swap, ctx) if swap is not None else None
    if last is not None:
        yield node, swap, last
    swap = _producer(node, ctx)
    if swap.op in SWAPS:
        yield _producer(swap, ctx), swap, node


def shuffle_part(node: SourceNode, ctx: ConvertContext) -> list[Node] | None:
    """What `node` writes as part of a channel shuffle (the last reshape: the ShuffleChannel;
    the others: nothing), or None when it is no part of one."""
    for first, swap, last in _triples(node, ctx):
        group = _group(first, swap, last, ctx)
        if group is None:
            continue
        if node is not last:
            return []
        return [ctx.make(node, "ShuffleChannel", [ctx.in_blob(first)], {"group": group})]
    return None
