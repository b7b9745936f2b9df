"""The generic comparisons of the staged check: raw tensors, matched detections.

A family's own stages (SSD: priors versus anchors) and its comparable-score rule are the head's
(`ssdconv.family.interface.Head`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import tolerances as tol


@dataclass
class RawTensor:
    """One raw tensor of a runtime against the float64 reference."""

    err: float
    bound: float
    gluon32_err: float  # Gluon float32's own distance from float64

    @property
    def ok(self) -> bool:
        return self.err <= self.bound


@dataclass
class RawResult:
    tensors: dict[str, RawTensor]  # by role, in the head's order

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tensors.values())


def raw_diff(runtime: dict, g: dict) -> RawResult:
    """Each raw tensor the reference holds (`g["raw64"]`, by role) of the runtime against
    float64, bounded by max(RAW_FLOOR, RAW_FACTOR x Gluon float32's own error)."""
    out = {}
    for key, ref in g["raw64"].items():
        own = float(np.abs(g["raw32"][key] - ref).max())
        got = np.asarray(runtime[key]).reshape(-1)
        if got.shape != ref.shape:
            out[key] = RawTensor(float("inf"), 0.0, own)
            continue
        out[key] = RawTensor(err=float(np.abs(got - ref).max()),
                             bound=max(tol.RAW_FLOOR, tol.RAW_FACTOR * own), gluon32_err=own)
    return RawResult(out)


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
