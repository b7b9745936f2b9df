"""The generic comparisons of the staged check: raw tensors (every conversion's proof), and a
detector's detections, matched or row for row, and pre-NMS rows.

A family's own stages (SSD: priors versus anchors) and its comparable-score rule are the head's
(`ssdconv.family.interface.Head`, `DetectorHead`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..family.interface import StageResult
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


def raw_bound(ref64: np.ndarray, ref32: np.ndarray) -> tuple[float, float]:
    """(bound, Gluon float32's own distance from float64) of one raw tensor: RAW_FACTOR x that
    distance, at least the floor, which scales with the tensor (RAW_FLOOR, or RAW_FLOOR_REL of
    its peak when that is smaller: a tensor of peak 1e-3 is not proven by an absolute 1e-4)."""
    own = float(np.abs(ref32 - ref64).max()) if ref64.size else 0.0
    peak = float(np.abs(ref64).max()) if ref64.size else 0.0
    return max(min(tol.RAW_FLOOR, tol.RAW_FLOOR_REL * peak), tol.RAW_FACTOR * own), own


def raw_diff(runtime: dict, g: dict) -> RawResult:
    """Each raw tensor the reference holds (`g["raw64"]`, by role) of the runtime against
    float64, bounded by `raw_bound`."""
    out = {}
    for key, ref in g["raw64"].items():
        bound, own = raw_bound(ref, g["raw32"][key])
        got = np.asarray(runtime[key]).reshape(-1)
        if got.shape != ref.shape:
            out[key] = RawTensor(float("inf"), 0.0, own)
            continue
        out[key] = RawTensor(err=float(np.abs(got - ref).max()), bound=bound, gluon32_err=own)
    return RawResult(out)


@dataclass
class DetResult:
    """Detections matched both ways above `cutoff`. An unmatched detection fails the check
    unless `explain_nms_ties` put it in `explained_*` instead: those are reported, not failed."""

    cutoff: float
    compared_gluon: int
    compared_runtime: int
    matched: int
    unmatched_gluon: list = field(default_factory=list)
    unmatched_runtime: list = field(default_factory=list)
    max_score_diff: float = 0.0
    max_box_diff_px: float = 0.0
    # (detection, partner on the other side, why) of detections that only a float32 tie at NMS
    # explains; detection and partner as (label, score, box px), why a TIE_REASONS value
    explained_gluon: list = field(default_factory=list)
    explained_runtime: list = field(default_factory=list)
    nms_threshold: float | None = None  # None: no tie analysis was possible

    @property
    def ok(self) -> bool:
        return not self.unmatched_gluon and not self.unmatched_runtime


def ious(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one corner box with each row of `boxes` (0 where the union is empty)."""
    ix = np.clip(np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]), 0, None)
    iy = np.clip(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]), 0, None)
    inter = ix * iy
    union = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
             + (box[2] - box[0]) * (box[3] - box[1]) - inter)
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


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
        overlaps = ious(box, cand)
        # A thin box (a random net's exp(t_wh) can make a side ~1e-3 px, or 0: IoU 0/0) loses
        # IoU to float32 rounding of its corners: corners within CORNER_PX are the same box.
        same_corners = np.abs(cand - box).max(axis=1) <= tol.CORNER_PX
        overlaps = np.where(same_corners, np.maximum(overlaps, 1.0), overlaps)
        k = int(np.argmax(overlaps))
        if overlaps[k] < tol.DET_IOU:
            return None
        return float(abs(scores[lo + k] - score)), cand[k]


def _survivor(side: tuple, i: int, threshold: float) -> bool:
    """Whether detection i could have survived an NMS at `threshold` on its own side: no other
    detection there of its label overlaps it above threshold + IOU_EPS."""
    labels, _, boxes = side
    same = np.flatnonzero(labels == labels[i])
    same = same[same != i]
    return not (ious(boxes[i], boxes[same]) > threshold + tol.IOU_EPS).any()


TIE_REASONS = {"tie": "equal scores", "threshold": "IoU at the threshold",
               "cascade": "its suppressor was itself lost to a tie",
               "order": "the same row at another position: scores equal within the tolerance",
               "cap": "below the other side's last row: rows a tie kept above it pushed it "
                      "past the post_nms cap"}
OTHER_SIDE = {"gluon": "runtime", "runtime": "gluon"}


def explain_nms_ties(sides: dict, unmatched: dict, genuine: dict,
                     threshold: float) -> dict[str, dict[int, tuple[int, str]]]:
    """Which unmatched detections only a float32 tie at NMS explains: side -> {index: (partner
    index on the other side, TIE_REASONS key)}.

    `sides[s]` is (labels, scores, boxes px) of side s ("gluon", "runtime") above the cutoff,
    `unmatched[s]` the indices of s's unmatched compared detections, `genuine[s]` a bool per
    detection of s: it is one of Gluon's own NMS candidates.

    A detection u of side X, missing on side Y, is explained when a genuine detection y kept on
    Y, of u's label, scoring at least score(u) - DET_SCORE, overlaps u at IoU >= threshold -
    IOU_EPS (so y suppresses u on Y), and why y did not suppress u on X is a tie: (a) their
    scores are equal within DET_SCORE, so the order NMS visits them is the sort's choice (GluonCV
    sorts stably, ncnn's qsort does not); (b) their IoU is within IOU_EPS of the threshold, so
    float32 rounding decides; (c) y is itself an explained detection of Y, missing on X, so on
    X nothing suppressed u (a cascade). (c) is iterated to a fixed point.

    Why this cannot hide a converter bug: every detection involved must be genuine, i.e. a box
    Gluon itself proposed to NMS (within DET_IOU and DET_SCORE). A runtime box that is
    systematically wrong (shifted, scaled, mislabelled) is no Gluon candidate, so neither it nor
    the Gluon detection it should have matched is explained (without that guard a box shifted
    by 5 px would be its own tie partner: same score, IoU ~0.9). What is left to explain is
    which of Gluon's candidates NMS kept. An explained detection must also be a possible NMS
    survivor on its own side (no same-label detection there overlaps it above threshold +
    IOU_EPS): a runtime whose NMS threshold is too high keeps such pairs, and one too low
    suppresses boxes at IoU below threshold - IOU_EPS, where no partner qualifies; within a
    group of equal scores a wrong threshold would otherwise pass for tie-breaking. The
    candidates themselves are guarded by the raw-tensor stage."""
    explained: dict[str, dict[int, tuple[int, str]]] = {"gluon": {}, "runtime": {}}
    eligible = {x: [i for i in unmatched[x]
                    if genuine[x][i] and _survivor(sides[x], i, threshold)] for x in OTHER_SIDE}
    changed = True
    while changed:
        changed = False
        for x, y in OTHER_SIDE.items():
            labels, scores, boxes = sides[x]
            ylabels, yscores, yboxes = sides[y]
            for i in eligible[x]:
                if i in explained[x]:
                    continue
                near = np.flatnonzero((ylabels == labels[i]) & genuine[y]
                                      & (yscores >= scores[i] - tol.DET_SCORE))
                overlaps = ious(boxes[i], yboxes[near])
                for j, iou in zip(near, overlaps):
                    if iou < threshold - tol.IOU_EPS:
                        continue
                    why = ("tie" if abs(yscores[j] - scores[i]) <= tol.DET_SCORE
                           else "threshold" if abs(iou - threshold) <= tol.IOU_EPS
                           else "cascade" if j in explained[y] else None)
                    if why:
                        explained[x][i] = (int(j), why)
                        changed = True
                        break
    return explained


def detections_above(d: dict, scale, above: float) -> tuple:
    """(labels, scores, boxes × scale) of the detections scoring above `above`."""
    keep = np.asarray(d["det_scores"], np.float64) > above
    boxes = np.asarray(d["det_boxes"], np.float64).reshape(-1, 4)[keep] * scale
    return (np.asarray(d["det_labels"], int)[keep],
            np.asarray(d["det_scores"], np.float64)[keep], boxes)


def _item(side: tuple, i: int) -> tuple:
    """A detection as the report shows it: (label, score, box px)."""
    return int(side[0][i]), round(float(side[1][i]), 4), side[2][i].round(1).tolist()


def _genuine(side: tuple, candidates: _Pool) -> np.ndarray:
    return np.array([candidates.best(int(lab), float(s), box) is not None
                     for lab, s, box in zip(*side)], bool)


def match_detections(g: dict, rt: dict, width: int, height: int, cutoff: float,
                     nms_threshold: float | None = None) -> DetResult:
    """Match detections above `cutoff + DET_SCORE` by label, IoU and score, both ways.

    A partner just under that threshold on the other side still counts as a match. With the
    head's `nms_threshold` and Gluon's NMS candidates (`g["candidates"]`), unmatched detections
    that only a float32 tie at NMS explains move to `explained_*` (`explain_nms_ties`)."""
    thr = cutoff + tol.DET_SCORE
    scale = np.array([width, height, width, height], np.float64)
    sides = {"gluon": detections_above(g, 1.0, cutoff),
             "runtime": detections_above(rt, scale, cutoff)}
    pools = {name: _Pool(*side) for name, side in sides.items()}
    compared = {name: np.flatnonzero(side[1] > thr) for name, side in sides.items()}
    res = DetResult(cutoff=cutoff, compared_gluon=len(compared["gluon"]),
                    compared_runtime=len(compared["runtime"]), matched=0)
    unmatched: dict[str, list[int]] = {"gluon": [], "runtime": []}
    for x, y in OTHER_SIDE.items():
        labels, scores, boxes = sides[x]
        for i in compared[x]:
            m = pools[y].best(int(labels[i]), float(scores[i]), boxes[i])
            if m is None:
                unmatched[x].append(int(i))
            elif x == "gluon":
                res.matched += 1
                res.max_score_diff = max(res.max_score_diff, m[0])
                res.max_box_diff_px = max(res.max_box_diff_px,
                                          float(np.abs(boxes[i] - m[1]).max()))
    explained: dict[str, dict] = {"gluon": {}, "runtime": {}}
    if nms_threshold is not None and "candidates" in g:
        res.nms_threshold = float(nms_threshold)
        if any(unmatched.values()):
            candidates = _Pool(*detections_above(g["candidates"], 1.0, cutoff - tol.DET_SCORE))
            genuine = {"gluon": np.ones(len(sides["gluon"][0]), bool),
                       "runtime": _genuine(sides["runtime"], candidates)}
            explained = explain_nms_ties(sides, unmatched, genuine, res.nms_threshold)
    for x, y in OTHER_SIDE.items():
        failed = getattr(res, f"unmatched_{x}")
        kept = getattr(res, f"explained_{x}")
        for i in unmatched[x]:
            if i in explained[x]:
                j, why = explained[x][i]
                kept.append((_item(sides[x], i), _item(sides[y], j), why))
            else:
                failed.append(_item(sides[x], i))
    return res


def compare_rows(g: dict, rt: dict, width: int, height: int,
                 nms_threshold: float | None = None) -> DetResult:
    """GluonCV's detections against a runtime's that computes GluonCV's post-processing itself
    (a gluon head), row for row: the same label at the same row, its score within DET_SCORE and
    its box at IoU >= DET_IOU (or corners within CORNER_PX). Every row is compared, there is no
    comparable-score cut.

    A row that differs at its position but has its partner elsewhere among the other side's
    rows (same label, box and score within DET_SCORE) is listed as a tie (equal scores
    ordered differently), never hidden; with the head's `nms_threshold` and Gluon's
    candidates, the rest go through `explain_nms_ties` as in `match_detections`."""
    scale = np.array([width, height, width, height], np.float64)
    sides = {"gluon": detections_above(g, 1.0, -np.inf),
             "runtime": detections_above(rt, scale, -np.inf)}
    res = DetResult(cutoff=-np.inf, compared_gluon=len(sides["gluon"][0]),
                    compared_runtime=len(sides["runtime"][0]), matched=0)
    pools = {name: _Pool(*side) for name, side in sides.items()}
    n = min(res.compared_gluon, res.compared_runtime)
    differ: dict[str, list[int]] = {"gluon": [], "runtime": []}
    for i in range(max(res.compared_gluon, res.compared_runtime)):
        if i < n and _same_row(sides, i):
            res.matched += 1
            gb, rb = sides["gluon"][2][i], sides["runtime"][2][i]
            res.max_score_diff = max(res.max_score_diff, abs(float(sides["gluon"][1][i])
                                                             - float(sides["runtime"][1][i])))
            res.max_box_diff_px = max(res.max_box_diff_px, float(np.abs(gb - rb).max()))
            continue
        for name, side in sides.items():
            if i < len(side[0]):
                differ[name].append(i)
    unmatched: dict[str, list[int]] = {"gluon": [], "runtime": []}
    for x, y in OTHER_SIDE.items():
        labels, scores, boxes = sides[x]
        for i in differ[x]:
            if pools[y].best(int(labels[i]), float(scores[i]), boxes[i]) is not None:
                getattr(res, f"explained_{x}").append((_item(sides[x], i), _item(sides[x], i),
                                                       "order"))
            else:
                unmatched[x].append(i)
    explained: dict[str, dict] = {"gluon": {}, "runtime": {}}
    if nms_threshold is not None and "candidates" in g and any(unmatched.values()):
        res.nms_threshold = float(nms_threshold)
        candidates = _Pool(*detections_above(g["candidates"], 1.0, -np.inf))
        genuine = {"gluon": np.ones(res.compared_gluon, bool),
                   "runtime": _genuine(sides["runtime"], candidates)}
        explained = explain_nms_ties(sides, unmatched, genuine, res.nms_threshold)
        _explain_cap(sides, unmatched, explained)
    for x, y in OTHER_SIDE.items():
        for i in unmatched[x]:
            if i in explained[x]:
                j, why = explained[x][i]
                getattr(res, f"explained_{x}").append((_item(sides[x], i), _item(sides[y], j),
                                                       why))
            else:
                getattr(res, f"unmatched_{x}").append(_item(sides[x], i))
    return res


def _explain_cap(sides: dict, unmatched: dict, explained: dict) -> None:
    """Rows of side X at the bottom that side Y lacks only because a tie added rows above.

    GluonCV keeps the first post_nms rows. When a float32 tie at NMS keeps k more rows on Y
    than on X (rows of Y explained by a tie, with no partner on X), both sides still hold
    post_nms rows, so Y's list ends k rows earlier in score: X's last rows have no partner.
    Such a row is explained ("cap") only when both sides hold the same number of rows (both
    full), it scores no higher than Y's last row (+ DET_SCORE), and no more rows are explained
    so than Y gained by ties: a missing row anywhere above Y's last one, or a surplus without a
    tie, still fails."""
    for x, y in OTHER_SIDE.items():
        rest = [i for i in unmatched[x] if i not in explained[x]]
        gained = [j for j in unmatched[y] if j in explained[y] and explained[y][j][1] != "cap"]
        if not rest or len(sides[x][0]) != len(sides[y][0]) or len(rest) > len(gained):
            continue
        floor = float(sides[y][1].min())
        if all(float(sides[x][1][i]) <= floor + tol.DET_SCORE for i in rest):
            for i in rest:
                explained[x][i] = (len(sides[y][0]) - 1, "cap")


def _same_row(sides: dict, i: int) -> bool:
    (gl, gs, gb), (rl, rs, rb) = sides["gluon"], sides["runtime"]
    if int(gl[i]) != int(rl[i]) or abs(float(gs[i]) - float(rs[i])) > tol.DET_SCORE:
        return False
    same_corners = float(np.abs(gb[i] - rb[i]).max()) <= tol.CORNER_PX
    return same_corners or float(ious(gb[i], rb[i][None])[0]) >= tol.DET_IOU


def _abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| in float64, 0 where both are equal (equal infinities included)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(a == b, 0.0, np.abs(a - b))


def _worst(d: np.ndarray) -> float:
    return float(d.max()) if d.size else 0.0


PRE_NMS = "pre-NMS"  # the title of `compare_pre_nms`'s stage


def compare_pre_nms(g: dict, rt: dict) -> StageResult:
    """A model without NMS (`Runner.pre_nms`): its rows (`rt["pre_nms_rows"]`) against the rows
    Gluon's box_nms reads (`g["pre_nms32"]`, `g["pre_nms64"]`: [R, 6] id, score, x1, y1, x2, y2
    px), every row, in order.

    The rows are compared as the raw tensors are: scores and boxes (in pixels) each within
    max(RAW_FLOOR, RAW_FACTOR x Gluon float32's own distance from float64) of float64 Gluon, the
    bound measured on this image; Gluon's float32 own distance is taken over the rows whose id
    float32 and float64 agree. Ids must be equal, except where a score mask was applied
    (`rt["pre_nms_threshold"]`, an SSD's class threshold) and the score is within the score
    bound of it: such rows (masked on one side, id -1 and score 0, kept on the other) are
    threshold ties, counted and listed, not failed. The figures against float32 Gluon are
    reported too."""
    ref32, ref64 = (np.asarray(g[k], np.float64) for k in ("pre_nms32", "pre_nms64"))
    got = np.asarray(rt["pre_nms_rows"], np.float64).reshape(-1, 6)
    if got.shape != ref64.shape:
        return StageResult(PRE_NMS, False, {"rows": len(got)},
                           f"{len(got)} rows, Gluon's box_nms reads {len(ref64)}")
    own_ids = ref32[:, 0] == ref64[:, 0]
    same_ids = (got[:, 0] == ref64[:, 0]) & own_ids
    score_own = _worst(_abs_diff(ref32[own_ids, 1], ref64[own_ids, 1]))
    box_own = _worst(_abs_diff(ref32[:, 2:6], ref64[:, 2:6]))
    score_bound = max(tol.RAW_FLOOR, tol.RAW_FACTOR * score_own)
    box_bound = max(tol.RAW_FLOOR, tol.RAW_FACTOR * box_own)
    score_err = _worst(_abs_diff(got[same_ids, 1], ref64[same_ids, 1]))
    box_err = _worst(_abs_diff(got[:, 2:6], ref64[:, 2:6]))
    figures = {
        "rows": len(got), "score_err": score_err, "score_bound": score_bound,
        "box_err_px": box_err, "box_bound_px": box_bound,
        "score_diff32": _worst(_abs_diff(got[same_ids, 1], ref32[same_ids, 1])),
        "box_diff32_px": _worst(_abs_diff(got[:, 2:6], ref32[:, 2:6])),
    }
    differ = np.flatnonzero(got[:, 0] != ref64[:, 0])
    thr = rt.get("pre_nms_threshold")
    kept = np.maximum(got[differ, 1], ref64[differ, 1])  # the side that passed the mask
    tie = ((np.minimum(got[differ, 0], ref64[differ, 0]) == -1) & (thr is not None)
           & (np.abs(kept - (thr if thr is not None else 0.0)) <= score_bound))
    figures["threshold_ties"] = int(tie.sum())
    figures["id_mismatches"] = int((~tie).sum())
    ok = score_err <= score_bound and box_err <= box_bound and not figures["id_mismatches"]
    text = (f"every one of {len(got)} rows of box_nms's input, in order: scores "
            f"{score_err:.2e} (bound {score_bound:.2e}), boxes {box_err:.2e} px (bound "
            f"{box_bound:.2e}) from float64 Gluon; from float32 Gluon: scores "
            f"{figures['score_diff32']:.2e}, boxes {figures['box_diff32_px']:.2e} px")
    if figures["id_mismatches"]:
        rows = differ[~tie][:SHOW_ROWS].tolist()
        text += f"; {figures['id_mismatches']} rows with another id, e.g. rows {rows}"
    if figures["threshold_ties"]:
        text += (f"; {figures['threshold_ties']} rows masked on one side only, their score "
                 f"within the bound of the {thr:g} threshold (ties, not failures)")
    return StageResult(PRE_NMS, ok, figures, text)


SHOW_ROWS = 6
