"""The backends: the writers of the IR and their runtimes, one folder each behind one interface
(`interface.Backend`), registered in `registered`.

All follow one rule for what can go wrong, so the same fault is the same kind of error in each:

* An IR that breaks the IR's own contract (`ssdconv.ir.ops`: an unknown op, a missing attribute,
  an attribute value outside its choices, a wrong input count, shapes or axes that do not fit)
  is a bug in ssdconv, never the user's model: the frontend refuses what it cannot express
  before it writes IR. Each backend runs `ssdconv.ir.validate.validate` on entry, which raises
  RuntimeError (ValueError from a shape rule), with a traceback.
* A valid IR node the target cannot write exactly (Clip(-1, 1) for caffe-ssd, a Concat along
  the batch axis for ncnn) raises `Refused` inside the backend. The backend looks at every node
  first and then raises one `UnsupportedError` (a UserError) listing all of them, before a byte
  is written.
* Anything else a backend raises marks a broken invariant of its own (a node reaching the caffe
  emitter unlowered): a bug, RuntimeError.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..errors import Refusal, UnsupportedError

if TYPE_CHECKING:
    from ..ir.graph import Node
    from .interface import Backend

_loaded: dict[tuple[str, ...], list] = {}


def backends() -> list[Backend]:
    """The registered backends (`ssdconv.backend.registered`), in their order."""
    from . import registered

    modules = tuple(registered.BACKEND_MODULES)
    if modules not in _loaded:
        _loaded[modules] = [importlib.import_module(m).BACKEND for m in modules]
    return _loaded[modules]


def backend(name: str) -> Backend:
    """The registered backend called `name` (a KeyError for another name: names are checked
    by `ssdconv.values.targets` before they get here)."""
    for b in backends():
        if b.name == name:
            return b
    raise KeyError(name)


class Refused(Exception):
    """A valid IR node the target cannot write exactly; the message is shown to the user."""


class Refusals:
    """The refusals of one pass over a graph's nodes, raised together at the end."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.items: list[Refusal] = []

    @contextmanager
    def of(self, node: Node) -> Iterator[None]:
        """Record a `Refused` raised inside the block against `node`, and carry on."""
        try:
            yield
        except Refused as exc:
            self.items.append(Refusal(node.name, node.op, str(exc)))

    def raise_any(self) -> None:
        if self.items:
            raise UnsupportedError(self.items, where=self.where)
