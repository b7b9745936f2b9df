"""The one mechanism behind every op table: converters, shape rules, emit builders, lowerings.

Each table maps an op name to a small function and is filled by a decorator; registering an op
twice is an error, so two modules can never silently fight over one op.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


class Registry(dict):
    """A dict of op name -> function, filled with `@table.register("Op", "Alias")`."""

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what

    def register(self, *ops: str) -> Callable[[F], F]:
        def add(fn: F) -> F:
            for op in ops:
                if op in self:
                    raise RuntimeError(f"{self.what} for {op} registered twice")
                self[op] = fn
            return fn

        return add


class NameAllocator:
    """Fresh names: none of those already used, none handed out before (`base`, `base_1`, ...)."""

    def __init__(self, used: Iterable[str] = ()) -> None:
        self._used = set(used)

    @classmethod
    def for_graph(cls, graph) -> NameAllocator:
        """An allocator avoiding every node name, input and blob of an IR graph."""
        return cls({n.name for n in graph.nodes} | set(graph.inputs)
                   | {b for n in graph.nodes for b in n.outputs})

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self._used:
            name, i = f"{base}_{i}", i + 1
        self._used.add(name)
        return name
