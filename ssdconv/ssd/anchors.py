"""Derive PriorBox parameters from a model's anchors, and prove they reproduce them.

GluonCV stores neither step nor offset, and its anchor order need not be PriorBox's (the
LiteAnchorGenerator puts a half-size square first and the max-size square last). So the anchors
are read as numbers, per level, and explained as a sequence of PriorBox groups:

* a group is what one PriorBox emits per cell: [min square, sqrt(min*max) square, ratio boxes];
* a group may drop its leading min square (sliced away) when the model's slots start with ratio
  boxes;
* several groups of a level are interleaved per cell (Reshape, Concat on the per-cell axis).

caffe-ssd casts min/max sizes to int; sizes like 51.2 are therefore written multiplied by an
integer k (with step and variance), and a Power 1/k brings the priors back. `prior_error`
compares the PriorBox arithmetic of `ssdconv.ssd.priorbox` (int cast included) with the model's
anchors.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import UserError
from .priorbox import INT_MAX, PRIOR_TOL, SIZE_TOL, cell_boxes, reference_priors
from .specs import AnchorLevel, HeadSpec, PriorGroup


def default_input_size(nodes, params) -> tuple[int, int] | None:
    """Input size of an exported SSD: the step of its last anchor level (GluonCV's convention);
    None when the symbol has no anchor constant (a 5-D parameter read by slice_like)."""
    slices = [n for n in nodes if n.op == "slice_like"]
    consts = [nodes[n.inputs[0][0]].name for n in slices if nodes[n.inputs[0][0]].op == "null"]
    consts = [c for c in consts if c in params and params[c].ndim == 5]
    if not consts:
        return None
    a = params[consts[-1]]
    cx = a[0, 0, 0, :, 0] if a.shape[3] > 1 else None
    cy = a[0, 0, :, 0, 1] if a.shape[2] > 1 else None
    step_w = float(cx[1] - cx[0]) if cx is not None else float(2 * a[0, 0, 0, 0, 0])
    step_h = float(cy[1] - cy[0]) if cy is not None else float(2 * a[0, 0, 0, 0, 1])
    return int(round(step_h)), int(round(step_w))


def _snap(value: float, image: int, cells: int) -> float:
    for candidate in (round(value), image / cells):
        if abs(value - candidate) < 1e-4:
            return float(candidate)
    return round(value, 6)


def _steps_and_offset(centres_x: np.ndarray, centres_y: np.ndarray, img_h: int,
                      img_w: int) -> tuple[float, float, float]:
    """(step_h, step_w, offset) explaining the cell centres, offset shared by both axes."""
    w, h = len(centres_x), len(centres_y)
    step_w = _snap((centres_x[-1] - centres_x[0]) / (w - 1), img_w, w) if w > 1 else None
    step_h = _snap((centres_y[-1] - centres_y[0]) / (h - 1), img_h, h) if h > 1 else None
    off_w = centres_x[0] / step_w if step_w else None
    off_h = centres_y[0] / step_h if step_h else None
    offset = off_w if off_w is not None else off_h
    if offset is None:
        offset = 0.5
    offset = round(float(offset), 6)
    if step_w is None:
        step_w = round(float(centres_x[0]) / offset, 6)
    if step_h is None:
        step_h = round(float(centres_y[0]) / offset, 6)
    return float(step_h), float(step_w), offset


def _int_scale(sizes: list[float]) -> int:
    """Smallest k making every size integral (to 1e-4 px) with caffe-ssd's int products safe."""
    for k in range(1, 1001):
        scaled = [s * k for s in sizes]
        if all(abs(v - round(v)) <= 1e-4 * k for v in scaled):
            ints = [round(v) for v in scaled]
            if max(ints) ** 2 <= INT_MAX:
                return k
    return 1


def _snap_size(size: float, k: int) -> float:
    """The size on the 1/k grid when float32 rounding is all that separates it from there."""
    v = size * k
    return round(v) / k if abs(v - round(v)) <= 1e-4 * k else size


def _same_ratio(a: float, b: float) -> bool:
    return abs(a - b) < 1e-5 * max(1.0, abs(a))


def explain_slots(slots: list[tuple[float, float]]) -> list[PriorGroup]:
    """Split one cell's anchor slots into consecutive PriorBox groups (greedy)."""
    groups: list[PriorGroup] = []
    i = 0
    while i < len(slots):
        w, h = slots[i]
        square = abs(w - h) <= SIZE_TOL
        m = math.sqrt(w * h)
        max_size = None
        ratios: list[float] = []
        drop_first = not square
        j = i + 1 if square else i
        if square and j < len(slots):
            w2, h2 = slots[j]
            if abs(w2 - h2) <= SIZE_TOL and w2 > m + SIZE_TOL:
                max_size = w2 * w2 / m
                j += 1
        while j < len(slots):
            w2, h2 = slots[j]
            if abs(w2 - h2) <= SIZE_TOL or abs(math.sqrt(w2 * h2) - m) > SIZE_TOL:
                break
            r = w2 / h2
            if any(_same_ratio(r, q) for q in ratios):
                break
            ratios.append(r)
            j += 1
        sizes = [m] + ([max_size] if max_size else [])
        k = _int_scale(sizes)
        groups.append(PriorGroup(
            min_size=_snap_size(m, k), max_size=_snap_size(max_size, k) if max_size else None,
            aspect_ratios=tuple(ratios), drop_first=drop_first, int_scale=k))
        i = j
    return [_integral_square(g, groups) for g in groups]


def _is_integral(size: float, k: int) -> bool:
    return abs(size * k - round(size * k)) <= 1e-4 * k


def _integral_square(group: PriorGroup, level_groups: list[PriorGroup]) -> PriorGroup:
    """Rewrite a lone square of non-integral size s as the sqrt(min*max) box of a PriorBox.

    LiteAnchorGenerator's last square is sqrt(s_i * s_i+1) (125.499 for 105 and 150), which no
    integer k makes integral for caffe-ssd's int cast; min=s_i, max=s_i+1 with the min square
    dropped gives it exactly. Candidates for min are the level's other sizes.
    """
    if group.max_size or group.aspect_ratios or group.drop_first:
        return group
    s = group.min_size
    if _is_integral(s, 1):
        return group
    best, best_k = group, group.int_scale if _is_integral(s, group.int_scale) else math.inf
    for m in sorted({g.min_size for g in level_groups}, reverse=True):
        if m <= 0 or m >= s:
            continue
        big = s * s / m
        k = _int_scale([m, big])
        if k < best_k and _is_integral(m, k) and _is_integral(big, k):
            best, best_k = PriorGroup(min_size=_snap_size(m, k), max_size=_snap_size(big, k),
                                      aspect_ratios=(), drop_first=True, int_scale=k), k
    return best


def _group_slots(g: PriorGroup) -> list[tuple[float, float]]:
    out = [(float(w), float(h)) for w, h in
           cell_boxes(g.min_size, g.max_size, g.aspect_ratios, False)]
    return out[1:] if g.drop_first else out


def derive_level(index: int, anchors: np.ndarray, img_h: int, img_w: int,
                 where: str) -> AnchorLevel:
    """Explain one level's anchors (H, W, K, 4 pixel cx, cy, w, h) as PriorBox groups."""
    h, w, k, _ = anchors.shape
    slots = [(float(anchors[0, 0, s, 2]), float(anchors[0, 0, s, 3])) for s in range(k)]
    spread = np.abs(anchors[..., 2:] - anchors[0:1, 0:1, :, 2:]).max()
    if spread > SIZE_TOL:
        raise UserError(f"{where}: anchor sizes of level {index} vary across cells by {spread:.3g}"
                        " px (anchor clipping?); PriorBox cannot express it. Build the SSD with "
                        "clip=False in its anchor generators")
    centres_x = anchors[0, :, 0, 0]
    centres_y = anchors[:, 0, 0, 1]
    if np.abs(anchors[..., 0] - centres_x[None, :, None]).max() > SIZE_TOL or np.abs(
            anchors[..., 1] - centres_y[:, None, None]).max() > SIZE_TOL:
        raise UserError(f"{where}: anchor centres of level {index} are not a regular grid; "
                        "PriorBox cannot express them")
    step_h, step_w, offset = _steps_and_offset(centres_x, centres_y, img_h, img_w)
    groups = explain_slots(slots)
    rebuilt = [s for g in groups for s in _group_slots(g)]
    err = max(max(abs(a - b), abs(c - d)) for (a, c), (b, d) in zip(rebuilt, slots))
    if len(rebuilt) != len(slots) or err > SIZE_TOL:
        raise UserError(f"{where}: the anchor shapes of level {index} ({len(slots)} per cell) "
                        "cannot be written as PriorBox layers")
    return AnchorLevel(index=index, height=h, width=w, anchors=anchors, step_h=step_h,
                       step_w=step_w, offset=offset, groups=tuple(groups))


def prior_error(level: AnchorLevel, img_h: int, img_w: int, int_cast: bool = True) -> float:
    """Max |prior - anchor| (normalised) of the reference PriorBox arithmetic for a level."""
    ref = reference_priors(level, img_h, img_w, int_cast=int_cast).astype(np.float64)
    return float(np.abs(ref - level.normalised(img_h, img_w)).max())


def prove_priors(spec: HeadSpec) -> dict:
    """Max prior error over the levels, in OpenCV's/ncnn's float arithmetic and in caffe-ssd's
    int-cast one; a UserError when the float one breaks the contract (PRIOR_TOL)."""
    floats = [prior_error(lv, spec.image_h, spec.image_w, int_cast=False) for lv in spec.levels]
    casts = [prior_error(lv, spec.image_h, spec.image_w, int_cast=True) for lv in spec.levels]
    if max(floats) > PRIOR_TOL:
        worst = int(np.argmax(floats))
        raise UserError(f"anchor level {worst}: derived PriorBox parameters reproduce the "
                        f"model's anchors only to {max(floats):.3g} (contract {PRIOR_TOL:g}); "
                        "the anchor layout is not expressible")
    return {"float_max_error": max(floats), "caffe_int_cast_max_error": max(casts)}
