"""caffe-ssd's PriorBox arithmetic, in one place: how many priors a layer emits and where.

The IR shape rule, both backends, the anchor proof, the staged check and the tests all read these
functions, so the prior count and the prior coordinates cannot drift apart between them. The
rules are caffe-ssd's (weiliu89/caffe ssd, src/caffe/layers/prior_box_layer.cpp):

* Aspect ratios start from an implicit 1. Each listed ratio r is appended, followed by 1/r when
  `flip`, unless r is within 1e-6 of a ratio already in the list: a repeated ratio (or a 1) is
  dropped silently. OpenCV's importer drops them the same way; ncnn does not, so the ncnn backend
  writes this expanded list with flip off.
* Per cell, in this order: the min_size square, the sqrt(min_size * max_size) square when there
  is a max_size, then one box per expanded ratio r (w = min_size*sqrt(r), h = min_size/sqrt(r)).
* Cell (i, j) is centred at ((j + offset) * step_w, (i + offset) * step_h); the corners are
  divided by the image width and height; `clip` clamps them to [0, 1]. A step of 0 is caffe's
  default, image size / feature size.
* caffe-ssd itself (not OpenCV, not ncnn) truncates min_size and max_size to int and multiplies
  them in int arithmetic; `reference_priors` can apply that cast, with the integer scale k the
  converter writes (see `ssdconv.ssd.anchors`).

Arithmetic runs in the dtype asked for: float32 reproduces the runtimes' own rounding, float64
is the exact reference the tests compare runtimes with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .prior_counts import expanded_aspect_ratios

if TYPE_CHECKING:
    from .specs import AnchorLevel, PriorGroup

SIZE_TOL = 1e-3  # pixels: sizes this close are one size (anchor slots, a size*k and its integer)
INT_MAX = 2**31 - 1  # caffe-ssd multiplies the int-cast min and max sizes in a 32-bit int
PRIOR_TOL = 1e-6  # normalised: the contract for priors versus the model's anchors


def cell_boxes(min_size: float, max_size: float | None, ratios: Sequence[float], flip: bool,
               dtype=np.float64) -> list[tuple]:
    """(width, height) of each prior of one cell, in pixels, in caffe-ssd's order."""
    f = dtype
    mn = f(min_size)
    boxes = [(mn, mn)]
    if max_size:
        s = np.sqrt(mn * f(max_size), dtype=f)
        boxes.append((s, s))
    for r in expanded_aspect_ratios(ratios, flip):
        sr = np.sqrt(f(r), dtype=f)
        boxes.append((mn * sr, mn / sr))
    return boxes


def grid_corners(height: int, width: int, img_h: int, img_w: int, step_h: float,
                 step_w: float, offset: float, boxes: list[tuple], dtype=np.float64) -> np.ndarray:
    """(H, W, K, 4) normalised corners (x0, y0, x1, y1) of `boxes` centred on every cell."""
    f = dtype
    cx = ((np.arange(width, dtype=f) + f(offset)) * f(step_w))[None, :].repeat(height, 0)
    cy = ((np.arange(height, dtype=f) + f(offset)) * f(step_h))[:, None].repeat(width, 1)
    corners = [np.stack([(cx - bw / f(2)) / f(img_w), (cy - bh / f(2)) / f(img_h),
                         (cx + bw / f(2)) / f(img_w), (cy + bh / f(2)) / f(img_h)], axis=-1)
               for bw, bh in boxes]
    return np.stack(corners, axis=2).astype(f)


def layer_priors(attrs: dict, height: int, width: int, img_h: int, img_w: int,
                 dtype=np.float64) -> np.ndarray:
    """The (1, 2, H*W*K*4) blob one IR PriorBox node writes on an H x W map of an image.

    Float sizes (OpenCV's and ncnn's arithmetic, and caffe-ssd's when the sizes are integral);
    `int_scale` does not change the result (the caffe backend's Power 1/k undoes it). Row 0 holds
    the corners, row 1 the variances.
    """
    img_h, img_w = attrs["img_h"] or img_h, attrs["img_w"] or img_w
    boxes = cell_boxes(attrs["min_size"], attrs["max_size"], attrs["aspect_ratios"],
                       attrs["flip"], dtype)
    corners = grid_corners(height, width, img_h, img_w, attrs["step_h"] or img_h / height,
                           attrs["step_w"] or img_w / width, attrs["offset"], boxes,
                           dtype).reshape(-1)
    if attrs["clip"]:
        corners = np.clip(corners, 0, 1)
    variance = np.tile(np.asarray(attrs["variance"], dtype), corners.size // 4)
    return np.stack([corners, variance])[None]


def _group_priors(level: AnchorLevel, group: PriorGroup, img_h: int, img_w: int,
                  int_cast: bool) -> np.ndarray:
    """(H, W, K, 4) float32 priors of one PriorBox group as the emitted layers compute them."""
    k = group.int_scale

    def size(s: float) -> float:
        return float(int(s * k + 1e-6)) if int_cast else s * k

    boxes = cell_boxes(size(group.min_size), size(group.max_size) if group.max_size else None,
                       group.aspect_ratios, False, np.float32)
    if group.drop_first:
        boxes = boxes[1:]
    arr = grid_corners(level.height, level.width, img_h, img_w, level.step_h * k,
                       level.step_w * k, level.offset, boxes, np.float32)
    if k != 1:
        arr = (arr * np.float32(1.0 / k)).astype(np.float32)
    return arr


def reference_priors(level: AnchorLevel, img_h: int, img_w: int,
                     int_cast: bool = True) -> np.ndarray:
    """Priors of a level as caffe-ssd computes them (float32; sizes cast to int when asked).

    Returns (H*W*K, 4) normalised corners in the per-cell interleaved order the emitted layers
    produce. With int_cast=False it is OpenCV's and ncnn's float arithmetic.
    """
    parts = [_group_priors(level, g, img_h, img_w, int_cast) for g in level.groups]
    return np.concatenate(parts, axis=2).reshape(-1, 4)
