"""Fold a per-channel Scale into the Normalize before it.

Given: Normalize(x) -> Scale(s) (GluonCV's L2Normalization then broadcast_mul by its scale).
Result: one Normalize whose scale weights are multiplied by s. Guard: the Normalize output has
no other reader and is not a graph output; the Scale has no bias and its factors are weights
(not a second input).
"""

from __future__ import annotations

from ..ir.graph import Graph


def run(graph: Graph) -> int:
    count = 0
    for node in list(graph.nodes):
        if node.op != "Scale" or node.attrs["bias"] or len(node.inputs) != 1:
            continue
        prev = graph.producer(node.inputs[0])
        if prev is None or prev.op != "Normalize" or graph.is_output(prev.outputs[0]):
            continue
        if len(graph.consumers(prev.outputs[0])) != 1:
            continue
        prev.weights["scale"] = prev.weights["scale"] * node.weights["scale"]
        graph.remove(node)
        prev.outputs = [node.outputs[0]]
        count += 1
    return count
