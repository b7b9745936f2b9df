"""The faces stage RetinaFace adds to the check (`Head.kind_checks`): insightface's decode
(`decode.insightface_faces`, float64) applied to the runtime's raw outputs and to float64
MXNet's, the faces matched both ways; and, informational, what ncnn's example's decode finds on
the runtime's outputs against insightface's.

A face of one side matches one of the other when their boxes overlap by DET_IOU (insightface's IoU,
+1 sizes, so a box clipped to a zero-width line at the border still has one) and their scores
differ by at most DET_SCORE (the detection stage's tolerances); its landmarks' largest distance is
reported. A face only one side has fails, unless float32 alone explains it (listed, not failed):
its score is within SCORE_TIE of the threshold, so it may fall on either side; or NMS kept it on
one side and not the other because of a tie (`explain_nms_ties`): the face is one of float64
MXNet's own candidates, and on the other side a kept face, also one of them, suppresses it
(IoU >= the NMS threshold - IOU_EPS, insightface's +1 IoU) whose score equals its within
DET_SCORE (the sort's choice: a seeded model's scores saturate at 1.0), or whose IoU with it is
within IOU_EPS of the threshold, or which is itself such a face missing on this side (a cascade,
iterated to a fixed point).
"""

from __future__ import annotations

import numpy as np

from ..family.interface import StageResult
from ..verify import tolerances as tol
from .decode import (
    Faces,
    Level,
    insightface_candidates_all,
    insightface_faces,
    iou_plus_one,
    ncnn_example_faces,
)

SCORE_TIE = 1e-5  # a face this close to the score threshold may fall either side in float32
TITLE = "faces"
EXAMPLE_TITLE = "ncnn-decode"


def _pairs(a: Faces, b: Faces, iou: float, score: float) -> list[tuple[int, int | None]]:
    """Each face of `a` (highest score first) with its partner in `b`: among the faces of `b`
    not taken yet that overlap it by `iou` and differ in score by at most `score`, the closest
    in score; None when there is none."""
    taken = np.zeros(len(b), bool)
    pairs: list[tuple[int, int | None]] = []
    for i in np.argsort(-a.scores, kind="stable"):
        if not len(b):
            pairs.append((int(i), None))
            continue
        gap = np.abs(b.scores - a.scores[i])
        near = np.abs(b.boxes - a.boxes[i]).max(axis=1) <= tol.CORNER_PX  # also a zero-area box
        ok = ((iou_plus_one(a.boxes[i], b.boxes) >= iou) | near) & (gap <= score) & ~taken
        if not ok.any():
            pairs.append((int(i), None))
            continue
        j = int(np.flatnonzero(ok)[np.argmin(gap[ok])])
        taken[j] = True
        pairs.append((int(i), j))
    return pairs


def _unmatched(a: Faces, b: Faces) -> tuple[list[int], float, float, float]:
    """Faces of `a` with no partner in `b`; the largest box corner, score and landmark
    differences over the matched ones."""
    missing, box, score, mark = [], 0.0, 0.0, 0.0
    for i, j in _pairs(a, b, tol.DET_IOU, tol.DET_SCORE):
        if j is None:
            missing.append(i)
            continue
        box = max(box, float(np.abs(a.boxes[i] - b.boxes[j]).max()))
        score = max(score, float(abs(a.scores[i] - b.scores[j])))
        if a.landmarks is not None and b.landmarks is not None:
            mark = max(mark, float(np.abs(a.landmarks[i] - b.landmarks[j]).max()))
    return missing, box, score, mark


def explain_nms_ties(sides: dict[str, Faces], missing: dict[str, list[int]],
                     candidates: Faces, threshold: float) -> dict[str, set[int]]:
    """The unmatched faces of each side ("reference", "runtime") that a tie at NMS explains
    (see the module docstring): side -> indices."""
    other = {"reference": "runtime", "runtime": "reference"}

    def genuine(face: Faces, i: int) -> bool:
        if not len(candidates):
            return False
        near = (iou_plus_one(face.boxes[i], candidates.boxes) >= tol.DET_IOU) | (
            np.abs(candidates.boxes - face.boxes[i]).max(axis=1) <= tol.CORNER_PX)
        return bool((near & (np.abs(candidates.scores - face.scores[i]) <= tol.DET_SCORE)).any())

    real = {x: [genuine(sides[x], i) for i in range(len(sides[x]))] for x in sides}
    eligible = {x: [i for i in missing[x] if real[x][i]] for x in sides}
    explained: dict[str, set[int]] = {x: set() for x in sides}
    changed = True
    while changed:
        changed = False
        for x, y in other.items():
            faces, theirs = sides[x], sides[y]
            for i in eligible[x]:
                if i in explained[x] or not len(theirs):
                    continue
                overlap = iou_plus_one(faces.boxes[i], theirs.boxes)
                for j in np.flatnonzero(overlap >= threshold - tol.IOU_EPS):
                    if not real[y][j]:  # a shifted box is no tie partner of the face it missed
                        continue
                    if (abs(theirs.scores[j] - faces.scores[i]) <= tol.DET_SCORE
                            or abs(overlap[j] - threshold) <= tol.IOU_EPS
                            or j in explained[y]):
                        explained[x].add(i)
                        changed = True
                        break
    return explained


class FaceCheck:
    """The faces stage for one RetinaFace conversion (`image(g)` per image)."""

    def __init__(self, head) -> None:
        self.head = head

    def image(self, g: dict) -> FaceImage:
        return FaceImage(self.head, g)


class FaceImage:
    def __init__(self, head, g: dict) -> None:
        self.head = head
        levels = head.levels_from(g["raw64"])
        self.reference = head.faces(levels, insightface_faces)
        self.candidates = insightface_candidates_all(levels, head.source.image_size,
                                                     head.score_threshold)

    def compare(self, runner, rt: dict) -> tuple[list[StageResult], list[StageResult]]:
        head = self.head
        levels = head.levels_from(rt)
        got = head.faces(levels, insightface_faces)
        ref = self.reference
        lost, box, score, mark = _unmatched(ref, got)
        extra, box2, score2, mark2 = _unmatched(got, ref)
        threshold = head.score_threshold
        at_threshold = {"reference": {i for i in lost if abs(ref.scores[i] - threshold)
                                      <= SCORE_TIE},
                        "runtime": {i for i in extra if abs(got.scores[i] - threshold)
                                    <= SCORE_TIE}}
        nms_ties = explain_nms_ties({"reference": ref, "runtime": got},
                                    {"reference": lost, "runtime": extra}, self.candidates,
                                    head.nms)
        ties = sum(len(at_threshold[x] - nms_ties[x]) for x in at_threshold)
        nms_tied = sum(len(v) for v in nms_ties.values())
        failed = len(lost) + len(extra) - ties - nms_tied
        figures = {"faces_reference": len(ref), "faces_runtime": len(got),
                   "unmatched": failed, "threshold_ties": ties, "nms_ties": nms_tied,
                   "max_box_diff_px": max(box, box2), "max_score_diff": max(score, score2),
                   "max_landmark_diff_px": max(mark, mark2)}
        text = (f"{len(got)} faces (float64 MXNet: {len(ref)}), {failed} unmatched"
                + (f", {ties} at the score threshold" if ties else "")
                + (f", {nms_tied} kept or suppressed by a tie at NMS" if nms_tied else "")
                + f"; boxes within {figures['max_box_diff_px']:.2e} px, scores "
                f"{figures['max_score_diff']:.1e}, landmarks "
                f"{figures['max_landmark_diff_px']:.2e} px (insightface's decode)")
        stage = StageResult(TITLE, failed == 0, figures, text)
        example = head.faces(levels, ncnn_example_faces)
        far, ebox, emark = _loose_match(got, example)
        info = StageResult(EXAMPLE_TITLE, True,
                           {"faces": len(example), "unmatched": far, "max_box_diff_px": ebox,
                            "max_landmark_diff_px": emark},
                           f"informational: ncnn's example's decode on the same tensors finds "
                           f"{len(example)} faces, {far} without an insightface face at IoU "
                           f"0.9; matched corners differ by up to {ebox:.2f} px, landmarks "
                           f"{emark:.2f} px (its +1/+0.5 conventions, facts §12.2.1)")
        return [], [stage, info]

    def overlay(self, path, out_dir, rgb, outs, min_score) -> None:
        return None


def _loose_match(a: Faces, b: Faces, iou: float = 0.9) -> tuple[int, float, float]:
    """(faces of `b` with no face of `a` at IoU >= iou and a score within DET_SCORE, the largest
    corner and landmark difference of the matched): how far the example's decode is from
    insightface's on the same tensors (the scores are the same numbers in both)."""
    far, box, mark = 0, 0.0, 0.0
    for j, i in _pairs(b, a, iou, tol.DET_SCORE):
        if i is None:
            far += 1
            continue
        box = max(box, float(np.abs(a.boxes[i] - b.boxes[j]).max()))
        if a.landmarks is not None and b.landmarks is not None:
            mark = max(mark, float(np.abs(a.landmarks[i] - b.landmarks[j]).max()))
    return far, box, mark


__all__ = ["FaceCheck", "Level"]
