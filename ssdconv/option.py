"""One option of the option table (`ssdconv.options`): what a backend or a family declares.

A module of its own, depending on nothing, so a backend's or a family's options module can
declare options without importing the table that gathers them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CORE = "core"
MODEL = "model"  # what loads the model (not a conversion option: no `Options` field)
CONVERT_COMMANDS = ("convert", "verify", "eval", "inspect")


@dataclass(frozen=True)
class Option:
    """One setting. `key` is its preset key and, with `api`, its `Options` field."""

    key: str
    default: Any
    check: Callable[[Any], Any]
    help: str
    owner: str = CORE  # CORE, MODEL, "target NAME" or "family NAME"
    flag: str | None = None  # None: preset and API only
    kind: str = "value"  # "value", "switch" (no argument) or "append" (repeatable)
    metavar: str | None = None
    commands: tuple[str, ...] = CONVERT_COMMANDS  # the subcommands that take the flag
    api: bool = True  # an `Options` field
    needs: str = ""  # a target's option: what it does, for "--x {needs}: add --target T"
    command_defaults: tuple[tuple[str, Any], ...] = ()  # (command, raw default) where it differs
    # a target's option that changes the detection head it writes: recorded in the manifest's
    # `head_options` beside the family's options whenever that target is written
    shapes_head: bool = False

    @property
    def dest(self) -> str:
        """argparse's attribute for the flag."""
        return self.key

    @property
    def shown(self) -> str:
        """How messages name it: the flag, else the preset key."""
        return self.flag or self.key

    @property
    def owned_by(self) -> tuple[str, str]:
        """("target"|"family"|CORE|MODEL, name)."""
        kind, _, name = self.owner.partition(" ")
        return kind, name
