"""GluonCV's YOLOv3 decode, restated in numpy from the spec, and the proof that it is the
model's own.

`decode` turns the raw prediction-conv outputs into boxes and scores in the converted model's
order (level, then cell row-major, then anchor): box centre `(sigmoid(t_xy) + offset) *
stride`, size `exp(t_wh) * anchor`, corners `centre -/+ size / 2` in input pixels, class score
`sigmoid(class) * sigmoid(objectness)` (yolo3.py `YOLOOutputV3.hybrid_forward`). `gluon_rows`
lays them out as GluonCV's pre-NMS rows (class-major per level). `prove` runs the model on a
seeded input and compares the two: the anchors, offsets, strides and layout the matcher read
are the model's only if the rows agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from ..mxnet.run import run_outputs
from ..mxnet.source import SourceGraph
from .spec import YoloLevel, YoloSpec

PROOF_TOL = 1e-4  # relative to max(1, |value|): float32 MXNet against this float64 restatement


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Decoded:
    """Boxes (N, 4) as corners in input pixels and scores (N, C), in the converted order."""

    boxes: np.ndarray
    scores: np.ndarray


def _level_predictions(raw: np.ndarray, level: YoloLevel) -> np.ndarray:
    """(H*W*A, 5+C) predictions of one level's (A*(5+C), H, W) conv output."""
    a = level.num_anchors
    k = raw.size // (level.height * level.width * a)
    return raw.reshape(a * k, level.height * level.width).T.reshape(-1, k)


def decode(raws: list[np.ndarray], spec: YoloSpec) -> Decoded:
    """The decode of every level's raw output, in float64."""
    boxes, scores = [], []
    for raw, level in zip(raws, spec.levels):
        pred = _level_predictions(np.asarray(raw, np.float64), level)
        cells = level.height * level.width
        offsets = np.repeat(level.offsets.reshape(cells, 2), level.num_anchors, axis=0)
        anchors = np.tile(np.asarray(level.anchors, np.float64), (cells, 1))
        centre = (_sigmoid(pred[:, 0:2]) + offsets) * level.stride
        size = np.exp(pred[:, 2:4]) * anchors
        boxes.append(np.concatenate([centre - size / 2, centre + size / 2], axis=1))
        scores.append(_sigmoid(pred[:, 5:]) * _sigmoid(pred[:, 4:5]))
    return Decoded(np.concatenate(boxes), np.concatenate(scores))


def gluon_rows(decoded: Decoded, spec: YoloSpec) -> np.ndarray:
    """GluonCV's pre-NMS rows (id, score, x1, y1, x2, y2): per level class-major, then cell,
    then anchor; levels in order."""
    rows, start = [], 0
    classes = np.arange(spec.num_classes, dtype=np.float64)
    for level in spec.levels:
        n = level.num_boxes
        boxes, scores = decoded.boxes[start:start + n], decoded.scores[start:start + n]
        start += n
        per_class = [np.column_stack([np.full(n, c), scores[:, int(c)], boxes])
                     for c in classes]
        rows.append(np.concatenate(per_class))
    return np.concatenate(rows)


def proof_input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A seeded input in the range GluonCV's normalisation gives."""
    return np.random.RandomState(seed).normal(0, 1, size=shape).astype(np.float32)


def prove(graph: SourceGraph, spec: YoloSpec) -> dict:
    """Run the model to its raw outputs and pre-NMS rows and compare the rows with `decode` of
    the raw outputs; a UserError when they disagree (the head is not GluonCV's decode)."""
    nodes = [(lv.conv, 0) for lv in spec.levels] + [(lv.output, 0) for lv in spec.levels]
    outs, _ = run_outputs(graph, nodes, proof_input(graph.input_shape))
    raws = [o[0] for o in outs[:len(spec.levels)]]
    model_rows = np.concatenate([o[0].reshape(-1, 6) for o in outs[len(spec.levels):]])
    rows = gluon_rows(decode(raws, spec), spec)
    if rows.shape != model_rows.shape:
        raise UserError(f"{graph.origin}: the YOLOv3 head gives {model_rows.shape[0]} pre-NMS "
                        f"rows, its anchors and grid explain {rows.shape[0]}: not GluonCV's "
                        "YOLOOutputV3 decode")
    scale = np.maximum(1.0, np.abs(model_rows))
    err = np.abs(rows - model_rows.astype(np.float64)) / scale
    worst = float(err.max()) if err.size else 0.0
    figures = {"decode_max_rel_error": worst, "rows": int(rows.shape[0]),
               "box_max_rel_error": float(err[:, 2:].max()) if err.size else 0.0,
               "score_max_error": float(err[:, 1].max()) if err.size else 0.0}
    if not worst <= PROOF_TOL:
        col = int(np.unravel_index(np.argmax(err), err.shape)[1])
        what = ("class ids", "scores", "boxes", "boxes", "boxes", "boxes")[col]
        raise UserError(f"{graph.origin}: the YOLOv3 head's {what} differ from GluonCV's "
                        f"decode of its anchors, grid and strides by {worst:.3g} (relative): "
                        "ssdconv converts GluonCV's YOLOOutputV3 heads only")
    return figures
