"""The plain family: a network's own outputs, no detector head (see `ssdconv.plain`).

Tried after every detector family: a graph none of them recognises is a plain network, unless
its outputs cannot be what a converted network returns (an output that is the input or a
parameter itself, or one MXNet cannot give a shape): those are refused in one line.
"""

from __future__ import annotations

import math
import re

import numpy as np

from ..errors import UserError
from ..family.interface import STOCK, DetectorFamily, Head, NoMatch, Proof
from . import zoo

INPUT_ROLE = "input"


class PlainHead(Head):
    """A plain network's outputs: role = the output's IR blob name (MXNet's node name), which
    is also what the converted files call it (ncnn's `ex.extract("fc1")`)."""

    def __init__(self, source, outputs: list[tuple[int, int]]) -> None:
        self.source = source
        self.outputs = outputs

    @property
    def family(self) -> DetectorFamily:
        return FAMILY

    @property
    def walk_roots(self) -> list[int]:
        return list(dict.fromkeys(i for i, _ in self.outputs))

    def role(self, index: int, out: int) -> str:
        name = self.source.nodes[index].name
        return name if out == 0 else f"{name}_out{out}"

    def roles(self) -> dict[str, tuple[int, int]]:
        return {self.role(i, k): (i, k) for i, k in self.outputs}

    def synthesise(self, graph, blob_of, form: str = STOCK) -> None:
        """Nothing to add: the walked graph ends in the outputs (every head form is the same)."""
        blobs = {role: blob_of(i, k) for role, (i, k) in self.roles().items()}
        graph.outputs = list(blobs.values())
        graph.roles = {INPUT_ROLE: self.source.input_name, **blobs}

    def after_passes(self, graph) -> None:
        """Each output written by a layer of its name (OpenCV's `forward` names layers)."""
        graph.name_producers_after(graph.outputs)

    def shape(self, index: int, out: int) -> tuple[int, ...]:
        return tuple(self.source.shape(index, out))

    def prove(self) -> Proof:
        return Proof(figures={"outputs": {r: list(self.shape(i, k))
                                          for r, (i, k) in self.roles().items()}})

    def manifest_section(self, proof: Proof) -> dict:
        outputs = [{"name": r, "shape": list(self.shape(i, k)),
                    "mxnet_output": _mxnet_output_name(self.source.nodes[i].name, k),
                    "vector": is_vector(self.shape(i, k))}
                   for r, (i, k) in self.roles().items()]
        return {"blobs": {INPUT_ROLE: self.source.input_name, **{r: r for r in self.roles()}},
                "outputs": outputs}

    def summary(self, proof: Proof) -> str:
        shown = ", ".join(f"{r} {tuple(s)}" for r, s in proof.figures["outputs"].items())
        return f"a plain network, output {shown}"

    def describe(self, proof: Proof) -> list[str]:
        lines = ["a plain network (no detector head): its outputs are its own"]
        for r, s in proof.figures["outputs"].items():
            kind = "a vector (top-k and cosine checked)" if is_vector(s) else "a tensor"
            lines.append(f"  output {r}: shape {tuple(s)}, {kind}")
        return lines

    def raw_outputs(self) -> dict[str, tuple[int, int]]:
        return self.roles()

    def kind_checks(self, manifest: dict) -> list:
        from .vectors import VectorCheck

        vectors = [r for r, (i, k) in self.roles().items() if is_vector(self.shape(i, k))]
        return [VectorCheck(vectors)] if vectors else []


def is_vector(shape) -> bool:
    """One value per class or embedding dimension: (1, K), or (1, K, 1, 1) before a Flatten."""
    return len(shape) >= 2 and shape[0] == 1 and math.prod(shape[2:]) == 1 and shape[1] > 1


def _mxnet_output_name(node: str, out: int) -> str:
    return f"{node}_output" if out == 0 else f"{node}_output{out}"


class PlainFamily(DetectorFamily):
    name = "plain"
    kind = "a classifier or another plain network"
    zoo_modules = zoo.ZOO_MODULES
    build_kwargs = zoo.BUILD_KWARGS

    def recognise(self, source) -> Head:
        """Every graph that reaches here is plain; its outputs are refused when no converted
        network could return them."""
        heads = list(dict.fromkeys(source.heads))
        for i, k in heads:
            node = source.nodes[i]
            if node.op == "null":
                what = "the input" if node.name == source.input_name else "a parameter"
                raise UserError(f"{source.origin}: output {node.name} is {what} itself, not "
                                "computed by the network, so the network's output cannot be "
                                "determined; export the symbol of the layer you deploy")
            try:
                source.shape(i, k)
            except KeyError:
                raise UserError(f"{source.origin}: MXNet infers no shape for output "
                                f"{node.name} ({node.op}), so the network's output cannot be "
                                "determined; export the symbol of the layer you deploy") from None
        head = PlainHead(source, heads)
        if INPUT_ROLE in head.roles():
            raise UserError(f"{source.origin}: an output is named {INPUT_ROLE!r}, the name the "
                            "manifest gives the input; rename that layer")
        return head

    def default_input_size(self, nodes, params) -> tuple[int, int] | NoMatch:
        """The size the symbol's input variable records (`mx.sym.var(shape=...)`), if any."""
        data = next((n for n in nodes if n.op == "null" and n.name == "data"), None)
        shape = _recorded_shape(data)
        if shape is None or len(shape) != 4 or min(shape[2:]) <= 0:
            return NoMatch("no input size recorded on its input 'data'")
        return (shape[2], shape[3])

    def zoo_input_size(self, net) -> tuple[int, int]:
        return zoo.SIZE_BY_NAME.get(getattr(net, "zoo_name", ""), zoo.DEFAULT_SIZE)

    def saved_class_count(self, net, saved: dict) -> int | None:
        """The output count of the last FullyConnected's weight (a classifier's classes)."""
        weights = [np.shape(v) for k, v in saved.items() if k.endswith("weight")]
        return weights[-1][0] if weights and len(weights[-1]) == 2 else None


def _recorded_shape(node) -> tuple[int, ...] | None:
    if node is None:
        return None
    numbers = re.findall(r"-?\d+", node.attrs.str("__shape__", ""))
    return tuple(int(x) for x in numbers) if numbers else None


FAMILY = PlainFamily()
