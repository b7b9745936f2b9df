"""Detection accuracy (VOC07 mAP@0.5) of the original and of every converted runtime.

The staged check proves tensors agree; this shows what users care about in the end: the
detector's accuracy survives conversion. All runtimes see the same generated test images (never
trained on), their boxes are clipped to the image the same way, and GluonCV's own
VOC07MApMetric scores them. The int8 model is calibrated on other images (the caller's
`calibration` samples: `ssdconv eval` uses the training split), never on the ones scored.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, replace

import numpy as np

from ..backend import backends
from ..backend.interface import EvalVariant
from ..convert import Options, convert
from ..errors import UserError
from ..family.interface import DetectorFamily, DetectorHead
from ..mxnet.load import LoadedModel
from ..options import for_targets, table, target_names
from .gluon_runner import GluonRunner
from .runners import runners_for, runtime_names

GLUON = "gluon"
CALIBRATION_IMAGES = 100  # ncnn-int8's calibration set (ncnn2table's docs use a few hundred)


@dataclass
class AccuracyResult:
    images: int
    maps: dict[str, float] = field(default_factory=dict)
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)

    def deltas(self) -> dict[str, float]:
        base = self.maps[GLUON]
        return {k: v - base for k, v in self.maps.items() if k != GLUON}

    def as_dict(self) -> dict:
        return {"images": self.images, "map": self.maps, "delta_vs_gluon": self.deltas(),
                "per_class": self.per_class}


def _write_calibration(samples, count: int, directory: str) -> str:
    """The first `count` calibration samples as PNG files (lossless): what --ncnn-int8 reads."""
    import cv2

    os.makedirs(directory, exist_ok=True)
    for i in range(count):
        rgb = samples(i)[0]
        cv2.imwrite(os.path.join(directory, f"calibration_{i:05d}.png"), rgb[:, :, ::-1])
    return directory


def _variants(family: DetectorFamily) -> list[tuple[str, EvalVariant]]:
    """(backend name, variant) for every extra row: the backends' own (ncnn: fp16, int8),
    then the family's (YOLOv3: ncnn-native), in the order the table shows them."""
    rows = [(b.name, v) for b in backends() for v in b.eval_variants]
    return rows + [(v.target, v) for v in family.eval_variants]


def _variant_defaults() -> dict:
    """The backends' lossy options (those their extra rows set) at their defaults: the exact
    conversion is made without them."""
    keys = {k for b in backends() for v in b.eval_variants
            for k in (*v.options, v.calibration_option) if k}
    return {o.key: o.default for o in table() if o.key in keys}


def _runners(model: LoadedModel, workdir: str, options: Options,
             runtimes: tuple[str, ...] | None = None, calibration=None,
             calibration_count: int = CALIBRATION_IMAGES):
    """Convert once for every target, exact, and once more for each extra row asked for
    (`runtimes`; None: every one that can run, `default_runtimes`), every other option the
    user's; return the exact conversion, the runtimes and every runner by name (OpenCV with
    Winograd, as deployed)."""
    exact_options = for_targets(replace(options, **_variant_defaults()), target_names())
    exact = convert(model, os.path.join(workdir, "exact"), exact_options)
    if runtimes is None:
        runtimes = default_runtimes(exact.head.family, calibration is not None)
    runners = runners_for(exact, winograd=True)
    for target, variant in _variants(exact.head.family):
        if variant.name not in runtimes:
            continue
        changes = dict(variant.options)
        if variant.calibration_option:
            if calibration is None:
                raise ValueError(f"{variant.name} needs calibration samples")
            images = _write_calibration(calibration, calibration_count,
                                        os.path.join(workdir, "calibration"))
            changes[variant.calibration_option] = (images,)
        other = convert(model, os.path.join(workdir, variant.name),
                        for_targets(replace(exact_options, **changes), (target,)))
        (runner,) = runners_for(other)
        runner.name = variant.name
        runners.append(runner)
    return exact, runtimes, {r.name: r for r in runners}


def default_runtimes(family: DetectorFamily, calibrated: bool) -> tuple[str, ...]:
    """Every row that can run: Gluon, each backend's exact runtime, then every extra row
    (a calibrated one only with calibration samples to calibrate on)."""
    extra = tuple(v.name for _, v in _variants(family)
                  if calibrated or not v.calibration_option)
    return (GLUON, *runtime_names(), *extra)


def evaluate(model: LoadedModel, samples, count: int, options: Options | None = None,
             runtimes: tuple[str, ...] | None = None, progress=None, calibration=None,
             calibration_count: int = CALIBRATION_IMAGES) -> AccuracyResult:
    """mAP per runtime on `count` samples; `samples(i)` gives (rgb, boxes px, labels).

    `calibration(i)`, samples of the same form that must not be the scored ones, calibrates the
    int8 model on its first `calibration_count`; without it there is no ncnn-int8 row (the
    default runtimes are all that can run, `default_runtimes`)."""
    import cv2
    from gluoncv.utils.metrics.voc_detection import VOC07MApMetric

    options = options or Options()
    with tempfile.TemporaryDirectory() as tmp:
        conv, runtimes, runners = _runners(model, tmp, options, runtimes, calibration,
                                           calibration_count)
        if not isinstance(conv.head, DetectorHead):
            raise UserError(f"eval measures a detector's mAP; {model.name} is "
                            f"{conv.head.family.kind}: check it with `ssdconv verify` instead")
        classes = conv.manifest["classes"]
        _, _, h, w = conv.manifest["input_shape"]
        gluon = GluonRunner.for_conversion(conv)
        metrics = {r: VOC07MApMetric(iou_thresh=0.5, class_names=classes) for r in runtimes}
        for i in range(count):
            rgb, gt_boxes, gt_labels = samples(i)
            sy, sx = h / rgb.shape[0], w / rgb.shape[1]
            if rgb.shape[:2] != (h, w):
                rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
            gt = np.asarray(gt_boxes, np.float64) * np.array([sx, sy, sx, sy])
            for name in runtimes:
                if name == GLUON:  # Gluon's boxes are in pixels, a runner's normalised
                    score_image(metrics[name], gluon.detect(rgb), gt, gt_labels, w, h)
                else:
                    score_image(metrics[name], runners[name].run(rgb), gt, gt_labels, w, h,
                                normalised=True)
            if progress:
                progress(i + 1, count)
        result = AccuracyResult(images=count)
        for name, metric in metrics.items():
            names, values = metric.get()
            result.maps[name] = float(values[-1])
            result.per_class[name] = {n: float(v) for n, v in zip(names[:-1], values[:-1])}
        return result


def score_image(metric, det: dict, gt_boxes, gt_labels, w: int, h: int,
                normalised: bool = False) -> None:
    """One image's detections into a VOC07 metric: boxes in pixels (`normalised`: 0..1, as a
    runner gives them), clipped to the image, against its ground truth (pixels)."""
    boxes = np.asarray(det["det_boxes"], np.float64)
    if normalised:
        boxes = boxes * np.array([w, h, w, h], np.float64)
    boxes = np.clip(boxes, 0, [w, h, w, h])
    metric.update(boxes[None], np.asarray(det["det_labels"])[None, :, None],
                  np.asarray(det["det_scores"])[None, :, None],
                  np.asarray(gt_boxes, np.float64)[None], np.asarray(gt_labels)[None, :, None])


def format_table(result: AccuracyResult) -> str:
    width = max(12, *(len(n) for n in result.maps))
    lines = [f"VOC07 mAP@0.5 on {result.images} held-out generated test images",
             f"{'runtime':{width}s} {'mAP':>8s} {'delta vs Gluon':>15s}"]
    for name, value in result.maps.items():
        delta = "" if name == GLUON else f"{value - result.maps[GLUON]:+.5f}"
        lines.append(f"{name:{width}s} {value:8.4f} {delta:>15s}")
    return "\n".join(lines)
