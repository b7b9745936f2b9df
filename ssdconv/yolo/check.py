"""YOLOv3's part of the staged check: the runtime's decode of its own raw outputs, and which
detections are comparable with GluonCV's.

The "decode" stage takes the runtime's three raw outputs, decodes them in float64 with the
anchors, grid and strides the converter read from the model (`ssdconv.yolo.decode`, proven
against the model's own rows at conversion), and compares the runtime's boxes and scores
blobs with that: it shows the runtime applies exactly those constants, in that order.
"""

from __future__ import annotations

import numpy as np

from ..family.comparable import top_k_cut
from ..family.interface import StageResult
from .decode import decode
from .spec import YoloSpec

DECODE_TOL = 2e-5  # relative to max(1, |value|), normalised corners and scores: float32 ops


def decoded_reference(raws: list[np.ndarray], spec: YoloSpec) -> tuple[np.ndarray, np.ndarray]:
    """(corners normalised to 0..1, (N, 4); scores (N, C)) of raw outputs, float64."""
    d = decode(raws, spec)
    unit = np.array([spec.image_w, spec.image_h, spec.image_w, spec.image_h], np.float64)
    return d.boxes / unit, d.scores


def decode_stage(runtime: dict, spec: YoloSpec) -> StageResult:
    """Stage "decode": the runtime's boxes/scores blobs against float64 of its raw outputs."""
    raws = [np.asarray(runtime[f"outputs.{i}"], np.float64) for i in range(len(spec.levels))]
    boxes, scores = decoded_reference(raws, spec)
    got_boxes = np.asarray(runtime["boxes"], np.float64).reshape(2, -1)[0].reshape(-1, 4)
    got_scores = np.asarray(runtime["scores"], np.float64).reshape(-1, spec.num_classes + 1)
    if got_boxes.shape != boxes.shape or got_scores.shape[0] != scores.shape[0]:
        return StageResult("decode", False, {"box_err": float("inf"), "score_err": float("inf")},
                           f"boxes {got_boxes.shape} / scores {got_scores.shape} do not have "
                           f"the model's {boxes.shape[0]} boxes")
    box_err = float((np.abs(got_boxes - boxes) / np.maximum(1.0, np.abs(boxes))).max())
    score_err = float(np.abs(got_scores[:, 1:] - scores).max())
    background = float(np.abs(got_scores[:, 0]).max())
    ok = box_err <= DECODE_TOL and score_err <= DECODE_TOL and background == 0.0
    return StageResult(
        "decode", ok, {"box_err": box_err, "score_err": score_err},
        f"boxes {box_err:.2e} (relative), scores {score_err:.2e} from the float64 decode of "
        f"its own raw outputs (tol {DECODE_TOL:g}); background column {background:g}")


def candidate_scores(raw32: dict[str, np.ndarray], spec: YoloSpec) -> np.ndarray:
    """Every (box, class) score GluonCV ranks before NMS, from its float32 raw outputs."""
    raws = [raw32[f"outputs.{i}"] for i in range(len(spec.levels))]
    return decode(raws, spec).scores.reshape(-1)


def comparable_score(raw32: dict[str, np.ndarray], spec: YoloSpec, gluon_scores) -> float:
    nms = spec.nms
    return top_k_cut(candidate_scores(raw32, spec), nms.valid_threshold, nms.topk,
                     nms.post_nms, gluon_scores)
