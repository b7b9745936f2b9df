"""User errors versus internal errors.

A `UserError` is something the person running ssdconv can fix (a wrong path, a model that is not
an SSD, an unsupported op). The CLI prints its one-line message and exits with code 2, without a
traceback. Anything else is a bug in ssdconv and keeps its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""

    exit_code = 2


@dataclass(frozen=True)
class Refusal:
    """One reason a node cannot be converted, with the node it belongs to."""

    node: str
    op: str
    reason: str

    def __str__(self) -> str:
        return f"{self.node} ({self.op}): {self.reason}"


class UnsupportedError(UserError):
    """Every unsupported op and attribute value in a graph, reported at once."""

    def __init__(self, refusals: list[Refusal], where: str = "") -> None:
        self.refusals = list(refusals)
        listed = "; ".join(str(r) for r in self.refusals)
        place = f" in {where}" if where else ""
        super().__init__(
            f"{len(self.refusals)} unsupported node(s){place}: {listed}. "
            "Change these layers in the model, or open an issue with the list."
        )
