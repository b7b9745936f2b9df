"""A headless detector's runtimes, each followed by the generated C tail.

The C tail (`ssdconv.tail`) is what a deployment runs on the CPU after the NPU's raw maps, so
the check and `ssdconv eval` run exactly it: compiled once per conversion with the system C
compiler, fed each runtime's maps as the runtime returns them, its rows returned as
detections. Its rows are GluonCV's own post-processing, so they are compared row for row
(`Runner.row_for_row`), as a gluon head's are.
"""

from __future__ import annotations

import tempfile

import numpy as np

from ..backend.interface import Runner
from ..errors import UserError
from ..family.interface import HeadlessCut

TAIL_STEM = "check"  # the C symbols' prefix of the tail compiled for the check


def compiled_tail(cut: HeadlessCut, family: str):
    """The cut's C tail compiled into a shared library (`ssdconv.tail.build`); a UserError when
    there is no C compiler (the check needs one to run what the deployment runs)."""
    from ..tail.build import NoCompiler, compile_tail

    with tempfile.TemporaryDirectory(prefix="ssdconv-tail-") as work:
        try:
            return compile_tail(cut.tail(TAIL_STEM), work)
        except NoCompiler as exc:
            raise UserError(f"checking a headless {family} model compiles its C tail, and no C "
                            f"compiler was found ({exc}); install one (cc, e.g. Debian's gcc) "
                            "or convert without checking") from None


def tail_detections(rows: np.ndarray, w: int, h: int) -> dict:
    """The tail's rows [P, 6] (pixels; -1 rows dropped) as a runner's detections: GluonCV's
    class ids, scores, boxes normalised by the network's `w`, `h`."""
    rows = rows[rows[:, 0] >= 0]
    return {"det_labels": rows[:, 0].astype(int), "det_scores": rows[:, 1],
            "det_boxes": rows[:, 2:6].astype(np.float64) / np.array([w, h, w, h], np.float64)}


class TailRunner(Runner):
    """`inner`'s maps by role, then the C tail's rows as detections (`det_labels`,
    `det_scores`, `det_boxes` normalised, GluonCV's class ids)."""

    row_for_row = True

    def __init__(self, inner: Runner, tail, inputs: tuple[tuple[str, ...], ...]) -> None:
        self.inner = inner
        self.tail = tail
        self.inputs = inputs
        self.name = inner.name
        self.title = f"{inner.title} + C tail"
        self.informational = inner.informational
        self.note = inner.note

    def run(self, rgb: np.ndarray) -> dict:
        out = self.inner.run(rgb)
        rows = self.tail.run([[np.ascontiguousarray(out[r], np.float32) for r in group]
                              for group in self.inputs])
        h, w = rgb.shape[:2]
        out.update(tail_detections(rows, w, h))
        return out

    def blobs(self, rgb: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        return self.inner.blobs(rgb, names)

    def timed(self, rgb: np.ndarray):
        return self.inner.timed(rgb)
