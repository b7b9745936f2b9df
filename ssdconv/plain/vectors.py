"""The stage a vector output adds to a plain network's proof: what a classifier and an
embedder are used for, measured.

Per vector output (`family.is_vector`) and runtime: whether the top-1 class and the top-5 set
are Gluon float32's, and the cosine similarity with float64 Gluon (an embedding's use). A
different top-1 (or top-5 set) fails unless float64 Gluon's own scores at that rank are closer
than the raw tensor's bound: then float32 rounding alone may order them either way (a tie), and
it is reported as one. The raw stage has already bounded every value; this one says what the
values mean.
"""

from __future__ import annotations

import numpy as np

from ..family.interface import StageResult
from ..verify.compare import raw_bound

TOP_K = (1, 5)
TITLE = "vectors"


def _top(v: np.ndarray, k: int) -> list[int]:
    return [int(i) for i in np.argsort(-v, kind="stable")[:k]]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / norm if norm else float(np.array_equal(a, b))


def _tie_at(ref64: np.ndarray, k: int, bound: float) -> bool:
    """Whether float64's k-th and (k+1)-th values are within `bound` (either order is right)."""
    if k >= ref64.size:
        return False
    top = np.sort(ref64)[::-1]
    return bool(top[k - 1] - top[k] <= 2 * bound)


class VectorCheck:
    """The vectors stage for the named outputs of one conversion (`image(g)` per image)."""

    def __init__(self, roles: list[str]) -> None:
        self.roles = roles

    def image(self, g: dict) -> VectorImage:
        return VectorImage(self.roles, g)


class VectorImage:
    def __init__(self, roles: list[str], g: dict) -> None:
        self.roles = roles
        self.g = g

    def _one(self, role: str, got: np.ndarray) -> tuple[bool, dict, str]:
        ref64, ref32 = self.g["raw64"][role], self.g["raw32"][role]
        got = np.asarray(got, np.float64).reshape(-1)
        if got.shape != ref64.shape:
            return False, {}, f"{role}: shape {got.shape} is not Gluon's {ref64.shape}"
        bound, _ = raw_bound(ref64, ref32)
        figures: dict = {"cosine": cosine(got, ref64)}
        ok, parts = True, []
        for k in TOP_K:
            if k >= got.size:
                continue
            same = set(_top(got, k)) == set(_top(ref32, k))
            tie = not same and _tie_at(ref64, k, bound)
            figures[f"top{k}_same"] = same
            ok = ok and (same or tie)
            parts.append(f"top-{k} " + ("same" if same else "a tie" if tie else "DIFFERENT"))
        cos = figures["cosine"]
        text = f"{role}: {', '.join(parts)}; cosine {cos:.9f} with float64 (1 - {1 - cos:.1e})"
        return ok, figures, text

    def compare(self, runner, rt: dict) -> tuple[list[StageResult], list[StageResult]]:
        """No stage before the raw one; the vectors stage after it."""
        results = [self._one(role, rt[role]) for role in self.roles]
        figures = {role: f for role, (_, f, _) in zip(self.roles, results)}
        stage = StageResult(TITLE, all(ok for ok, _, _ in results), figures,
                            "; ".join(t for _, _, t in results))
        return [], [stage]

    def overlay(self, path, out_dir, rgb, outs, min_score) -> None:
        """Nothing to draw on the photo for a vector."""
        return None
