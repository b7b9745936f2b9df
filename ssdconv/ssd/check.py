"""SSD's part of the staged check: priors versus anchors, and which detections are comparable.

The generic stages (raw tensors against float64 Gluon, matched detections) are in
`ssdconv.verify`; they ask the SSD head (`ssdconv.ssd.family`) for these.
"""

from __future__ import annotations

import numpy as np

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
    """The score above which GluonCV's detections are comparable with DetectionOutput's.

    GluonCV keeps the top-k candidates over all (anchor, class) pairs before NMS and post_nms
    after it; caffe-ssd keeps top_k per class. Above the k-th best candidate score both consider
    the same boxes; when GluonCV filled all post_nms slots, its last score bounds it too.
    """
    scores = conf32.reshape(-1, num_classes + 1)[:, 1:].reshape(-1)
    cands = np.sort(scores[scores > nms["confidence_threshold"]])[::-1]
    cut = float(nms["confidence_threshold"])
    topk = nms["top_k"]
    if topk and topk > 0 and len(cands) > topk:
        cut = max(cut, float(cands[topk - 1]))
    keep = nms["keep_top_k"]
    if keep and keep > 0 and len(gluon_scores) >= keep:
        cut = max(cut, float(np.min(gluon_scores)))
    return cut
