"""The read-only source graph: an MXNet symbol's nodes, its parameters and inferred shapes.

Everything downstream (support check, converters, SSD head matching) reads this one structure,
so the MXNet JSON layout is parsed in exactly one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError
from .attrs import AttrReader


@dataclass
class SourceNode:
    """One MXNet symbol node. `inputs` are (node index, output index) pairs."""

    index: int
    name: str
    op: str
    raw_attrs: dict[str, str]
    inputs: list[tuple[int, int]]

    @property
    def attrs(self) -> AttrReader:
        return AttrReader(self.op, self.raw_attrs)


@dataclass
class SourceGraph:
    """Nodes in the symbol's topological order, plus params and output shapes.

    `params` maps a parameter name to its array (arg and aux params together; the symbol's own
    node names say which is which). `shapes[(i, k)]` is output k of node i.
    """

    nodes: list[SourceNode]
    heads: list[tuple[int, int]]
    params: dict[str, np.ndarray]
    input_name: str
    input_shape: tuple[int, ...]
    shapes: dict[tuple[int, int], tuple[int, ...]] = field(default_factory=dict)
    symbol_json: str = ""
    origin: str = ""
    input_layout: str = "NCHW"  # "NHWC" when the graph takes HWC pixels (export_block)
    cache: dict = field(default_factory=dict, repr=False, compare=False)  # parsed MXNet symbol

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the input image, whatever the input layout."""
        if self.input_layout == "NHWC":
            return int(self.input_shape[1]), int(self.input_shape[2])
        return int(self.input_shape[2]), int(self.input_shape[3])

    def consumers(self, index: int) -> list[SourceNode]:
        return [n for n in self.nodes if any(i == index for i, _ in n.inputs)]

    def shape(self, index: int, out: int = 0) -> tuple[int, ...]:
        return self.shapes[(index, out)]

    def ancestors(self, roots: list[int]) -> set[int]:
        """Indices of every node the given nodes depend on, themselves included."""
        seen: set[int] = set()
        stack = list(roots)
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            stack.extend(j for j, _ in self.nodes[i].inputs)
        return seen


def parse_symbol_json(text: str, where: str) -> tuple[list[SourceNode], list[tuple[int, int]]]:
    """Parse MXNet symbol JSON into nodes and heads; a malformed file is a UserError."""
    try:
        doc = json.loads(text)
        nodes = [
            SourceNode(
                index=i,
                name=str(n["name"]),
                op=str(n["op"]),
                raw_attrs={str(k): str(v)
                           for k, v in (n.get("attrs") or n.get("param") or {}).items()},
                inputs=[(int(e[0]), int(e[1])) for e in n.get("inputs", [])],
            )
            for i, n in enumerate(doc["nodes"])
        ]
        heads = [(int(h[0]), int(h[1])) for h in doc["heads"]]
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise UserError(
            f"{where}: not a valid MXNet symbol JSON ({type(exc).__name__}: {exc}); "
            "export the model with net.export(PREFIX) and pass PREFIX-symbol.json"
        ) from None
    for n in nodes:
        for i, _ in n.inputs:
            if not 0 <= i < len(nodes):
                raise UserError(f"{where}: node {n.name} reads node #{i}, which does not exist")
    return nodes, heads
