"""The registry of MXNet op converters, one family of ops per module.

A converter is a pure function of (source node, context) returning IR nodes. It reports what it
cannot do through `ctx.refuse`, so one walk over the graph collects every unsupported op and
attribute value before anything is written, and what it computes only approximately through
`ctx.approximate`, which lands in the manifest. Registering an op twice is an error.

A converter may declare inputs it never reads (`@converter("SoftmaxOutput", unread=(1,))`: the
training label, unbound in an exported checkpoint); the walker then neither translates nor
asks for their ancestors, without knowing any op by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import Refusal
from ..ir.graph import Node
from ..mxnet.source import SourceGraph, SourceNode
from ..registry import Registry

CONVERTERS = Registry("converter")
#: op -> positions of the inputs its converter never reads (the walker skips their ancestors)
UNREAD_INPUTS: dict[str, frozenset[int]] = {}


def converter(*ops: str, unread: tuple[int, ...] = ()):
    """Register a converter: `@converter("Op", "Alias")`, `unread` naming input positions the
    converter ignores (training-only inputs)."""
    register = CONVERTERS.register(*ops)

    def add(fn):
        for op in ops:
            UNREAD_INPUTS[op] = frozenset(unread)
        return register(fn)

    return add


@dataclass
class ConvertContext:
    """Everything one conversion needs: the source graph and the refusals collected so far."""

    source: SourceGraph
    refusals: list[Refusal] = field(default_factory=list)
    approximations: list[dict] = field(default_factory=list)  # manifest entries
    aliases: dict[int, str] = field(default_factory=dict)  # node index -> blob name override

    def refuse(self, node: SourceNode, reason: str) -> list[Node]:
        self.refusals.append(Refusal(node.name, node.op, reason))
        return []

    def approximate(self, node: SourceNode, what: str, cost: dict) -> None:
        """Record that `node` is converted to something not bit-equal to MXNet's arithmetic:
        `what` says how, `cost` gives the measured per-element figures (a manifest entry)."""
        self.approximations.append({"what": what, "where": node.name, **cost})

    def blob(self, index: int, out: int = 0) -> str:
        """The IR blob name of output `out` of source node `index`."""
        if index in self.aliases and out == 0:
            return self.aliases[index]
        name = self.source.nodes[index].name
        return name if out == 0 else f"{name}_out{out}"

    def in_blob(self, node: SourceNode, pos: int = 0) -> str:
        i, k = node.inputs[pos]
        return self.blob(i, k)

    def in_shape(self, node: SourceNode, pos: int = 0) -> tuple[int, ...]:
        i, k = node.inputs[pos]
        return self.source.shape(i, k)

    def out_shape(self, node: SourceNode) -> tuple[int, ...]:
        return self.source.shape(node.index, 0)

    def param(self, node: SourceNode, pos: int) -> np.ndarray | None:
        """The constant array feeding input `pos`, or None when that input is computed."""
        src = self.source.nodes[node.inputs[pos][0]]
        if src.op == "null" and src.name in self.source.params:
            return np.asarray(self.source.params[src.name], dtype=np.float64)
        return None

    def is_param_input(self, node: SourceNode, pos: int) -> bool:
        return self.param(node, pos) is not None

    def make(self, node: SourceNode, op: str, inputs: list[str], attrs: dict,
             weights: dict | None = None, suffix: str = "") -> Node:
        """An IR node named after its source node, writing that node's blob."""
        name = node.name + suffix
        return Node(name=name, op=op, inputs=inputs, outputs=[name], attrs=attrs,
                    weights=weights or {}, source=node.name)
