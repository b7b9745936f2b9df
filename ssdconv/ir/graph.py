"""The intermediate representation every frontend writes and every emitter reads.

One graph model, two writers: a node holds its scalar attributes apart from its weight tensors
and remembers the source node it came from, so error messages and per-layer comparisons can name
the MXNet node. Blobs are named strings; tensors are NCHW with batch 1, as in Caffe.

The op vocabulary and each op's attributes are listed in `ssdconv.ir.ops.OP_SPECS`; `validate`
checks a graph against it after every pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..registry import NameAllocator
from .ops import OP_SPECS
from .preprocess import Preprocess


@dataclass
class Node:
    """One layer: an IR op with its attributes, weights and blob connections.

    `weights` maps a role name (see OP_SPECS) to a float32 or float64 array; emitters cast to
    float32 when writing. `source` is the MXNet node this layer came from (provenance).
    """

    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""

    def __repr__(self) -> str:
        return f"Node({self.name!r}, {self.op}, in={self.inputs}, out={self.outputs})"


@dataclass
class Graph:
    """A directed acyclic graph of IR nodes kept in topological order.

    `inputs` maps the input blob names to their shapes. `shapes` holds the known shape of every
    blob (filled by the frontend, refreshed by `ssdconv.ir.shapes.infer_shapes`). `outputs` names
    the blobs the converted model must expose (detections, and the raw tensors the check reads).
    `approximations` lists the nodes the frontend could not convert bit-exactly and what that
    costs, for the manifest.
    """

    nodes: list[Node] = field(default_factory=list)
    inputs: dict[str, tuple[int, ...]] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    preprocess: Preprocess | None = None
    roles: dict[str, str] = field(default_factory=dict)  # blobs by manifest role (the head's)
    # What the frontend converted only approximately (manifest `approximations` entries).
    approximations: list[dict] = field(default_factory=list)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def producer(self, blob: str) -> Node | None:
        """The node writing `blob`, or None for a graph input."""
        for n in self.nodes:
            if blob in n.outputs:
                return n
        return None

    def name_producers_after(self, blobs: list[str]) -> None:
        """Rename the node writing each of `blobs` to the blob's name where that name is free
        (a pass may have moved a blob to another node: `pre_fc1` now writes `fc1`), so a
        runtime that finds outputs by layer name (OpenCV's `forward`) finds them."""
        taken = {n.name for n in self.nodes}
        for blob in blobs:
            producer = self.producer(blob)
            if producer is not None and producer.name != blob and blob not in taken:
                taken.discard(producer.name)
                producer.name = blob
                taken.add(blob)

    def leaves_last(self, blobs: list[str]) -> None:
        """Move the nodes writing `blobs` to the end, in that order, where nothing reads what
        they write (moving such a leaf keeps the order topological): a format whose outputs
        come in layer order (caffe, ncnn) then lists them as `blobs` does."""
        leaves = []
        for blob in blobs:
            node = self.producer(blob)
            if node is not None and node not in leaves and \
                    not any(self.consumers(b) for b in node.outputs):
                leaves.append(node)
        self.nodes = [n for n in self.nodes if n not in leaves] + leaves

    def consumers(self, blob: str) -> list[Node]:
        """Every node reading `blob`, in graph order."""
        return [n for n in self.nodes if blob in n.inputs]

    def value_readers(self, blob: str) -> list[Node]:
        """Readers that use the values of `blob`, not only its shape.

        An op reading an input for its shape alone (`shape_only_inputs` in OP_SPECS, e.g. the
        image of a PriorBox) is not concerned by scaling or reordering that input's channels.
        """
        return [n for n in self.nodes if any(
            b == blob and pos not in OP_SPECS.get(n.op, {}).get("shape_only_inputs", ())
            for pos, b in enumerate(n.inputs))]

    def is_output(self, blob: str) -> bool:
        return blob in self.outputs

    def replace_blob(self, old: str, new: str) -> None:
        """Make every reader of `old` (and the output list) read `new` instead."""
        for n in self.nodes:
            n.inputs = [new if b == old else b for b in n.inputs]
        self.outputs = [new if b == old else b for b in self.outputs]

    def with_input_nodes(self) -> Graph:
        """This graph with an Input node first for every input no Input node declares.

        The frontend always writes Input nodes; graphs built by hand may only list `inputs`.
        Both emitters write one Input layer per graph input, so both call this: the added node
        is named after its blob, or `<blob>_input` (made fresh) when a node already has that
        name. Returns the graph itself when nothing is missing; never modifies it.
        """
        declared = {b for n in self.nodes if n.op == "Input" for b in n.outputs}
        missing = [(b, s) for b, s in self.inputs.items() if b not in declared]
        if not missing:
            return self
        fresh = NameAllocator.for_graph(self).fresh
        taken = {n.name for n in self.nodes}
        added = [Node(fresh(f"{b}_input") if b in taken else b, "Input", [], [b],
                      {"shape": tuple(s)}) for b, s in missing]
        return dataclasses.replace(self, nodes=added + list(self.nodes), inputs=dict(self.inputs),
                                   outputs=list(self.outputs), shapes=dict(self.shapes))

    def remove(self, node: Node) -> None:
        self.nodes.remove(node)

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        return counts
