"""The explicit, named pass list. Each pass is skippable by name; the graph is validated after
each, so a broken pass is caught where it happened."""

from __future__ import annotations

from collections.abc import Callable

from ..ir.graph import Graph
from ..ir.validate import validate
from . import (
    drop_noops,
    drop_unread,
    fold_batchnorm,
    fold_input_affine,
    fold_input_scale,
    fold_scale,
)

PASSES: list[tuple[str, Callable[[Graph], int]]] = [
    ("drop_unread", drop_unread.run),
    ("drop_noops", drop_noops.run),
    ("fold_scale_into_normalize", fold_scale.run),
    ("fold_input_affine", fold_input_affine.run),
    ("fold_batchnorm", fold_batchnorm.run),
    ("fold_input_scale", fold_input_scale.run),
]


def skippable_names() -> tuple[str, ...]:
    """Every name `skip_passes` may hold: the IR passes here, then the ncnn backend's rewrites
    (ncnnoptimize's, run by the ncnn writer on its own layers)."""
    from ..backend.ncnn.fuse import REWRITE_NAMES

    return tuple(name for name, _ in PASSES) + REWRITE_NAMES


def run_passes(graph: Graph, skip: tuple[str, ...] = ()) -> dict[str, int]:
    """Run every IR pass not in `skip`; returns how many rewrites each made. `skip` may also
    name backend rewrites (`skippable_names`): those the backend skips itself."""
    unknown = set(skip) - set(skippable_names())
    if unknown:
        from ..errors import UserError

        raise UserError(f"unknown pass(es) to skip: {sorted(unknown)}; passes are "
                        f"{list(skippable_names())}")
    done = {}
    validate(graph, after="frontend")
    for name, fn in PASSES:
        if name in skip:
            continue
        done[name] = fn(graph)
        validate(graph, after=name)
    return done
