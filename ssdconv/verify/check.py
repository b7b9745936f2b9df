"""The staged check: Gluon versus each converted runtime on the same images.

First the detector family's own stages (SSD: priors == anchors), then the raw tensors the head
names against a float64 reference, then the detections matched above the head's comparable
score (unmatched ones that only a float32 tie at the head's NMS threshold explains are counted
and listed, not failed: `compare.explain_nms_ties`); for a model converted without NMS
(`Runner.pre_nms`), the rows Gluon's box_nms reads instead (`compare.compare_pre_nms`). When
a stage fails, the per-layer bisection names the first layer where the runtime leaves Gluon.
Every number printed is measured here; nothing here knows a family.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..family.interface import StageResult
from ..progress import Progress
from . import tolerances as tol
from .compare import (
    TIE_REASONS,
    DetResult,
    compare_pre_nms,
    compare_rows,
    detections_above,
    ious,
    match_detections,
    raw_diff,
)
from .gluon_runner import GluonRunner
from .images import load_rgb
from .runners import runners_for


@dataclass
class RuntimeImageResult:
    runtime: str
    image: str
    stages: list[StageResult]  # the family's own stages
    raw: object
    det: DetResult | None  # None: the model has no detections (`pre_nms` instead)
    first_divergence: str | None = None
    informational: bool = False  # a lossy option the user chose (fp16, int8): reported only
    note: str = ""  # why an informational runtime is not judged (the runner's `note`)
    pre_nms: StageResult | None = None  # a model without NMS: its rows against box_nms's input

    @property
    def stages_ok(self) -> bool:
        return all(s.ok for s in self.stages)

    @property
    def figures(self) -> dict:
        """The family stages' measured numbers, by name (e.g. SSD's `prior_err`)."""
        return {k: v for s in self.stages for k, v in s.figures.items()}

    @property
    def exact(self) -> bool:
        return (self.stages_ok and self.raw.ok and (self.det is None or self.det.ok)
                and (self.pre_nms is None or self.pre_nms.ok))

    @property
    def ok(self) -> bool:
        return self.informational or self.exact


@dataclass
class CheckReport:
    results: list[RuntimeImageResult] = field(default_factory=list)
    overlays: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


SHOW_UNMATCHED = 6


def _bisect(gluon: GluonRunner, runner, graph, rgb) -> str | None:
    """Name the first layer (graph order) whose output leaves Gluon's by more than LAYER_REL."""
    source_names = {n.name for n in gluon.graph.nodes}
    # the input blob differs by design (the preprocessing was folded into the first conv)
    names = [b for n in graph.nodes for b in n.outputs
             if b in source_names and b not in graph.inputs]
    g = gluon.internals(rgb, names)
    rt = runner.blobs(rgb, [n for n in names if n in g])
    for name in names:
        if name not in g or name not in rt:
            continue
        a = g[name].astype(np.float64)
        b = rt[name].astype(np.float64)
        if a.size != b.size:
            return f"{name}: shape {a.shape} in Gluon, {b.shape} in {runner.name}"
        err = float(np.abs(a.reshape(-1) - b.reshape(-1)).max())
        rel = err / (float(np.abs(a).max()) + 1e-6)
        if rel > tol.LAYER_REL:
            return f"{name}: max abs diff {err:.3g} (relative {rel:.3g})"
    return None


def _overlay(path: str, out_dir: str, rgb, g: dict, outs: list, manifest: dict,
             min_score: float) -> str:
    """One side-by-side PNG: Gluon's panel, then one per (runner, its result) in `outs`."""
    from .overlay import draw_panel, side_by_side, write_png

    _, _, h, w = manifest["input_shape"]
    scale = np.array([w, h, w, h], np.float64)
    classes = manifest["classes"]
    panels = [draw_panel(rgb, g["det_boxes"], g["det_labels"], g["det_scores"], classes,
                         "Gluon (MXNet)", min_score)]
    for runner, rt in outs:
        if "det_boxes" not in rt:  # a model without NMS has no detections to draw
            continue
        panels.append(draw_panel(rgb, np.asarray(rt["det_boxes"]) * scale, rt["det_labels"],
                                 rt["det_scores"], classes, runner.title, min_score))
    os.makedirs(out_dir, exist_ok=True)
    target = os.path.join(out_dir, os.path.splitext(os.path.basename(path))[0] + "_overlay.png")
    write_png(target, side_by_side(panels))
    return target


def run_check(conversion, images: list[str], runtimes: tuple[str, ...] | None = None,
              winograd: bool = False, overlay_dir: str | None = None,
              overlay_min_score: float = 0.5, progress: Progress | None = None) -> CheckReport:
    """Run every image through Gluon and each runtime whose files the conversion wrote (those
    of `runtimes` when given).

    Gluon gets the preprocessing of the options the conversion was made with. With
    `overlay_dir`, also write one side-by-side PNG per image (a panel per runtime); they appear
    together once every image is checked, so a check that fails on a bad image or is
    interrupted leaves the folder's earlier overlays as they were. `progress(done, total)` is
    called after each image."""
    if not overlay_dir:
        return _check(conversion, images, runtimes, winograd, None, overlay_min_score, progress)
    from ..fileio import StagedDirectory

    with StagedDirectory(overlay_dir) as stage:
        report = _check(conversion, images, runtimes, winograd, str(stage.path),
                        overlay_min_score, progress)
        names = [os.path.basename(p) for p in report.overlays]
        stage.publish(list(dict.fromkeys(names)))  # two images may share a stem
        report.overlays = [os.path.join(overlay_dir, n) for n in names]
    return report


def _check(conversion, images: list[str], runtimes: tuple[str, ...] | None, winograd: bool,
           overlay_dir: str | None, overlay_min_score: float,
           progress: Progress | None) -> CheckReport:
    manifest = conversion.manifest
    head = conversion.head
    gluon = GluonRunner.for_conversion(conversion)
    runners = runners_for(conversion, runtimes, winograd)
    report = CheckReport()
    _, _, h, w = manifest["input_shape"]
    for done, path in enumerate(images, 1):
        rgb = load_rgb(path, h, w)
        g = gluon.run(rgb, pre_nms=any(r.pre_nms for r in runners))
        cut = head.comparable_score(g["raw32"], g["det_scores"])
        other = head.reference_detections(g)  # a head with another layer's semantics
        outs = []
        for runner in runners:
            rt = runner.run(rgb)
            outs.append((runner, rt))
            stages = head.check_stages(rt)
            raw = raw_diff(rt, g)
            pre_nms = None
            if runner.pre_nms:  # no detections: the rows GluonCV's box_nms reads
                det, pre_nms = None, compare_pre_nms(g, rt)
            elif runner.row_for_row:  # GluonCV's own post-processing: its rows, in its order
                det = compare_rows(g, rt, w, h, head.nms_threshold())
            elif other is None:
                det = match_detections(g, rt, w, h, cut, head.nms_threshold())
            else:
                det = match_detections(other[0], rt, w, h, other[1])
                stages.append(_distance_from_gluon(g, rt, w, h, cut))
            res = RuntimeImageResult(runner.name, os.path.basename(path), stages, raw, det,
                                     informational=runner.informational, note=runner.note,
                                     pre_nms=pre_nms)
            if not (raw.ok and res.stages_ok) and not res.informational:
                res.first_divergence = _bisect(gluon, runner, conversion.graph, rgb)
            report.results.append(res)
        if overlay_dir:
            report.overlays.append(_overlay(path, overlay_dir, rgb, g, outs, manifest,
                                            overlay_min_score))
        if progress:
            progress(done, len(images))
    return report


GLUON_DISTANCE_IOU = 0.5  # "found" in the informational comparison: VOC's match rule


def _distance_from_gluon(g: dict, rt: dict, width: int, height: int, cut: float) -> StageResult:
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


def _stage_line(number: int, title: str, text: str) -> str:
    return f"    {number} {title:<12s}{text}"


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


def format_report(report: CheckReport) -> str:
    """The staged report as text: one block per runtime and image, then a verdict."""
    lines = []
    for r in report.results:
        mark = "info" if r.informational and not r.exact else ("ok  " if r.ok else "FAIL")
        lines.append(f"[{mark}] {r.runtime:6s} {r.image}")
        for i, s in enumerate(r.stages, 1):
            lines.append(_stage_line(i, s.title, s.text))
        tensors = r.raw.tensors.items()
        errs = ", ".join(f"{k} {t.err:.2e} (bound {t.bound:.2e})" for k, t in tensors)
        own = ", ".join(f"{k} {t.gluon32_err:.2e}" for k, t in tensors)
        lines.append(_stage_line(len(r.stages) + 1, "raw",
                                 f"{errs}; Gluon float32 itself: {own} from float64"))
        if r.pre_nms is not None:
            lines.append(_stage_line(len(r.stages) + 2, r.pre_nms.title, r.pre_nms.text))
        d = r.det
        if d is None:
            if r.first_divergence:
                lines.append(f"    first divergence: {r.first_divergence}")
            continue
        scope = ("row for row" if d.cutoff == -np.inf else f"above score {d.cutoff:.4f}")
        lines.append(_stage_line(
            len(r.stages) + 2, "detections",
            f"{scope}: {d.matched} matched of {d.compared_gluon} Gluon / "
            f"{d.compared_runtime} {r.runtime}; max score diff {d.max_score_diff:.2e}, max box "
            f"diff {d.max_box_diff_px:.3f} px"))
        unmatched = [("Gluon", i) for i in d.unmatched_gluon] + \
            [(r.runtime, i) for i in d.unmatched_runtime]
        for who, item in unmatched[:SHOW_UNMATCHED]:
            lines.append(f"      unmatched {who} detection (label, score, box px) {item}")
        if len(unmatched) > SHOW_UNMATCHED:
            lines.append(f"      ... and {len(unmatched) - SHOW_UNMATCHED} more unmatched")
        lines.extend(_explained_lines(d, r.runtime))
        if r.first_divergence:
            lines.append(f"    first divergence: {r.first_divergence}")
    if any(r.det is not None and r.det.cutoff != -np.inf for r in report.results):
        lines.append(
            "Below the compared score GluonCV and DetectionOutput may legitimately differ: "
            "GluonCV keeps its top-k candidates over all classes before NMS, caffe-ssd/OpenCV/"
            "ncnn keep top_k per class, and equal scores may be ordered differently.")
    lines += list(dict.fromkeys(r.note for r in report.results if r.informational and r.note))
    lines.append("verdict: " + _verdict(report))
    return "\n".join(lines)


def _verdict(report: CheckReport) -> str:
    """PASS or FAIL; a PASS where every runtime was informational says that nothing was judged,
    so a lossy-only conversion (`--target ncnn --ncnn-int8`) is not taken for a proven one."""
    if not report.ok:
        return "FAIL"
    if report.results and all(r.informational for r in report.results):
        return ("PASS, informational only: every model checked carries a lossy option you chose "
                "(fp16, int8), so nothing was judged against the exact tolerances; convert once "
                "without it to prove the graph itself")
    return "PASS"
