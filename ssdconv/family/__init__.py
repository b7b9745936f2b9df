"""The detector-family seam: which family a graph, a symbol or a zoo name belongs to.

Convert, verify, eval, inspect, seeded weights and the CLI ask here, never a family directly:
`recognise` finds the head of a source graph, `default_input_size` sizes an exported symbol,
`zoo_family` and `zoo_names` answer for GluonCV's zoo. Families are imported on first use, from
`ssdconv.family.registered`. The interface they implement is `ssdconv.family.interface`.
"""

from __future__ import annotations

import importlib

from ..errors import UserError
from .interface import DetectorFamily, Head, NoMatch

_loaded: dict[tuple[str, ...], list[DetectorFamily]] = {}


def families() -> list[DetectorFamily]:
    """The registered families, in the order they are tried: the detector families, then the
    fallback (plain networks), which recognises any graph it can convert."""
    from . import registered

    fallback = (registered.FALLBACK_MODULE,) if registered.FALLBACK_MODULE else ()
    modules = (*registered.FAMILY_MODULES, *fallback)
    if modules not in _loaded:
        _loaded[modules] = [importlib.import_module(m).FAMILY for m in modules]
    return _loaded[modules]


def kinds() -> str:
    """What ssdconv converts, for messages: "an SSD detector or a ... detector"."""
    return " or ".join(f.kind for f in families())


def _looked_for(misses: list[tuple[DetectorFamily, NoMatch]]) -> str:
    return "; ".join(f"{f.kind}: {m.missing}" for f, m in misses)


def find_head(source) -> Head | None:
    """The head of the first family that recognises `source`, or None when none does (a
    family's UserError, for a graph of its kind it cannot convert, passes through)."""
    for family in families():
        found = family.recognise(source)
        if isinstance(found, Head):
            return found
    return None


def recognise(source) -> Head:
    """The head of `source`; a UserError naming what each family looked for when none
    recognises it (only when the fallback family is not registered, as in the seam's tests)."""
    misses = []
    for family in families():
        found = family.recognise(source)
        if isinstance(found, Head):
            return found
        misses.append((family, found))
    raise UserError(f"{source.origin}: no family recognises it (looked for "
                    f"{_looked_for(misses)})")


def default_input_size(nodes, params, origin: str) -> tuple[int, int]:
    """The input size of an exported symbol, from the first family it belongs to."""
    misses = []
    for family in families():
        size = family.default_input_size(nodes, params)
        if not isinstance(size, NoMatch):
            return size
        misses.append((family, size))
    raise UserError(f"{origin}: cannot tell the input size (looked for {_looked_for(misses)}); "
                    "pass --input-size H,W (the size the network was trained for, e.g. 224,224 "
                    "for an ImageNet classifier, 112,112 for insightface's recognition models)")


def _zoo_builders() -> dict:
    """GluonCV's zoo: name -> builder function."""
    from ..mxnet.imports import import_mxnet  # without MXNet's and GluonCV's import warnings

    import_mxnet()
    from gluoncv.model_zoo.model_zoo import _models

    return _models


def zoo_family(name: str) -> DetectorFamily | None:
    """The family whose builder makes GluonCV zoo model `name`, or None (unknown names too)."""
    builder = _zoo_builders().get(name)
    if builder is None:
        return None
    return next((f for f in families() if f.builds(builder)), None)


def zoo_names() -> list[str]:
    """Every GluonCV zoo model some family builds, sorted. Quantised (int8) variants have
    builders of their own module and need a quantised runtime: no family claims them."""
    return sorted(n for n, builder in _zoo_builders().items()
                  if any(f.builds(builder) for f in families()))
