"""A headless model's head: the recognised head, cut where its family says the NPU stops.

`--headless` writes the network up to the raw prediction maps and nothing after them (no
PriorBox, DetectionOutput, NMS, TopK, Softmax: what NPU toolchains reject or run on the CPU,
facts §13), the exact post-processing as generated C beside it, and the constants it reads.
Everything family-specific comes from the head's `HeadlessCut` (`Head.headless_cut`); this
wrapper presents the cut to the shared pipeline as a head of its own, so walking, writing,
the manifest and the check need no branch for it:

* the walk ends at the cut's source nodes, which become the model's outputs;
* the check's raw stage compares those maps with float64 Gluon (the network's proof);
* a detector's runners are wrapped (`runners`) so their maps go through the compiled C tail,
  and its rows are checked against GluonCV's row for row, as a gluon head's are.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..family.interface import (
    STOCK,
    DetectorFamily,
    DetectorHead,
    Head,
    HeadlessCut,
    Proof,
    SeedHint,
)
from . import example  # noqa: F401  (registers the headless --ncnn-example program)

#: the ids in the C tail's rows are GluonCV's own class indices (0 = first foreground class)
TAIL_LABEL_OFFSET = 0


def grouped_blobs(roles: dict[str, str]) -> dict[str, object]:
    """`{"loc.0": a, "loc.1": b, "x": c}` -> `{"loc": [a, b], "x": c}`: the manifest's blobs,
    a role with several maps naming a list (`verify.blobs.blobs_by_role` reads it back)."""
    out: dict[str, object] = {}
    for role, blob in roles.items():
        base, _, index = role.rpartition(".")
        if base and index.isdigit():
            out.setdefault(base, []).append(blob)  # type: ignore[union-attr]
        else:
            out[role] = blob
    return out


class HeadlessHead(Head):
    """`inner` cut at `cut` (its `headless_cut(layout)`); see the module docstring."""

    def __init__(self, inner: Head, cut: HeadlessCut, layout: str) -> None:
        self.inner = inner
        self.cut = cut
        self.layout = layout
        self._blobs: dict[str, str] = {}
        self._files: dict[str, object] = {}

    @property
    def family(self) -> DetectorFamily:
        return self.inner.family

    @property
    def walk_roots(self) -> list[int]:
        return [i for i, _ in self.cut.outputs.values()]

    @property
    def raw_pixels(self) -> bool:
        return self.inner.raw_pixels

    def synthesise(self, graph, blob_of: Callable[..., str], form: str = STOCK) -> None:
        """Nothing after the cut: its maps are the outputs (whatever head form a target would
        write, a headless model has no head)."""
        self._blobs = {role: blob_of(i, k) for role, (i, k) in self.cut.outputs.items()}
        graph.outputs = list(self._blobs.values())
        graph.roles = {"input": next(iter(graph.inputs)), **self._blobs}

    def after_passes(self, graph) -> None:
        """Each output written by a layer of its name (OpenCV's `forward` names layers), and
        the output layers last in the outputs' order: caffe and ncnn list outputs in layer
        order (RKNN's load_caffe returns them so; NNIE's report nodes are read by position),
        so the prototxt's order is the manifest's (SSD: loc0, conf0, loc1, ...)."""
        graph.name_producers_after(graph.outputs)
        graph.leaves_last(graph.outputs)

    def prove(self) -> Proof:
        return self.inner.prove()

    def manifest_section(self, proof: Proof) -> dict:
        section = self.inner.manifest_section(proof)
        blobs = section["blobs"]
        section["blobs"] = {"input": blobs["input"],
                            **grouped_blobs({r: self._blob(r) for r in self.cut.outputs})}
        section.pop("outputs", None)  # a RetinaFace's raw outputs: replaced by the cut's
        if "label_offset" in section:
            section["label_offset"] = TAIL_LABEL_OFFSET
        section["headless"] = {"layout": self.layout, **self.cut.meaning, **self._files}
        return section

    def files(self, name: str) -> dict[str, bytes]:
        """The C tail (`NAME_postprocess.c`, `.h`) and the constants' files, by file name."""
        tail = {k: v.encode() for k, v in (self.cut.tail(name) if self.cut.tail else {}).items()}
        sidecars = self.cut.sidecars(name) if self.cut.sidecars else {}
        self._files = {"tail_files": sorted(tail), "sidecar_files": sorted(sidecars)}
        if tail:  # what a program calling the tail needs (`ssdconv.headless.example`)
            from ..tail import c_prefix

            self._files["tail_prefix"] = c_prefix(name)
            self._files["tail_arguments"] = [[self._blob(r) for r in group]
                                             for group in self.cut.tail_inputs]
        return {**tail, **sidecars}

    def _blob(self, role: str) -> str:
        if not self._blobs:
            raise RuntimeError("HeadlessHead blobs before synthesise: the walk names them")
        return self._blobs[role]

    def summary(self, proof: Proof) -> str:
        return f"headless ({self.layout}); {self.inner.summary(proof)}"

    def describe(self, proof: Proof) -> list[str]:
        lines = self.inner.describe(proof)
        return lines + [f"headless: {len(self.cut.outputs)} {self.layout.upper()} outputs "
                        f"({', '.join(self.cut.outputs)})"]

    def raw_outputs(self) -> dict[str, tuple[int, int]]:
        return dict(self.cut.outputs)

    def seeding_hints(self) -> list[SeedHint]:
        return self.inner.seeding_hints()

    def approximations(self) -> list[dict]:
        return self.inner.approximations()


class HeadlessDetectorHead(HeadlessHead, DetectorHead):
    """A detector cut headless: its class count, comparable score and NMS threshold are the
    whole head's, and its detections are the C tail's rows (`TailRunner`)."""

    @property
    def num_classes(self) -> int:
        return self.inner.num_classes  # type: ignore[attr-defined]

    def comparable_score(self, raw32: dict[str, np.ndarray], gluon_scores: np.ndarray) -> float:
        return float("-inf")  # the tail computes GluonCV's rows: every row is compared

    def nms_threshold(self) -> float | None:
        return self.inner.nms_threshold()  # type: ignore[attr-defined]

    def runners(self, runners: list) -> list:
        """Each runtime's maps through the compiled C tail: GluonCV's rows, row for row."""
        if self.cut.tail is None:
            return runners
        from .runner import TailRunner, compiled_tail

        tail = compiled_tail(self.cut, self.family.name)
        return [TailRunner(r, tail, self.cut.tail_inputs) for r in runners]


def cut_head(head: Head, layout: str) -> HeadlessHead:
    """`head` cut headless in `layout`; a UserError when its family has no headless form or
    not that layout (`Head.headless_cut`)."""
    cut = head.headless_cut(layout)
    kind = HeadlessDetectorHead if isinstance(head, DetectorHead) else HeadlessHead
    return kind(head, cut, layout)
