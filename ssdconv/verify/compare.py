"""The three comparisons of the staged check: priors, raw tensors, matched detections."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import tolerances as tol


def prior_diff(priors: np.ndarray, anchors_norm: np.ndarray, variance) -> tuple[float, float]:
    """(max |box - anchor|, max |variance - stds|) of a (2, N*4) prior blob."""
    boxes = priors[0].reshape(-1, 4).astype(np.float64)
    var = priors[1].reshape(-1, 4).astype(np.float64)
    if boxes.shape != anchors_norm.shape:
        return float("inf"), float("inf")
    return (float(np.abs(boxes - anchors_norm).max()),
            float(np.abs(var - np.asarray(variance)[None]).max()))


@dataclass
class RawResult:
    loc_err: float
    conf_err: float
    loc_bound: float
    conf_bound: float
    gluon32_loc_err: float
    gluon32_conf_err: float

    @property
    def ok(self) -> bool:
        return self.loc_err <= self.loc_bound and self.conf_err <= self.conf_bound


def raw_diff(rt_loc, rt_conf, g: dict) -> RawResult:
    """Runtime loc/conf against the float64 reference, bounded by float32's own error."""
    g_loc = float(np.abs(g["loc32"] - g["loc64"]).max())
    g_conf = float(np.abs(g["conf32"] - g["conf64"]).max())
    if rt_loc.shape != g["loc64"].shape or rt_conf.shape != g["conf64"].shape:
        return RawResult(float("inf"), float("inf"), 0, 0, g_loc, g_conf)
    return RawResult(
        loc_err=float(np.abs(rt_loc - g["loc64"]).max()),
        conf_err=float(np.abs(rt_conf - g["conf64"]).max()),
        loc_bound=max(tol.RAW_FLOOR, tol.RAW_FACTOR * g_loc),
        conf_bound=max(tol.RAW_FLOOR, tol.RAW_FACTOR * g_conf),
        gluon32_loc_err=g_loc, gluon32_conf_err=g_conf)


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


@dataclass
class DetResult:
    cutoff: float
    compared_gluon: int
    compared_runtime: int
    matched: int
    unmatched_gluon: list = field(default_factory=list)
    unmatched_runtime: list = field(default_factory=list)
    max_score_diff: float = 0.0
    max_box_diff_px: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.unmatched_gluon and not self.unmatched_runtime


class _Pool:
    """Detections of one side indexed by (label, score) so a partner search looks only at
    boxes of the same label within DET_SCORE, not at every box (NMS-free models give 10^5)."""

    def __init__(self, labels, scores, boxes) -> None:
        self.by_label: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        labels = np.asarray(labels, int)
        scores = np.asarray(scores, np.float64)
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        for lab in np.unique(labels):
            sel = labels == lab
            order = np.argsort(scores[sel])
            self.by_label[int(lab)] = (scores[sel][order], boxes[sel][order])

    def best(self, label: int, score: float, box: np.ndarray):
        """(score diff, box) of the best-overlapping partner, or None."""
        if label not in self.by_label:
            return None
        scores, boxes = self.by_label[label]
        lo = np.searchsorted(scores, score - tol.DET_SCORE, "left")
        hi = np.searchsorted(scores, score + tol.DET_SCORE, "right")
        if lo >= hi:
            return None
        cand = boxes[lo:hi]
        ix = np.clip(np.minimum(cand[:, 2], box[2]) - np.maximum(cand[:, 0], box[0]), 0, None)
        iy = np.clip(np.minimum(cand[:, 3], box[3]) - np.maximum(cand[:, 1], box[1]), 0, None)
        inter = ix * iy
        union = ((cand[:, 2] - cand[:, 0]) * (cand[:, 3] - cand[:, 1])
                 + (box[2] - box[0]) * (box[3] - box[1]) - inter)
        ious = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
        k = int(np.argmax(ious))
        if ious[k] < tol.DET_IOU:
            return None
        return float(abs(scores[lo + k] - score)), cand[k]


def _side(d: dict, scale, above: float):
    keep = np.asarray(d["det_scores"], np.float64) > above
    boxes = np.asarray(d["det_boxes"], np.float64).reshape(-1, 4)[keep] * scale
    return np.asarray(d["det_labels"], int)[keep], np.asarray(d["det_scores"])[keep], boxes


def match_detections(g: dict, rt: dict, width: int, height: int, cutoff: float) -> DetResult:
    """Match detections above `cutoff + DET_SCORE` by label, IoU and score, both ways.

    A partner just under that threshold on the other side still counts as a match."""
    thr = cutoff + tol.DET_SCORE
    scale = np.array([width, height, width, height], np.float64)
    ga = _side(g, 1.0, thr)
    ra = _side(rt, scale, thr)
    g_pool = _Pool(*_side(g, 1.0, cutoff))
    r_pool = _Pool(*_side(rt, scale, cutoff))
    res = DetResult(cutoff=cutoff, compared_gluon=len(ga[0]), compared_runtime=len(ra[0]),
                    matched=0)
    for lab, s, box in zip(*ga):
        m = r_pool.best(int(lab), float(s), box)
        if m is None:
            res.unmatched_gluon.append((int(lab), round(float(s), 4), box.round(1).tolist()))
            continue
        res.matched += 1
        res.max_score_diff = max(res.max_score_diff, m[0])
        res.max_box_diff_px = max(res.max_box_diff_px, float(np.abs(box - m[1]).max()))
    for lab, s, box in zip(*ra):
        if g_pool.best(int(lab), float(s), box) is None:
            res.unmatched_runtime.append((int(lab), round(float(s), 4), box.round(1).tolist()))
    return res
