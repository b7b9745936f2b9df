"""The walker: source graph -> IR for everything the detector head's predictions depend on.

Only the ancestors of the head's walk roots (`Head.walk_roots`; SSD: the loc and conf tensors)
are translated op by op; the tail after them (SSD: anchors, decoders, NMS) is replaced by the
layers the head synthesises. Every node
is asked to convert before anything is written, and every refusal is reported at once.
"""

from __future__ import annotations

from ..errors import Refusal, UnsupportedError
from ..ir.graph import Graph, Node
from ..mxnet.source import SourceGraph
from . import (  # noqa: F401 (registration)
    activation,
    conv,
    dense,
    elementwise,
    norm,
    pool,
    resample,
    shape_ops,
    shuffle,
    slicing,
)
from .registry import CONVERTERS, UNREAD_INPUTS, ConvertContext


def read_ancestors(source: SourceGraph, roots: list[int]) -> set[int]:
    """Indices of every node the roots depend on, themselves included, skipping the inputs a
    converter declares it never reads (`UNREAD_INPUTS`: SoftmaxOutput's label)."""
    return source.ancestors(roots, UNREAD_INPUTS)


def walk(source: SourceGraph, roots: list[int], adapter=None) -> Graph:
    """Translate the ancestors of `roots` into an IR graph, or raise listing every refusal.

    With an input adapter (normalisation baked into the graph), its nodes are skipped and its
    output becomes the IR's NCHW input blob."""
    ctx = ConvertContext(source)
    needed = read_ancestors(source, roots)
    shape = tuple(source.input_shape)
    if adapter is not None:
        needed -= set(adapter.nodes)
        ctx.aliases[adapter.end] = source.input_name
        shape = tuple(source.shape(adapter.end))
    graph = Graph(inputs={source.input_name: shape})
    graph.nodes.append(Node(name=source.input_name, op="Input", inputs=[],
                            outputs=[source.input_name], attrs={"shape": shape},
                            source=source.input_name))
    for node in source.nodes:
        if node.index not in needed or node.op == "null":
            continue
        fn = CONVERTERS.get(node.op)
        if fn is None:
            ctx.refusals.append(Refusal(node.name, node.op, "no converter for this op"))
            continue
        graph.nodes.extend(fn(node, ctx))
    unknown_inputs = [n for n in source.nodes if n.index in needed and n.op == "null"
                      and n.name != source.input_name and n.name not in source.params]
    for n in unknown_inputs:
        ctx.refusals.append(Refusal(n.name, "null", "an input other than 'data'"))
    if ctx.refusals:
        raise UnsupportedError(ctx.refusals, where=source.origin)
    graph.approximations = list(ctx.approximations)
    return graph
