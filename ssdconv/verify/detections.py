"""The detection stage a detector head adds to the proof (`DetectorHead`), and its overlays.

The raw tensors every conversion is checked on (`ssdconv.verify.check`) prove the network; a
detector's outputs mean boxes, so on top of them it is checked on detections: row for row for a
runtime computing GluonCV's own post-processing (`Runner.row_for_row`), matched above the head's
comparable score otherwise (unmatched ones that only a float32 tie at the head's NMS threshold
explains are counted and listed, not failed: `compare.explain_nms_ties`), against another
reference when the head is written with another layer's semantics
(`DetectorHead.reference_detections`); for a model converted without NMS (`Runner.pre_nms`),
the rows Gluon's box_nms reads instead (`compare.compare_pre_nms`). Every number printed is
measured here; nothing here knows a family.
"""

from __future__ import annotations

import os
from functools import cached_property

import numpy as np

from ..backend.interface import Runner
from ..family.interface import DetectorHead, StageResult
from .compare import (
    TIE_REASONS,
    DetResult,
    compare_pre_nms,
    compare_rows,
    detections_above,
    ious,
    match_detections,
)

SHOW_UNMATCHED = 6
GLUON_DISTANCE_IOU = 0.5  # "found" in the informational comparison: VOC's match rule
BELOW_CUT = ("Below the compared score GluonCV and DetectionOutput may legitimately differ: "
             "GluonCV keeps its top-k candidates over all classes before NMS, caffe-ssd/OpenCV/"
             "ncnn keep top_k per class, and equal scores may be ordered differently.")


class DetectionCheck:
    """The detection stage for one conversion of a detector: `image(g)` per checked image."""

    def __init__(self, head: DetectorHead, manifest: dict) -> None:
        self.head = head
        self.manifest = manifest
        _, _, self.height, self.width = manifest["input_shape"]

    def image(self, g: dict) -> DetectionImage:
        """The stage on one image, whose Gluon result (`GluonRunner.run`) is `g`."""
        return DetectionImage(self, g)


class DetectionImage:
    """The detection stage on one image: each runtime's detections against Gluon's."""

    def __init__(self, check: DetectionCheck, g: dict) -> None:
        self.check = check
        self.head = check.head
        self.g = g

    @cached_property
    def cut(self) -> float:
        """The head's comparable score on this image (computed once, for the runners that
        match detections above it)."""
        return self.head.comparable_score(self.g["raw32"], self.g["det_scores"])

    @cached_property
    def other(self) -> tuple[dict, float] | None:
        """The head's own reference detections when they are not GluonCV's."""
        return self.head.reference_detections(self.g)

    def compare(self, runner: Runner, rt: dict) -> tuple[list[StageResult], list[StageResult]]:
        """(stages before the raw one, stages after it) for one runtime's result `rt`: the
        detections stage after it; an informational distance from GluonCV before it when the
        head's detections have another reference (where the report has always shown it)."""
        g, w, h = self.g, self.check.width, self.check.height
        nms = self.head.nms_threshold()
        if runner.pre_nms:  # no detections: the rows GluonCV's box_nms reads
            return [], [compare_pre_nms(g, rt)]
        if runner.row_for_row:  # GluonCV's own post-processing: its rows, in its order
            return [], [detection_stage(compare_rows(g, rt, w, h, nms), runner.name)]
        if self.other is None:
            det = match_detections(g, rt, w, h, self.cut, nms)
            return [], [detection_stage(det, runner.name)]
        det = match_detections(self.other[0], rt, w, h, self.other[1])
        return ([distance_from_gluon(g, rt, w, h, self.cut)],
                [detection_stage(det, runner.name)])

    def overlay(self, path: str, out_dir: str, rgb: np.ndarray, outs: list,
                min_score: float) -> str:
        """One side-by-side PNG: Gluon's panel, then one per (runner, its result) in `outs`
        that has detections."""
        from .overlay import draw_panel, side_by_side, write_png

        w, h, g = self.check.width, self.check.height, self.g
        scale = np.array([w, h, w, h], np.float64)
        classes = self.check.manifest["classes"]
        panels = [draw_panel(rgb, g["det_boxes"], g["det_labels"], g["det_scores"], classes,
                             "Gluon (MXNet)", min_score)]
        for runner, rt in outs:
            if "det_boxes" not in rt:  # a model without NMS has no detections to draw
                continue
            panels.append(draw_panel(rgb, np.asarray(rt["det_boxes"]) * scale, rt["det_labels"],
                                     rt["det_scores"], classes, runner.title, min_score))
        os.makedirs(out_dir, exist_ok=True)
        stem = os.path.splitext(os.path.basename(path))[0]
        target = os.path.join(out_dir, stem + "_overlay.png")
        write_png(target, side_by_side(panels))
        return target


def detection_stage(d: DetResult, runtime: str) -> StageResult:
    """A detection comparison as a stage of the report: its line, the unmatched and explained
    detections under it, and (for a comparison above a cut) why below the cut is not compared."""
    scope = "row for row" if d.cutoff == -np.inf else f"above score {d.cutoff:.4f}"
    text = (f"{scope}: {d.matched} matched of {d.compared_gluon} Gluon / "
            f"{d.compared_runtime} {runtime}; max score diff {d.max_score_diff:.2e}, max box "
            f"diff {d.max_box_diff_px:.3f} px")
    details = []
    unmatched = [("Gluon", i) for i in d.unmatched_gluon] + \
        [(runtime, i) for i in d.unmatched_runtime]
    for who, item in unmatched[:SHOW_UNMATCHED]:
        details.append(f"      unmatched {who} detection (label, score, box px) {item}")
    if len(unmatched) > SHOW_UNMATCHED:
        details.append(f"      ... and {len(unmatched) - SHOW_UNMATCHED} more unmatched")
    details.extend(_explained_lines(d, runtime))
    figures = {"matched": d.matched, "compared_gluon": d.compared_gluon,
               "compared_runtime": d.compared_runtime, "max_score_diff": d.max_score_diff,
               "max_box_diff_px": d.max_box_diff_px}
    return StageResult("detections", d.ok, figures, text, tuple(details),
                       note="" if d.cutoff == -np.inf else BELOW_CUT, result=d)


def _explained_lines(d: DetResult, runtime: str) -> list[str]:
    """The unmatched detections a float32 tie at NMS explains: counted and listed, not failed."""
    explained = [("Gluon", runtime, e) for e in d.explained_gluon] + \
        [(runtime, "Gluon", e) for e in d.explained_runtime]
    if not explained:
        return []
    why_text = ("NMS ties (equal scores or IoU at the "
                f"{d.nms_threshold:g} threshold)" if d.nms_threshold is not None
                else "ties (equal scores in another order)")
    lines = [f"      {len(explained)} unmatched explained by {why_text}, not failures:"]
    for who, other, (item, partner, why) in explained[:SHOW_UNMATCHED]:
        if why == "order":
            lines.append(f"      {who} row {item} stands at another row ({TIE_REASONS[why]})")
            continue
        lines.append(f"      {who} only {item}: {other} kept {partner} ({TIE_REASONS[why]})")
    if len(explained) > SHOW_UNMATCHED:
        lines.append(f"      ... and {len(explained) - SHOW_UNMATCHED} more explained")
    return lines


def distance_from_gluon(g: dict, rt: dict, width: int, height: int, cut: float) -> StageResult:
    """How far detections checked against another reference are from GluonCV's: how many of
    GluonCV's detections above `cut` have a runtime detection of the same label overlapping
    them by IoU >= 0.5 (scores are not compared: the head computes them otherwise). Reported,
    never judged (the head's semantics are listed in the manifest's approximations)."""
    g_labels, _, g_boxes = detections_above(g, 1.0, cut)
    r_labels, _, r_boxes = detections_above(rt, np.array([width, height] * 2, np.float64),
                                            -np.inf)
    found = 0
    for label, box in zip(g_labels, g_boxes):
        same = r_boxes[r_labels == label]
        if len(same) and float(ious(box, same).max()) >= GLUON_DISTANCE_IOU:
            found += 1
    return StageResult(
        title="vs GluonCV", ok=True,
        figures={"gluon_found": found, "gluon_compared": len(g_labels),
                 "runtime_detections": len(r_labels)},
        text=f"informational: {found} of GluonCV's {len(g_labels)} detections above "
             f"{cut:.4f} have a same-label box at IoU >= {GLUON_DISTANCE_IOU:g} among the "
             f"{len(r_labels)} detections; the detections stage checks the head's own arithmetic")
