"""The staged check: Gluon versus each converted runtime on the same images.

The proof every conversion gets: first the family's own stages (SSD: priors == anchors), then
every raw tensor the head names against float64 Gluon, bounded by Gluon float32's own distance
from it. Then the stages the head's kind adds (`head_checks`: a detector's detections,
`ssdconv.verify.detections`). When the family's or the raw stage fails, the per-layer bisection
names the first layer where the runtime leaves Gluon. Every number printed is measured here;
nothing here knows a family.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..backend.interface import Runner
from ..errors import UserError
from ..family.interface import DetectorHead, Head, StageResult
from ..progress import Progress
from . import tolerances as tol
from .compare import PRE_NMS, DetResult, RawResult, raw_diff
from .detections import DetectionCheck
from .gluon_runner import GluonRunner
from .images import load_rgb
from .runners import runners_for


@dataclass
class RuntimeImageResult:
    runtime: str
    image: str
    stages: list[StageResult]  # the family's own stages, before the raw one
    raw: RawResult  # every raw tensor the head names, against float64 Gluon
    outputs: list[StageResult] = field(default_factory=list)  # the stages the head's kind adds
    first_divergence: str | None = None
    informational: bool = False  # a lossy option the user chose (fp16, int8): reported only
    note: str = ""  # why an informational runtime is not judged (the runner's `note`)

    @property
    def stages_ok(self) -> bool:
        return all(s.ok for s in self.stages)

    @property
    def figures(self) -> dict:
        """The family stages' measured numbers, by name (e.g. SSD's `prior_err`)."""
        return {k: v for s in self.stages for k, v in s.figures.items()}

    @property
    def det(self) -> DetResult | None:
        """The detection stage's comparison; None: there is none (a head that is no detector,
        or a model without NMS, checked on `pre_nms` instead)."""
        return next((s.result for s in self.outputs if isinstance(s.result, DetResult)), None)

    @property
    def pre_nms(self) -> StageResult | None:
        """A model without NMS: its rows against the rows box_nms reads (else None)."""
        return next((s for s in self.outputs if s.title == PRE_NMS), None)

    @property
    def exact(self) -> bool:
        return self.stages_ok and self.raw.ok and all(s.ok for s in self.outputs)

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
            if tuple(graph.shapes.get(name, a.shape)) != tuple(a.shape):
                continue  # a blob the IR shapes otherwise by design (ceil pooling before its crop)
            return f"{name}: shape {a.shape} in Gluon, {b.shape} in {runner.name}"
        err = float(np.abs(a.reshape(-1) - b.reshape(-1)).max())
        rel = err / (float(np.abs(a).max()) + 1e-6)
        if rel > tol.LAYER_REL:
            return f"{name}: max abs diff {err:.3g} (relative {rel:.3g})"
    return None


def run_check(conversion, images: list[str], runtimes: tuple[str, ...] | None = None,
              winograd: bool = False, overlay_dir: str | None = None,
              overlay_min_score: float = 0.5, progress: Progress | None = None,
              runners: list[Runner] | None = None) -> CheckReport:
    """Run every image through Gluon and each runtime whose files the conversion wrote (those
    of `runtimes` when given); `runners`: these instead, already loaded (a model another tool
    wrote for the same source and outputs, run by a package runner: bench/retinaface_target.py
    checks ncnn's mxnet2ncnn this way).

    Gluon gets the preprocessing of the options the conversion was made with. With
    `overlay_dir` and a head whose outputs draw (a detector's boxes), also write one
    side-by-side PNG per image (a panel per runtime); they appear together once every image is
    checked, so a check that fails on a bad image or is interrupted leaves the folder's earlier
    overlays as they were. `progress(done, total)` is called after each image."""
    if not overlay_dir:
        return _check(conversion, images, runtimes, winograd, None, overlay_min_score, progress,
                      runners)
    from ..fileio import StagedDirectory

    with StagedDirectory(overlay_dir) as stage:
        report = _check(conversion, images, runtimes, winograd, str(stage.path),
                        overlay_min_score, progress, runners)
        names = [os.path.basename(p) for p in report.overlays]
        stage.publish(list(dict.fromkeys(names)))  # two images may share a stem
        report.overlays = [os.path.join(overlay_dir, n) for n in names]
    return report


class ImageCheck(Protocol):
    """A stage a head's kind adds, on one image (`HeadCheck.image`)."""

    def compare(self, runner: Runner, rt: dict) -> tuple[list[StageResult], list[StageResult]]:
        """(stages shown before the raw one, stages after it) for one runtime's result."""
        ...

    def overlay(self, path: str, out_dir: str, rgb: np.ndarray, outs: list,
                min_score: float) -> str | None:
        """The PNG drawn of the image and each (runner, result) in `outs`; None: nothing to
        draw."""
        ...


class HeadCheck(Protocol):
    """Stages a head's kind adds to the proof after the raw tensors, for one conversion."""

    def image(self, g: dict) -> ImageCheck:
        """The stages on one image, whose Gluon result (`GluonRunner.run`) is `g`."""
        ...


def head_checks(head: Head, manifest: dict) -> list[HeadCheck]:
    """The stages a head's kind adds after the raw one: a detector's detections
    (`DetectorHead`), then the head's own (`Head.kind_checks`: a plain network's vectors);
    none for a head whose proof is its raw tensors."""
    detections = [DetectionCheck(head, manifest)] if isinstance(head, DetectorHead) else []
    return detections + head.kind_checks(manifest)


def _check(conversion, images: list[str], runtimes: tuple[str, ...] | None, winograd: bool,
           overlay_dir: str | None, overlay_min_score: float,
           progress: Progress | None, runners: list[Runner] | None = None) -> CheckReport:
    manifest = conversion.manifest
    head = conversion.head
    channels = manifest["input_shape"][1]
    if channels != 3:
        raise UserError(f"{conversion.model.name} reads {channels} input channel(s); the check "
                        "feeds photos (3 channels, RGB), so it cannot run this network: the "
                        "conversion is written, check it on inputs of your own")
    gluon = GluonRunner.for_conversion(conversion)
    if runners is None:
        runners = runners_for(conversion, runtimes, winograd)
    checks = head_checks(head, manifest)
    report = CheckReport()
    _, _, h, w = manifest["input_shape"]
    for done, path in enumerate(images, 1):
        rgb = load_rgb(path, h, w)
        g = gluon.run(rgb, pre_nms=any(r.pre_nms for r in runners))
        per_image = [c.image(g) for c in checks]
        outs = []
        for runner in runners:
            rt = runner.run(rgb)
            outs.append((runner, rt))
            stages = head.check_stages(rt)
            raw = raw_diff(rt, g)
            outputs: list[StageResult] = []
            for check in per_image:
                before, after = check.compare(runner, rt)
                stages += before
                outputs += after
            res = RuntimeImageResult(runner.name, os.path.basename(path), stages, raw, outputs,
                                     informational=runner.informational, note=runner.note)
            if not (raw.ok and res.stages_ok) and not res.informational:
                res.first_divergence = _bisect(gluon, runner, conversion.graph, rgb)
            report.results.append(res)
        if overlay_dir:  # only a head whose outputs draw (a detector's boxes) has overlays
            drawn = [c.overlay(path, overlay_dir, rgb, outs, overlay_min_score)
                     for c in per_image]
            report.overlays += [p for p in drawn if p is not None]
        if progress:
            progress(done, len(images))
    return report


def _stage_line(number: int, title: str, text: str) -> str:
    return f"    {number} {title:<12s}{text}"


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
        for i, s in enumerate(r.outputs, len(r.stages) + 2):
            lines.append(_stage_line(i, s.title, s.text))
            lines.extend(s.details)
        if r.first_divergence:
            lines.append(f"    first divergence: {r.first_divergence}")
    lines += list(dict.fromkeys(s.note for r in report.results for s in r.outputs if s.note))
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
