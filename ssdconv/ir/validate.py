"""Structural checks on an IR graph, run after every pass.

A pass that leaves a dangling blob, a duplicate producer, an unknown op or a missing attribute is
a bug in ssdconv; this catches it at the pass that caused it rather than in a runtime far away.
"""

from __future__ import annotations

from .graph import Graph
from .ops import OP_SPECS
from .shapes import infer_shapes


def validate(graph: Graph, after: str = "") -> None:
    """Raise RuntimeError naming the first inconsistency; refresh shapes when all is well."""
    where = f" after {after}" if after else ""
    produced: set[str] = set(graph.inputs)
    names: set[str] = set()
    for node in graph.nodes:
        spec = OP_SPECS.get(node.op)
        if spec is None:
            raise RuntimeError(f"unknown IR op {node.op} at {node.name}{where}")
        if node.name in names:
            raise RuntimeError(f"duplicate node name {node.name}{where}")
        names.add(node.name)
        missing = [a for a in spec["attrs"] if a not in node.attrs]
        if missing:
            raise RuntimeError(f"{node.name} ({node.op}) lacks attrs {missing}{where}")
        for b in node.inputs:
            if b not in produced:
                raise RuntimeError(f"{node.name} reads {b}, which nothing before it writes{where}")
        for b in node.outputs:
            if b in produced and node.op != "Input":
                raise RuntimeError(f"blob {b} written twice ({node.name}){where}")
            produced.add(b)
    for b in graph.outputs:
        if b not in produced:
            raise RuntimeError(f"graph output {b} is never written{where}")
    infer_shapes(graph)
