"""A second family for the seam's tests, registered only by them (monkeypatching
`ssdconv.family.registered.FAMILY_MODULES`): "toy" claims a network whose features end in a
global pooling and converts it up to the pooled features. It touches no SSD file and no shared
file, which is what a real second family (YOLOv3) must be able to do. Its head is no detector
(a plain `Head`): no classes, no label offset, no detections; the check proves it on its one
raw tensor alone."""

from __future__ import annotations

from ssdconv.family.interface import DetectorFamily, Head, NoMatch, Proof
from ssdconv.ir.graph import Node


class ToyHead(Head):
    def __init__(self, pool) -> None:
        self.pool = pool

    family = property(lambda self: FAMILY)
    walk_roots = property(lambda self: [self.pool.index])

    def synthesise(self, graph, blob_of, form="stock") -> None:
        graph.nodes.append(Node("features", "Flatten", [blob_of(self.pool.index)], ["features"],
                                {"axis": 1, "end_axis": -1}, source=self.pool.name))
        graph.outputs = ["features"]
        graph.roles = {"input": "data", "features": "features"}

    def after_passes(self, graph) -> None:
        pass

    def prove(self) -> Proof:
        return Proof(figures={"pooled": self.pool.name})

    def manifest_section(self, proof: Proof) -> dict:
        return {"blobs": {"input": "data", "features": "features"},
                "toy": dict(proof.figures)}

    def summary(self, proof: Proof) -> str:
        return f"features pooled by {proof.figures['pooled']}"

    def describe(self, proof: Proof) -> list[str]:
        return [f"features pooled by {proof.figures['pooled']}"]

    def raw_outputs(self):
        return {"features": (self.pool.index, 0)}


class ToyFamily(DetectorFamily):
    name = "toy"
    kind = "a toy feature extractor"
    zoo_modules = ("gluoncv.model_zoo.mobilenet",)

    def recognise(self, source):
        pools = [n for n in source.nodes
                 if n.op == "Pooling" and n.attrs.bool("global_pool", False)]
        return ToyHead(pools[-1]) if pools else NoMatch("no global pooling")

    def default_input_size(self, nodes, params):
        return NoMatch("no input size of its own")

    def zoo_input_size(self, net):
        return (224, 224)

    def saved_class_count(self, net, saved):
        return None


FAMILY = ToyFamily()
