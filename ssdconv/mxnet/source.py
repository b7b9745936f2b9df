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

    def ancestors(self, roots: list[int],
                  unread: dict[str, frozenset[int]] | None = None) -> set[int]:
        """Indices of every node the given nodes depend on, themselves included; `unread`
        (op -> input positions) names inputs not followed (a converter's unread inputs)."""
        unread = unread or {}
        seen: set[int] = set()
        stack = list(roots)
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            skip = unread.get(self.nodes[i].op, frozenset())
            stack.extend(j for pos, (j, _) in enumerate(self.nodes[i].inputs) if pos not in skip)
        return seen


HINT = "export the model with net.export(PREFIX) and pass PREFIX-symbol.json"


def malformed(where: str, what: str) -> UserError:
    """The one-line error for a symbol file that MXNet's own export would never write."""
    return UserError(f"{where}: not a valid MXNet symbol: {what}; {HINT}")


def _index(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _edge(entry, where: str, what: str, count: int) -> tuple[int, int]:
    """One [node, output(, version)] reference: in range and well formed."""
    if not (isinstance(entry, list) and len(entry) in (2, 3) and all(map(_index, entry))):
        raise malformed(where, f"{what} must be [node, output, version] numbers, not "
                             f"{json.dumps(entry)[:60]}")
    node, out = entry[0], entry[1]
    if not 0 <= node < count:
        raise malformed(where, f"{what} reads node #{node}, which does not exist (the symbol has "
                             f"{count} nodes)")
    if out < 0:
        raise malformed(where, f"{what} reads output {out} of node #{node}")
    return node, out


def _node(i: int, n, count: int, where: str) -> SourceNode:
    if not isinstance(n, dict):
        raise malformed(where, f"node #{i} must be an object, not {type(n).__name__}")
    name, op = n.get("name"), n.get("op")
    if not isinstance(name, str) or not name:
        raise malformed(where, f"node #{i} has no name")
    if not isinstance(op, str) or not op:
        raise malformed(where, f"node {name} (#{i}) has no op")
    attrs = n.get("attrs", n.get("param", {}))
    if attrs is None:
        attrs = {}
    if not isinstance(attrs, dict):
        raise malformed(where, f"node {name}: attrs must be an object, not {type(attrs).__name__}")
    for k, v in attrs.items():
        if not isinstance(v, str):
            raise malformed(where, f"node {name}: attribute {k} must be a string, not "
                                 f"{json.dumps(v)[:40]}")
    raw = n.get("inputs", [])
    if not isinstance(raw, list):
        raise malformed(where, f"node {name}: inputs must be a list, not {type(raw).__name__}")
    inputs = [_edge(e, where, f"node {name} (#{i}) input {k}", count) for k, e in enumerate(raw)]
    for j, _ in inputs:
        if j >= i:  # MXNet writes every node after its inputs; nnvm cannot load anything else
            whom = "itself" if j == i else f"node #{j}, which comes after it"
            raise malformed(where, f"node {name} (#{i}) reads {whom}: the graph is cyclic or "
                                 "not in MXNet's dependency order")
    if op == "null" and inputs:
        raise malformed(where, f"variable {name} (#{i}) has inputs")
    return SourceNode(index=i, name=name, op=op, raw_attrs=dict(attrs), inputs=inputs)


def parse_symbol_json(text: str, where: str) -> tuple[list[SourceNode], list[tuple[int, int]]]:
    """Parse MXNet symbol JSON into nodes and heads; anything malformed is a one-line UserError.

    Checked before MXNet ever sees the text (MXNet's loader dies in C++ checks, or worse, on
    a dangling or forward reference): JSON types, every reference in range and pointing
    backwards (the file's order is topological, so a reference forward is a cycle), unique
    names, and arg_nodes listing exactly the variables."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise UserError(f"{where}: not a valid MXNet symbol JSON ({type(exc).__name__}: {exc}); "
                        f"{HINT}") from None
    if not isinstance(doc, dict):
        raise malformed(where, f"the file holds a JSON {type(doc).__name__}, not an object")
    raw_nodes, raw_heads = doc.get("nodes"), doc.get("heads")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise malformed(where, "'nodes' must be a non-empty list")
    if not isinstance(raw_heads, list) or not raw_heads:
        raise malformed(where, "'heads' must be a non-empty list (the outputs)")
    count = len(raw_nodes)
    nodes = [_node(i, n, count, where) for i, n in enumerate(raw_nodes)]
    heads = [_edge(h, where, f"head {k}", count) for k, h in enumerate(raw_heads)]
    seen: dict[str, int] = {}
    for n in nodes:
        if n.name in seen:
            raise malformed(where, f"node name {n.name} is used twice (#{seen[n.name]} and "
                                 f"#{n.index}); every node needs its own name")
        seen[n.name] = n.index
    _check_arg_nodes(doc.get("arg_nodes"), nodes, where)
    return nodes, heads


def _check_arg_nodes(args, nodes: list[SourceNode], where: str) -> None:
    """arg_nodes lists every variable (op null) node once, and nothing else."""
    if not isinstance(args, list) or not all(map(_index, args)):
        raise malformed(where, "'arg_nodes' must be a list of node numbers")
    for k, a in enumerate(args):
        if not 0 <= a < len(nodes):
            raise malformed(where, f"'arg_nodes' lists node #{a}, which does not exist")
        if nodes[a].op != "null":
            raise malformed(where, f"'arg_nodes' lists node {nodes[a].name} (#{a}), which is "
                                   "not a variable (op null)")
        if a in args[:k]:
            raise malformed(where, f"'arg_nodes' lists node #{a} twice")
    listed = set(args)
    for n in nodes:
        if n.op == "null" and n.index not in listed:
            raise malformed(where, f"'arg_nodes' leaves out the variable {n.name} (#{n.index})")
