"""SSD's part of the staged check: priors versus anchors, and which detections are comparable.

The generic stages (raw tensors against float64 Gluon, matched detections) are in
`ssdconv.verify`; they ask the SSD head (`ssdconv.ssd.family`) for these.
"""

from __future__ import annotations

import numpy as np

from ..family.comparable import top_k_cut
from ..family.interface import StageResult
from .priorbox import PRIOR_TOL


def prior_diff(priors: np.ndarray, anchors_norm: np.ndarray, variance) -> tuple[float, float]:
    """(max |box - anchor|, max |variance - stds|) of a (2, N*4) prior blob."""
    boxes = priors[0].reshape(-1, 4).astype(np.float64)
    var = priors[1].reshape(-1, 4).astype(np.float64)
    if boxes.shape != anchors_norm.shape:
        return float("inf"), float("inf")
    return (float(np.abs(boxes - anchors_norm).max()),
            float(np.abs(var - np.asarray(variance)[None]).max()))


def priors_stage(priors: np.ndarray, anchors_norm: np.ndarray, variance) -> StageResult:
    """Stage "priors": the runtime's prior blob against the model's anchors and stds."""
    perr, verr = prior_diff(np.asarray(priors).reshape(2, -1), anchors_norm, variance)
    return StageResult(
        title="priors", ok=perr <= PRIOR_TOL and verr <= PRIOR_TOL,
        figures={"prior_err": perr, "var_err": verr},
        text=f"max |prior - anchor| {perr:.2e} (tol {PRIOR_TOL:g}), variance {verr:.2e}")


def comparable_score(conf32: np.ndarray, num_classes: int, nms, gluon_scores) -> float:
    """The score above which GluonCV's detections are comparable with DetectionOutput's
    (`ssdconv.family.comparable.top_k_cut`), from the softmax scores without background."""
    scores = conf32.reshape(-1, num_classes + 1)[:, 1:]
    return top_k_cut(scores, nms["confidence_threshold"], nms["top_k"], nms["keep_top_k"],
                     gluon_scores)
