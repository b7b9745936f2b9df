"""The three comparisons of the staged check: priors, raw tensors, matched detections."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import tolerances as tol


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


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
    min_iou: float = 1.0

    @property
    def ok(self) -> bool:
        return not self.unmatched_gluon and not self.unmatched_runtime


def match_detections(g: dict, rt: dict, width: int, height: int, cutoff: float) -> DetResult:
    """Match detections above `cutoff + DET_SCORE` by label, IoU and score, both ways."""
    thr = cutoff + tol.DET_SCORE
    scale = np.array([width, height, width, height], np.float64)
    ga = [(int(lab), float(s), np.asarray(b, np.float64))
          for lab, s, b in zip(g["det_labels"], g["det_scores"], g["det_boxes"]) if s > thr]
    ra = [(int(lab), float(s), np.asarray(b, np.float64) * scale)
          for lab, s, b in zip(rt["det_labels"], rt["det_scores"], rt["det_boxes"]) if s > thr]
    # a partner just under the threshold on the other side still counts as a match
    rb = [(int(lab), float(s), np.asarray(b, np.float64) * scale)
          for lab, s, b in zip(rt["det_labels"], rt["det_scores"], rt["det_boxes"])
          if s > cutoff]
    gb = [(int(lab), float(s), np.asarray(b, np.float64))
          for lab, s, b in zip(g["det_labels"], g["det_scores"], g["det_boxes"]) if s > cutoff]
    res = DetResult(cutoff=cutoff, compared_gluon=len(ga), compared_runtime=len(ra), matched=0)

    def best(item, pool):
        lab, s, box = item
        cands = [(iou(box, b), abs(s - s2), b) for lab2, s2, b in pool if lab2 == lab]
        cands = [c for c in cands if c[0] >= tol.DET_IOU and c[1] <= tol.DET_SCORE]
        return max(cands, key=lambda c: c[0]) if cands else None

    for item in ga:
        m = best(item, rb)
        if m is None:
            res.unmatched_gluon.append((item[0], round(item[1], 4), item[2].round(1).tolist()))
            continue
        res.matched += 1
        res.max_score_diff = max(res.max_score_diff, m[1])
        res.max_box_diff_px = max(res.max_box_diff_px, float(np.abs(item[2] - m[2]).max()))
        res.min_iou = min(res.min_iou, m[0])
    for item in ra:
        if best(item, gb) is None:
            res.unmatched_runtime.append((item[0], round(item[1], 4), item[2].round(1).tolist()))
    return res
