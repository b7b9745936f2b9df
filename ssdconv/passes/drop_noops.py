"""Drop layers that compute nothing.

Given: Identity (Dropout, copy), a Reshape or Flatten whose output shape equals its input's, a
Concat of one input. Result: readers of the layer's output read its input instead. Guard: the
output is not a graph output (renaming an output would break the manifest's blob names).
"""

from __future__ import annotations

from ..ir.graph import Graph


def _is_noop(graph: Graph, node) -> bool:
    if node.op == "Identity":
        return True
    if node.op in ("Reshape", "Flatten"):
        return graph.shapes.get(node.inputs[0]) == graph.shapes.get(node.outputs[0])
    return node.op == "Concat" and len(node.inputs) == 1


def run(graph: Graph) -> int:
    count = 0
    for node in list(graph.nodes):
        if _is_noop(graph, node) and not graph.is_output(node.outputs[0]):
            graph.remove(node)
            graph.replace_blob(node.outputs[0], node.inputs[0])
            count += 1
    return count
