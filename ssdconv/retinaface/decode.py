"""Float64 models of the two decodes RetinaFace's users run on its raw outputs.

`insightface_faces`: insightface's RetinaFace.detect (retinaface.py, network 'net3'; facts
§12.1.5): face score = channels A..2A-1 of the class output, boxes by bbox_pred with the +1
width convention, clipped to [0, W-1] x [0, H-1] before the score threshold (`>=`), landmarks
d·w + ctr (landmark_std 1), all strides merged, sorted by score, NMS as cpu_nms (areas and
intersections +1, suppress at IoU >= threshold).

`ncnn_example_faces`: ncnn's examples/retinaface.cpp (§12.2): its anchors (centre + w/2, no +1),
x0 = cx - w'/2 and width x1 - x0 + 1, landmarks cx + (w + 1)·d, threshold `>=`, NMS on its rect
areas suppressing at IoU > threshold, clipping after NMS.

Both read the outputs per stride as ssdconv's runners return them (C, H, W, batch axis
dropped). Faces are (score, box x1 y1 x2 y2, landmarks (5, 2)) in input pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anchors import StrideAnchors, anchor_plane, ncnn_base_anchors


@dataclass
class Faces:
    scores: np.ndarray  # (N,)
    boxes: np.ndarray  # (N, 4) x1, y1, x2, y2
    landmarks: np.ndarray | None  # (N, 5, 2), None without landmark outputs

    def __len__(self) -> int:
        return len(self.scores)


@dataclass(frozen=True)
class Level:
    """One stride's raw outputs (C, H, W) and its anchors."""

    anchors: StrideAnchors
    cls: np.ndarray
    bbox: np.ndarray
    landmark: np.ndarray | None


def _hwa(x: np.ndarray, per_anchor: int) -> np.ndarray:
    """(A·k, H, W) -> (H·W·A, k): insightface's transpose (0, 2, 3, 1) then reshape."""
    c, h, w = x.shape
    return x.transpose(1, 2, 0).reshape(h * w * (c // per_anchor), per_anchor)


def insightface_candidates(level: Level, image_hw: tuple[int, int],
                           threshold: float) -> Faces:
    """One stride's faces before NMS, insightface's way (see the module docstring)."""
    a = level.anchors
    count = a.count
    _, h, w = level.cls.shape
    scores = _hwa(level.cls[count:], 1)[:, 0].astype(np.float64)
    anchors = anchor_plane(a, h, w)
    deltas = _hwa(level.bbox, 4).astype(np.float64)
    widths = anchors[:, 2] - anchors[:, 0] + 1.0
    heights = anchors[:, 3] - anchors[:, 1] + 1.0
    ctr_x = anchors[:, 0] + 0.5 * (widths - 1.0)
    ctr_y = anchors[:, 1] + 0.5 * (heights - 1.0)
    px = deltas[:, 0] * widths + ctr_x
    py = deltas[:, 1] * heights + ctr_y
    pw = np.exp(deltas[:, 2]) * widths
    ph = np.exp(deltas[:, 3]) * heights
    boxes = np.stack([px - 0.5 * (pw - 1.0), py - 0.5 * (ph - 1.0),
                      px + 0.5 * (pw - 1.0), py + 0.5 * (ph - 1.0)], axis=1)
    ih, iw = image_hw
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, iw - 1)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, ih - 1)
    keep = scores >= threshold
    marks = None
    if level.landmark is not None:
        d = _hwa(level.landmark, 10).astype(np.float64).reshape(-1, 5, 2)
        marks = np.stack([d[:, :, 0] * widths[:, None] + ctr_x[:, None],
                          d[:, :, 1] * heights[:, None] + ctr_y[:, None]], axis=-1)[keep]
    return Faces(scores[keep], boxes[keep], marks)


def _merge(parts: list[Faces]) -> Faces:
    marks = [p.landmarks for p in parts]
    return Faces(np.concatenate([p.scores for p in parts]),
                 np.concatenate([p.boxes for p in parts]).reshape(-1, 4),
                 None if any(m is None for m in marks) else
                 np.concatenate(marks).reshape(-1, 5, 2))


def _take(faces: Faces, idx) -> Faces:
    return Faces(faces.scores[idx], faces.boxes[idx],
                 None if faces.landmarks is None else faces.landmarks[idx])


def cpu_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """insightface's cpu_nms: score order (numpy's descending argsort), +1 areas, suppress a
    box whose IoU with a kept one is >= threshold."""
    order = scores.argsort()[::-1]
    suppressed = np.zeros(len(scores), bool)
    keep = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        suppressed |= iou_plus_one(boxes[i], boxes) >= threshold
    return keep


def insightface_candidates_all(levels: list[Level], image_hw: tuple[int, int],
                               threshold: float) -> Faces:
    """Every stride's faces above the threshold, before NMS (what insightface's NMS reads)."""
    return _merge([insightface_candidates(lv, image_hw, threshold) for lv in levels])


def insightface_faces(levels: list[Level], image_hw: tuple[int, int], threshold: float,
                      nms: float) -> Faces:
    """insightface's faces from the raw outputs (see the module docstring)."""
    faces = insightface_candidates_all(levels, image_hw, threshold)
    return _take(faces, cpu_nms(faces.boxes, faces.scores, nms))


def iou_plus_one(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box with each of `boxes` as insightface's cpu_nms computes it (+1 sizes)."""
    w = np.maximum(0.0, np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]) + 1)
    h = np.maximum(0.0, np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]) + 1)
    inter = w * h
    area = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
    areas = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    return inter / (area + areas - inter)


def ncnn_example_faces(levels: list[Level], image_hw: tuple[int, int], threshold: float,
                       nms: float) -> Faces:
    """ncnn's examples/retinaface.cpp faces from the same outputs (informational)."""
    parts = []
    for lv in levels:
        a = lv.anchors
        base = ncnn_base_anchors(a)
        count = a.count
        _, h, w = lv.cls.shape
        ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        for q in range(count):
            score = lv.cls[count + q].astype(np.float64).reshape(-1)
            anchor_w = base[q, 2] - base[q, 0]
            anchor_h = base[q, 3] - base[q, 1]
            cx = (base[q, 0] + xs.reshape(-1) * a.stride) + anchor_w * 0.5
            cy = (base[q, 1] + ys.reshape(-1) * a.stride) + anchor_h * 0.5
            d = lv.bbox[4 * q:4 * q + 4].astype(np.float64).reshape(4, -1)
            pcx, pcy = cx + anchor_w * d[0], cy + anchor_h * d[1]
            pw, ph = anchor_w * np.exp(d[2]), anchor_h * np.exp(d[3])
            x0, y0 = pcx - pw * 0.5, pcy - ph * 0.5
            x1, y1 = pcx + pw * 0.5, pcy + ph * 0.5
            # the example's rect: x, y, width = x1 - x0 + 1, height = y1 - y0 + 1
            boxes = np.stack([x0, y0, x1 + 1, y1 + 1], axis=1)
            marks = None
            if lv.landmark is not None:
                m = lv.landmark[10 * q:10 * q + 10].astype(np.float64).reshape(5, 2, -1)
                marks = np.stack([cx + (anchor_w + 1) * m[:, 0], cy + (anchor_h + 1) * m[:, 1]],
                                 axis=-1).transpose(1, 0, 2)
            keep = score >= threshold
            parts.append(Faces(score[keep], boxes[keep],
                               None if marks is None else marks[keep]))
    faces = _merge(parts)
    order = np.argsort(-faces.scores, kind="stable")
    faces = _take(faces, order)
    areas = (faces.boxes[:, 2] - faces.boxes[:, 0]) * (faces.boxes[:, 3] - faces.boxes[:, 1])
    keep: list[int] = []
    for i in range(len(faces)):
        ok = True
        for j in keep:
            bi, bj = faces.boxes[i], faces.boxes[j]
            iw = max(0.0, min(bi[2], bj[2]) - max(bi[0], bj[0]))
            ih = max(0.0, min(bi[3], bj[3]) - max(bi[1], bj[1]))
            inter = iw * ih
            if inter / (areas[i] + areas[j] - inter) > nms:
                ok = False
                break
        if ok:
            keep.append(i)
    faces = _take(faces, np.asarray(keep, int))
    ih, iw = image_hw
    faces.boxes[:, 0::2] = np.clip(faces.boxes[:, 0::2], 0, iw - 1)
    faces.boxes[:, 1::2] = np.clip(faces.boxes[:, 1::2], 0, ih - 1)
    return faces
