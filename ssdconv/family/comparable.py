"""Which detections GluonCV and a DetectionOutput both keep: one rule for every family whose
GluonCV model ends in `box_nms` and whose converted model ends in DetectionOutput."""

from __future__ import annotations

import numpy as np


def top_k_cut(candidate_scores: np.ndarray, threshold: float, top_k: int, keep_top_k: int,
              gluon_scores) -> float:
    """The score above which GluonCV's detections are comparable with DetectionOutput's.

    GluonCV keeps the top-k candidates over all (box, class) pairs before NMS and post_nms
    after it; caffe-ssd, OpenCV and ncnn keep top_k per class. Above the k-th best candidate
    score both consider the same boxes; when GluonCV filled all post_nms slots, its last score
    bounds it too. `candidate_scores` are every (box, class) score GluonCV ranks.
    """
    scores = np.asarray(candidate_scores).reshape(-1)
    cands = np.sort(scores[scores > threshold])[::-1]
    cut = float(threshold)
    if top_k and top_k > 0 and len(cands) > top_k:
        cut = max(cut, float(cands[top_k - 1]))
    if keep_top_k and keep_top_k > 0 and len(gluon_scores) >= keep_top_k:
        cut = max(cut, float(np.min(gluon_scores)))
    return cut
