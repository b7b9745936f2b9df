"""RetinaFace's anchors as insightface computes them at inference (facts §12.1.4), and ncnn's
example's (§12.2): not in the graph, so they come from the configuration (`--retinaface-anchors`,
insightface's by default) and are checked against the predictors' channel counts.

insightface (rcnn/processing/generate_anchor.py): base anchor [0, 0, 15, 15] (base size 16,
inclusive corners), ratio enumeration with np.round, then scales, with the +1 width convention
`w = x2 - x1 + 1`, `ctr = x1 + 0.5 (w - 1)`; the plane (H, W, A) adds (x·stride, y·stride).
ncnn's example: centre base/2, corners centre ± round(base/sqrt(ratio))·scale/2 (no +1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..values import BadValue

BASE_SIZE = 16
RATIOS = (1.0,)


@dataclass(frozen=True)
class StrideAnchors:
    """One output stride's anchors: its scales (in anchor order) and the base size and ratios
    they are enumerated with."""

    stride: int
    scales: tuple[float, ...]
    base_size: int = BASE_SIZE
    ratios: tuple[float, ...] = RATIOS

    @property
    def count(self) -> int:
        return len(self.scales) * len(self.ratios)


def parse_scales(text: str) -> list[StrideAnchors]:
    """`STRIDE:SCALE,SCALE;...` -> one StrideAnchors per stride, in the order given; BadValue
    naming what is wrong."""
    out = []
    for part in text.split(";"):
        stride, sep, scales = part.partition(":")
        try:
            s = int(stride)
            values = tuple(float(x) for x in scales.split(","))
        except ValueError:
            raise BadValue(f"must be STRIDE:SCALE,...;... (e.g. 32:32,16;16:8,4;8:2,1), not "
                           f"{part!r}") from None
        if not sep or s <= 0 or not values or any(v <= 0 for v in values):
            raise BadValue(f"must be STRIDE:SCALE,...;... with positive numbers, not {part!r}")
        out.append(StrideAnchors(s, values))
    if len({a.stride for a in out}) != len(out):
        raise BadValue("names a stride twice")
    return out


def _whctrs(anchor: np.ndarray) -> tuple[float, float, float, float]:
    w = anchor[2] - anchor[0] + 1
    h = anchor[3] - anchor[1] + 1
    return w, h, anchor[0] + 0.5 * (w - 1), anchor[1] + 0.5 * (h - 1)


def _mkanchors(ws, hs, x_ctr, y_ctr) -> np.ndarray:
    ws, hs = np.asarray(ws, np.float64)[:, None], np.asarray(hs, np.float64)[:, None]
    return np.hstack((x_ctr - 0.5 * (ws - 1), y_ctr - 0.5 * (hs - 1),
                      x_ctr + 0.5 * (ws - 1), y_ctr + 0.5 * (hs - 1)))


def base_anchors(a: StrideAnchors) -> np.ndarray:
    """insightface's (A, 4) inclusive corners of the anchors at cell (0, 0), ratio-major then
    scale (generate_anchors: _ratio_enum, then _scale_enum per ratio)."""
    base = np.array([1, 1, a.base_size, a.base_size], np.float64) - 1
    w, h, x, y = _whctrs(base)
    size = w * h
    ratios = np.asarray(a.ratios, np.float64)
    ws = np.round(np.sqrt(size / ratios))
    hs = np.round(ws * ratios)
    by_ratio = _mkanchors(ws, hs, x, y)
    rows = []
    for anchor in by_ratio:
        w, h, x, y = _whctrs(anchor)
        scales = np.asarray(a.scales, np.float64)
        rows.append(_mkanchors(w * scales, h * scales, x, y))
    return np.vstack(rows)


def anchor_plane(a: StrideAnchors, height: int, width: int) -> np.ndarray:
    """(H·W·A, 4) anchors of a feature map in insightface's order (row, column, anchor)."""
    base = base_anchors(a)
    ys, xs = np.meshgrid(np.arange(height) * a.stride, np.arange(width) * a.stride,
                         indexing="ij")
    shifts = np.stack([xs, ys, xs, ys], axis=-1).astype(np.float64)  # (H, W, 4)
    return (shifts[:, :, None, :] + base[None, None, :, :]).reshape(-1, 4)


def ncnn_base_anchors(a: StrideAnchors) -> np.ndarray:
    """ncnn's examples/retinaface.cpp generate_anchors: (A, 4) float corners, no +1."""
    cx = cy = a.base_size * 0.5
    rows = []
    for ratio in a.ratios:
        r_w = np.round(a.base_size / np.sqrt(ratio))
        r_h = np.round(r_w * ratio)
        for scale in a.scales:
            rs_w, rs_h = r_w * scale, r_h * scale
            rows.append([cx - rs_w * 0.5, cy - rs_h * 0.5, cx + rs_w * 0.5, cy + rs_h * 0.5])
    return np.asarray(rows, np.float64)
