"""A third target for the backend seam's tests, registered only by them (monkeypatching
`ssdconv.backend.registered.BACKEND_MODULES`): "toy" writes NAME.layers, one line per IR layer
(op, name, inputs -> outputs), and has one option of its own. It touches no shared file, which
is what a real new target (ONNX) must be able to do."""

from __future__ import annotations

from pathlib import Path

from ssdconv import values
from ssdconv.backend import Refusals, Refused
from ssdconv.backend.interface import Backend, Written
from ssdconv.option import Option


class ToyBackend(Backend):
    name = "toy"
    refuses = ()  # ops it cannot write (a test sets some)
    runtimes = ("toy-reader",)
    options = (Option("toy_upper", False, values.flag, "write op names upper-case",
                      flag="--toy-upper", kind="switch", commands=("convert",),
                      needs="spells the toy model's ops upper-case"),)

    def wrote(self, files):
        return "layers" in files

    def write(self, graph, staging: Path, name: str, options, prepared) -> Written:
        refusals = Refusals("the toy backend")
        layers = graph.with_input_nodes()
        for node in layers:
            with refusals.of(node):
                if node.op in self.refuses:
                    raise Refused(f"the toy target writes no {node.op}")
        refusals.raise_any()
        lines = [f"{n.op.upper() if options.toy_upper else n.op} {n.name} "
                 f"{','.join(n.inputs)} -> {','.join(n.outputs)}" for n in layers]
        path = staging / f"{name}.layers"
        path.write_text("\n".join(lines) + "\n")
        return Written(files={"layers": str(path)}, section={"layers": len(lines)},
                       choices=["toy: one line per layer"])

    def runners(self, files, manifest, settings, runtimes=None):
        return []


BACKEND = ToyBackend()
