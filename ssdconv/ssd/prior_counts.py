"""How many priors caffe-ssd's PriorBox emits per cell, and in which ratio order: the one fact
the SSD specs, the IR's shape rule and both writers count with (no dependency: the specs and the
reference PriorBox both import it)."""

from __future__ import annotations

from collections.abc import Sequence

RATIO_EPS = 1e-6  # caffe-ssd: a ratio this close to one already listed is a repeat


def expanded_aspect_ratios(ratios: Sequence[float], flip: bool) -> list[float]:
    """The ratios other than the implicit 1, in caffe-ssd's order, repeats dropped."""
    out = [1.0]
    for r in ratios:
        r = float(r)
        if any(abs(r - q) < RATIO_EPS for q in out):
            continue
        out.append(r)
        if flip:
            out.append(1.0 / r)
    return out[1:]


def priors_per_cell(max_size: float | None, ratios: Sequence[float], flip: bool) -> int:
    """How many priors one PriorBox layer (one min_size) emits per feature-map cell."""
    return 1 + (1 if max_size else 0) + len(expanded_aspect_ratios(ratios, flip))
