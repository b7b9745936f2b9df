"""ncnn's own `Yolov3DetectionOutput` layer: its IR attributes, and a numpy model of its arithmetic.

Why a model of ncnn and not of GluonCV: `--yolo-head native` writes the layer ncnn's C++ examples
consume, and that layer computes something else than GluonCV's head (Tencent/ncnn
src/layer/yolov3detectionoutput.cpp and x86/yolov3detectionoutput_x86.cpp, which the `ncnn`
package runs here). Its detections can only be checked against its own arithmetic, modelled
here; the raw prediction blobs feeding it are what compares with GluonCV. Each difference
changes detections:

1. One label per anchor box: the argmax of the raw class logits (ties to the lowest class).
   GluonCV writes one row per (box, class).
2. Confidence `1 / (1 + e^-obj * (1 + e^-cls))`, not GluonCV's `sigmoid(obj) * sigmoid(cls)`
   (`1 / ((1 + e^-obj) * (1 + e^-cls))`): ncnn's parentheses are misplaced, so scores are
   inflated (obj = cls = 0 gives 1/3, not 1/4), more boxes pass and the ranking changes.
3. Kept when confidence >= threshold, the best class only; GluonCV keeps score > 0.01 per class.
4. Class-agnostic greedy NMS, suppressing when `inter > nms_threshold * union` (union from the
   boxes' w*h); GluonCV's is per class, `inter / union > t`, areas from the corners.
5. No top-k at all; GluonCV keeps the best 400 (class, box) rows before NMS and 100 after. ncnn
   sorts with an unstable quicksort (ties come out in its order, reproduced here), GluonCV with
   a stable sort.
6. Boxes normalised to 0..1: centres by the grid size, sizes by `(int)(stride * grid)`;
   GluonCV's are in input pixels. They agree with GluonCV / input size only when stride * grid
   is the input size, and not bit for bit even then (division by 13, 26, 52).
7. Labels are 1-based (a background class is assumed at 0); no -1 padding rows; when nothing
   passes, ncnn returns no output at all (an empty Mat).
8. Every input level has the same number of anchors (`num_box`).

The x86 variant differs from the generic layer only in its argmax (an AVX2 gather over groups
of 8 classes; same result, ties to the lowest class). Arithmetic is float32, operation for
operation as in the machine code the wheel runs (ncnn compiles with -Ofast -ffast-math:
reciprocals and, in its AVX-512 build only, fused multiply-adds; see `_level_candidates` and
`ncnn_fuses_multiply_add`, which picks the build this CPU runs). `exp` is the C library's `expf`
called through ctypes: numpy's float32 `exp` differs from glibc's in about 40% of values by one
ulp, and even float64 exp rounded to float32 in about 0.07%. Measured: bit-exact with the
1.0.20261020 wheel (tests/test_yolo_native.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Sequence

import numpy as np

from ..errors import UserError

_F32 = np.float32
_LIBM = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
_LIBM.expf.restype = ctypes.c_float
_LIBM.expf.argtypes = [ctypes.c_float]


def native_params(anchors: Sequence[Sequence[tuple[float, float]]], strides: Sequence[float],
                  num_class: int, confidence_threshold: float,
                  nms_threshold: float) -> dict:
    """The IR attributes of a `Yolov3DetectionOutput` node reading the levels in this order.

    `anchors[l]` are level l's anchor (w, h) pairs in input pixels and `strides[l]` its stride,
    in the order the node's inputs will have (GluonCV's: stride 32, 16, 8). biases lists every
    anchor level after level, so anchor k of the flattened list is simply mask entry k.
    """
    if len(anchors) != len(strides) or not anchors:
        raise ValueError(f"{len(anchors)} anchor levels for {len(strides)} strides")
    num_box = len(anchors[0])
    for level, pairs in enumerate(anchors):
        if len(pairs) != num_box:
            raise UserError(f"ncnn's Yolov3DetectionOutput needs the same number of anchors on "
                            f"every level; level {level} has {len(pairs)}, level 0 has "
                            f"{num_box}: convert without --yolo-head native (the exact head "
                            "handles it)")
    flat = [float(v) for pairs in anchors for pair in pairs for v in pair]
    return {
        "num_class": int(num_class),
        "num_box": num_box,
        "confidence_threshold": float(confidence_threshold),
        "nms_threshold": float(nms_threshold),
        "biases": tuple(flat),
        "mask": tuple(range(len(flat) // 2)),
        "anchors_scale": tuple(float(s) for s in strides),
    }


def check_native_input(grids: Sequence[tuple[int, int]], strides: Sequence[float],
                       input_w: int, input_h: int) -> None:
    """Raise UserError unless every level's (int)(stride * grid) is the input size.

    ncnn divides box sizes by that product, not by the input size, and its examples multiply
    the normalised boxes by the image size: with any other input (300 px, a 10x10 grid at
    stride 32) every box would come out scaled.
    """
    for level, ((h, w), stride) in enumerate(zip(grids, strides, strict=True)):
        net_w, net_h = int(_F32(stride) * _F32(w)), int(_F32(stride) * _F32(h))
        if (net_w, net_h) != (int(input_w), int(input_h)):
            raise UserError(f"ncnn's Yolov3DetectionOutput sizes level {level}'s boxes by stride "
                            f"{stride:g} x its {w}x{h} grid = {net_w}x{net_h}, not the "
                            f"{input_w}x{input_h} input: use an input size that is a multiple "
                            "of the largest stride, or convert without --yolo-head native")


def ncnn_fuses_multiply_add() -> bool:
    """Whether the ncnn wheel runs its AVX-512 build of the layer on this CPU, the one build
    whose compiler fused the confidence denominator and the corners into multiply-adds.

    ncnn picks a layer's build per CPU at run time (its cpu_support_x86_avx512: AVX-512 F, CD,
    BW, DQ and VL). Measured with the 1.0.20261020 wheel, natively on an AVX-512 CPU and under
    `qemu-x86_64 -cpu Haswell` (AVX2 + FMA), `SandyBridge` (AVX) and `Nehalem` (SSE4.2): only
    the AVX-512 build fuses; every other rounds each product and sum on its own. numpy's
    cpuid reading (its AVX512_SKX group is exactly that set) answers for the CPU the process
    runs on, an emulated one included, which /proc/cpuinfo would not.
    """
    from numpy.core._multiarray_umath import __cpu_features__

    return bool(__cpu_features__.get("AVX512_SKX"))


def _expf(x: np.ndarray) -> np.ndarray:
    """The C library's expf, element by element (see the module docstring for why)."""
    flat = np.asarray(x, _F32).ravel().tolist()
    return np.fromiter(map(_LIBM.expf, flat), _F32, len(flat)).reshape(np.shape(x))


def _fma32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float32 fused multiply-add, a * b + c rounded once.

    The product of two float32 values is exact in float64; the sum is exact as s + e (TwoSum).
    Rounding s to float32 is right except when s lies exactly halfway between two float32
    values and e is not zero: then e says which way the exact value lies.
    """
    a, b, c = (np.asarray(v, _F32).astype(np.float64) for v in (a, b, c))
    prod = a * b
    s = prod + c
    t = s - prod
    e = (prod - (s - t)) + (c - t)
    r = s.astype(_F32)
    lo = np.where(r.astype(np.float64) > s, np.nextafter(r, _F32(-np.inf)), r)
    hi = np.nextafter(lo, _F32(np.inf))
    halfway = (s - lo.astype(np.float64)) == (hi.astype(np.float64) - s)
    return np.where(halfway & (e > 0), hi, np.where(halfway & (e < 0), lo, r))


def _mul_add32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float32 a * b + c rounded twice, as code compiled without fused multiply-adds."""
    return np.asarray(a, _F32) * np.asarray(b, _F32) + np.asarray(c, _F32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """ncnn's `1.f / (1.f + expf(-x))`."""
    return _F32(1) / (_F32(1) + _expf(-x))


def _level_candidates(blob: np.ndarray, level: int, num_class: int, num_box: int,
                      biases: Sequence[float], mask: Sequence[int], stride: float,
                      threshold: np.float32, fused: bool) -> np.ndarray:
    """One level's passing boxes as rows (score, x1, y1, x2, y2, area, label), float32, in
    ncnn's gather order: anchor by anchor, cells row-major.

    The steps are those of the machine code the wheel runs (ncnn builds with -Ofast
    -ffast-math; read from its disassembly, matched bit for bit), not the source's literal
    order: divisions become products with float32 reciprocals hoisted out of the loops
    (1/w, 1/h, 1/net_w, 1/net_h, and bias * 1/net_w per anchor), the confidence denominator
    and each corner are fused multiply-adds, and the centre is never rounded on its own.
    """
    fma = _fma32 if fused else _mul_add32
    h, w = blob.shape[-2:]
    pred = np.asarray(blob, _F32).reshape(num_box, 5 + num_class, h, w)
    net_w, net_h = int(_F32(stride) * _F32(w)), int(_F32(stride) * _F32(h))
    inv_w, inv_h, inv_net_w, inv_net_h = (_F32(1) / _F32(v) for v in (w, h, net_w, net_h))
    rows = []
    for box in range(num_box):
        p = pred[box]
        logits = p[5:]
        label = np.argmax(logits, axis=0)  # first maximum, as ncnn's strict `>` scan
        best = np.max(logits, axis=0)
        confidence = _F32(1) / fma(_expf(-p[4]), _F32(1) + _expf(-best), _F32(1))
        i, j = np.nonzero(confidence >= threshold)  # row-major, as ncnn's i, j loops
        anchor = int(mask[level * num_box + box])
        scale_w = _F32(biases[2 * anchor]) * inv_net_w
        scale_h = _F32(biases[2 * anchor + 1]) * inv_net_h
        gx = j.astype(_F32) + _sigmoid(p[0, i, j])  # centre in cells; times 1/w inside the fma
        gy = i.astype(_F32) + _sigmoid(p[1, i, j])
        bw = _expf(p[2, i, j]) * scale_w
        bh = _expf(p[3, i, j]) * scale_h
        half_w, half_h = bw * _F32(0.5), bh * _F32(0.5)
        rows.append(np.stack([confidence[i, j], fma(gx, inv_w, -half_w),
                              fma(gy, inv_h, -half_h), fma(gx, inv_w, half_w),
                              fma(gy, inv_h, half_h), bw * bh, label[i, j].astype(_F32)],
                             axis=1))
    return np.concatenate(rows, axis=0)


def _quicksort_order(scores: list[float]) -> list[int]:
    """The permutation ncnn's `qsort_descent_inplace` (Hoare partition, middle pivot) leaves,
    so equal scores come out in ncnn's order, not numpy's."""
    order = list(range(len(scores)))
    stack = [(0, len(order) - 1)] if order else []
    while stack:
        left, right = stack.pop()
        i, j = left, right
        pivot = scores[order[(left + right) // 2]]
        while i <= j:
            while scores[order[i]] > pivot:
                i += 1
            while scores[order[j]] < pivot:
                j -= 1
            if i <= j:
                order[i], order[j] = order[j], order[i]
                i += 1
                j -= 1
        # The two ranges are disjoint, so the order they are sorted in does not matter.
        if left < j:
            stack.append((left, j))
        if i < right:
            stack.append((i, right))
    return order


def _nms_keep(rows: np.ndarray, nms_threshold: np.float32) -> list[int]:
    """Indices of `rows` (sorted) ncnn's class-agnostic greedy NMS keeps: a box goes when
    `inter > nms_threshold * union` with any box kept before it (ncnn's intersection_area)."""
    boxes = rows[:, 1:6]  # x1, y1, x2, y2, area
    kept = np.empty_like(boxes)  # the boxes kept so far: its first len(picked) rows
    picked: list[int] = []
    for n, box in enumerate(boxes):
        x1, y1, x2, y2, area = box
        k = kept[: len(picked)]
        apart = (x1 > k[:, 2]) | (x2 < k[:, 0]) | (y1 > k[:, 3]) | (y2 < k[:, 1])
        inter_w = np.minimum(x2, k[:, 2]) - np.maximum(x1, k[:, 0])
        inter_h = np.minimum(y2, k[:, 3]) - np.maximum(y1, k[:, 1])
        inter = np.where(apart, _F32(0), inter_w * inter_h)
        if not np.any(inter > nms_threshold * (area + k[:, 4] - inter)):
            kept[len(picked)] = box
            picked.append(n)
    return picked


def native_detections(outputs: list[np.ndarray], *, num_class: int, num_box: int,
                      biases: Sequence[float], mask: Sequence[int],
                      anchors_scale: Sequence[float], confidence_threshold: float,
                      nms_threshold: float, input_w: int, input_h: int,
                      fused: bool | None = None) -> np.ndarray:
    """What ncnn's Yolov3DetectionOutput returns for these raw prediction blobs: (n, 6) float32
    rows (label + 1, score, x1, y1, x2, y2) normalised to 0..1, by score descending in ncnn's
    order; (0, 6) when nothing passes (ncnn then returns an empty Mat).

    `outputs` are the prediction convs in the node's input order, (1, C, H, W) or (C, H, W) with
    C = num_box * (5 + num_class); the other arguments are the node's attributes. `fused` picks
    the code path modelled (None: the one the ncnn wheel runs on this CPU). Raises
    UserError when a level's stride * grid is not the input size (`check_native_input`).
    """
    blobs = [np.asarray(b, _F32) for b in outputs]
    check_native_input([b.shape[-2:] for b in blobs], anchors_scale, input_w, input_h)
    fused = ncnn_fuses_multiply_add() if fused is None else fused
    parts = [_level_candidates(b, level, num_class, num_box, biases, mask,
                               anchors_scale[level], _F32(confidence_threshold), fused)
             for level, b in enumerate(blobs)]
    rows = np.concatenate(parts, axis=0)
    rows = rows[_quicksort_order(rows[:, 0].tolist())]
    kept = rows[_nms_keep(rows, _F32(nms_threshold))]
    return np.stack([kept[:, 6] + _F32(1), *(kept[:, k] for k in range(5))], axis=1)
