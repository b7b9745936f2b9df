"""Drop nodes whose results nothing uses.

Why: the walker translates every ancestor of the head's roots, including those of inputs read
for their shape only (GluonCV's `slice_like(up, route * 0)` reads `route * 0` for its size, and
the IR Slice it becomes does not read it at all), so such branches end in nodes nobody reads.
Given: a node none of whose outputs is read by another node or is a graph output (Input nodes
excepted: an input stays an input). Result: the node is removed; repeated until none is left,
as removing one can leave its producers unread.
"""

from __future__ import annotations

from ..ir.graph import Graph


def run(graph: Graph) -> int:
    count = 0
    while True:
        read = {b for n in graph.nodes for b in n.inputs} | set(graph.outputs)
        unread = [n for n in graph.nodes
                  if n.op != "Input" and not any(b in read for b in n.outputs)]
        if not unread:
            return count
        for node in unread:
            graph.remove(node)
        count += len(unread)
