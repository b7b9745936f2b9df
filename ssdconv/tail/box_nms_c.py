"""The C text both CPU tails share: MXNet's `_contrib_box_nms` as GluonCV calls it, the row
numbering it reads, the workspace layout, the dequantise helpers and the header's frame.

One copy, so the SSD and the YOLOv3 tail cannot drift apart. What box_nms does, exactly (facts
§11.1, §11.5; apache/mxnet v1.9.x `src/operator/contrib/bounding_box-inl.h`):

* rows are GluonCV's, numbered as its `concat` lays them out: blocks of boxes ("segments": the
  SSD has one, a YOLOv3 one per level), each class-major: row start + c*boxes + j is class c of
  the segment's box j. The tails keep only a score per row and a box per anchor: the row itself
  [id, score, x1, y1, x2, y2] is assembled when it is output (GluonCV copies rows whole);
* valid: `score > float32(valid_thresh) && id != -1` (strict, float32; NaN is never valid). The
  SSD's MultiPerClassDecoder mask (`score > class_thresh`, else id -1 and score 0) comes first;
* a stable descending sort by score (MXNet: std::stable_sort, `keys[i] > keys[j]`): ties keep
  the lower row first. Here a bottom-up merge sort, which is stable;
* topk over all classes: only the first min(topk, valid) sorted rows are candidates;
* greedy NMS per class, MXNet's arithmetic in float32: area `(w < 0 || h < 0) ? 0 : w*h`,
  intersection `max/min` per axis clamped at 0, x then `*=` y, `iou = inter / ((a_ref + a_pos)
  - inter)`, suppressed when `iou > overlap_thresh` (strict: an IoU equal to the threshold
  keeps the box; a 0/0 NaN suppresses nothing);
* the kept rows in sorted order, the first P of them, then rows of -1.

GluonCV runs box_nms only when 0 < nms_thresh < 1, and box_nms returns its input unchanged
when topk is 0: then the output is the raw rows (id -1 / score 0 rows included), in row order,
the first P (`ssdconv.ir.shapes.gluon_post_nms`: P = post_nms when it is positive and NMS runs,
else every row). Checked against `mx.nd.contrib.box_nms` bit for bit on crafted rows (ties,
IoU exactly at the threshold) in tests/test_c_tail.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..ir.shapes import gluon_post_nms

#: every workspace part starts at a multiple of this many bytes
ALIGN = 16


def c_float(value: float) -> str:
    """`value` rounded to float32, as an exact C float literal (hex, `%a`)."""
    v = float(np.float32(value))
    if v != v:
        return "NAN"
    if v in (float("inf"), float("-inf")):
        return "INFINITY" if v > 0 else "(-INFINITY)"
    mantissa, exponent = v.hex().split("p")
    return f"{mantissa.rstrip('0').rstrip('.')}p{exponent}f"


def c_table(ctype: str, name: str, values: Sequence, per_line: int = 6) -> str:
    """A `static const` C array of `values` (floats as exact float32 literals)."""
    fmt = c_float if ctype == "float" else (lambda v: str(int(v)))
    items = [fmt(v) for v in values]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    body = ",\n    ".join(lines)
    return f"static const {ctype} {name}[{len(items)}] = {{\n    {body}\n}};\n"


@dataclass(frozen=True)
class Segment:
    """A block of GluonCV rows, class-major: its row c*boxes + j is class c of box box_start + j
    (boxes numbered as the tail stores them)."""

    boxes: int
    box_start: int


@dataclass(frozen=True)
class NmsSettings:
    """box_nms and the slice after it, as GluonCV calls them."""

    num_classes: int
    overlap_thresh: float  # GluonCV's nms_thresh
    topk: int  # nms_topk; < 0 all
    post_nms: int  # <= 0 all
    valid_thresh: float  # box_nms's valid_thresh (0.01 in both GluonCV detectors)
    class_thresh: float | None = None  # SSD's MultiPerClassDecoder threshold; YOLO: none

    def runs(self) -> bool:
        """Whether box_nms changes anything: GluonCV calls it only for 0 < nms_thresh < 1, and
        with topk 0 it returns its input."""
        return 0 < self.overlap_thresh < 1 and self.topk != 0

    def out_rows(self, num_rows: int) -> int:
        """P: how many rows GluonCV returns (`gluon_post_nms`)."""
        p = gluon_post_nms(self.overlap_thresh, self.post_nms)
        return num_rows if p <= 0 else p

    def candidates(self, num_rows: int) -> int:
        """The most rows NMS can see: min(topk, N), or N."""
        return num_rows if self.topk < 0 else min(self.topk, num_rows)


@dataclass(frozen=True)
class Part:
    """One workspace array."""

    name: str
    ctype: str  # float, int32_t or unsigned char
    count: int


_SIZES = {"float": 4, "int32_t": 4, "unsigned char": 1}


def workspace_layout(parts: Sequence[Part]) -> tuple[list[int], int]:
    """Byte offsets of `parts` in the workspace (each ALIGN-aligned) and its total size."""
    offsets, at = [], 0
    for p in parts:
        offsets.append(at)
        at += -(-p.count * _SIZES[p.ctype] // ALIGN) * ALIGN
    return offsets, max(at, ALIGN)


def carve_source(parts: Sequence[Part]) -> str:
    """C statements declaring one pointer per workspace part into `ws` (an unsigned char *)."""
    offsets, _ = workspace_layout(parts)
    return "".join(f"    {p.ctype} *{p.name} = ({p.ctype} *)(void *)(ws + {off}u);\n"
                   for p, off in zip(parts, offsets))


def nms_parts(settings: NmsSettings, num_rows: int) -> list[Part]:
    """The workspace box_nms needs beyond the scores and boxes."""
    if not settings.runs():
        return []
    k = settings.candidates(num_rows)
    return [Part("nms_order", "int32_t", num_rows), Part("nms_spare", "int32_t", num_rows),
            Part("nms_cls", "int32_t", k), Part("nms_box", "int32_t", k),
            Part("nms_area", "float", k), Part("nms_keep", "unsigned char", k)]


def nms_call(name: str, settings: NmsSettings) -> str:
    """The C expression running box_nms on `scores`, `boxes` into `rows` (after carving)."""
    if settings.runs():
        return (f"{name}_box_nms(scores, boxes, rows, nms_order, nms_spare, nms_cls, nms_box, "
                "nms_area, nms_keep)")
    return f"{name}_raw_rows(scores, boxes, rows)"


def rows_source(name: str, segments: Sequence[Segment], settings: NmsSettings) -> str:
    """The shared C functions: the row numbering, the raw row (with the SSD's class mask),
    and either box_nms or, when GluonCV skips it, the raw rows."""
    c = settings.num_classes
    num_rows = c * sum(s.boxes for s in segments)
    p = settings.out_rows(num_rows)
    starts, at = [], 0
    for s in segments:
        starts.append(at)
        at += c * s.boxes
    out = [f"#define {name}_ROWS {num_rows}\n",
           c_table("int32_t", f"{name}_seg_row", starts),
           c_table("int32_t", f"{name}_seg_boxes", [s.boxes for s in segments]),
           c_table("int32_t", f"{name}_seg_box", [s.box_start for s in segments])]
    out.append(f"""
/* GluonCV's row r: its class and the index of its box (rows are class-major per segment). */
static void {name}_row_of(int32_t r, int32_t *cls, int32_t *box)
{{
    int32_t s = {len(segments) - 1};
    while (s > 0 && r < {name}_seg_row[s])
        --s;
    r -= {name}_seg_row[s];
    *cls = r / {name}_seg_boxes[s];
    *box = {name}_seg_box[s] + r % {name}_seg_boxes[s];
}}

""")
    if settings.class_thresh is None:
        mask = "    *id = (float)cls;\n    *score = s;\n"
    else:
        mask = (f"    /* MultiPerClassDecoder: score > class_thresh (float32, strict), else id -1,"
                f" score 0 */\n"
                f"    if (s > {c_float(settings.class_thresh)}) {{\n"
                f"        *id = (float)cls;\n        *score = s;\n    }} else {{\n"
                f"        *id = -1.0f;\n        *score = 0.0f;\n    }}\n")
    out.append(f"""/* Row r as GluonCV hands it to box_nms: id and score (the box is boxes[box]). */
static int32_t {name}_raw_row(const float *scores, int32_t r, float *id, float *score)
{{
    int32_t cls, box;
    float s = scores[r];
    {name}_row_of(r, &cls, &box);
{mask}    return box;
}}

static void {name}_put_row(float *row, float id, float score, const float *box)
{{
    row[0] = id;
    row[1] = score;
    row[2] = box[0];
    row[3] = box[1];
    row[4] = box[2];
    row[5] = box[3];
}}

static void {name}_pad_rows(float *rows, int32_t from)
{{
    int32_t i;
    for (i = from * 6; i < {p} * 6; ++i)
        rows[i] = -1.0f;
}}

""")
    if not settings.runs():
        out.append(f"""/* GluonCV skips box_nms here (nms_thresh outside (0, 1), or topk 0): its
   rows are the raw rows in row order, the first {p}. */
static int {name}_raw_rows(const float *scores, const float *boxes, float *rows)
{{
    int32_t r, n = {min(p, num_rows)};
    for (r = 0; r < n; ++r) {{
        float id, score;
        int32_t box = {name}_raw_row(scores, r, &id, &score);
        {name}_put_row(rows + 6 * r, id, score, boxes + 4 * box);
    }}
    {name}_pad_rows(rows, n);
    return (int)n;
}}
""")
        return "".join(out)
    topk = settings.candidates(num_rows)
    out.append(f"""/* Stable descending sort of the n row numbers in a by key[row] (a bottom-up
   merge sort: ties keep the lower row first, as MXNet's std::stable_sort). b is as long as
   a; returns whichever of the two holds the result. */
static int32_t *{name}_sort(const float *key, int32_t *a, int32_t *b, int32_t n)
{{
    int32_t width, i;
    int32_t *src = a, *dst = b, *t;
    for (width = 1; width < n; width *= 2) {{
        for (i = 0; i < n; i += 2 * width) {{
            int32_t mid = i + width < n ? i + width : n;
            int32_t hi = i + 2 * width < n ? i + 2 * width : n;
            int32_t l = i, r = mid, o = i;
            while (l < mid && r < hi)
                dst[o++] = key[src[r]] > key[src[l]] ? src[r++] : src[l++];
            while (l < mid)
                dst[o++] = src[l++];
            while (r < hi)
                dst[o++] = src[r++];
        }}
        t = src;
        src = dst;
        dst = t;
    }}
    return src;
}}

/* MXNet's _contrib_box_nms(overlap_thresh={settings.overlap_thresh!r}, topk={settings.topk},
   valid_thresh={settings.valid_thresh!r}, id_index=0, force_suppress=False), then the first
   {p} rows. Returns how many rows are detections (the rest are -1). */
static int {name}_box_nms(const float *scores, const float *boxes, float *rows,
    int32_t *order, int32_t *spare, int32_t *cls, int32_t *box, float *area,
    unsigned char *keep)
{{
    int32_t r, i, j, n = 0, k, out = 0;
    const int32_t *sorted;
    for (r = 0; r < {name}_ROWS; ++r) {{
        float id, score;
        {name}_raw_row(scores, r, &id, &score);
        if (score > {c_float(settings.valid_thresh)} && id != -1.0f)
            order[n++] = r;
    }}
    sorted = {name}_sort(scores, order, spare, n);
    k = n < {topk} ? n : {topk};
    for (i = 0; i < k; ++i) {{
        const float *b;
        float w, h;
        {name}_row_of(sorted[i], &cls[i], &box[i]);
        b = boxes + 4 * box[i];
        w = b[2] - b[0];
        h = b[3] - b[1];
        area[i] = (w < 0.0f || h < 0.0f) ? 0.0f : w * h;
        keep[i] = 1;
    }}
    for (i = 0; i < k; ++i) {{
        const float *p;
        if (!keep[i])
            continue;
        p = boxes + 4 * box[i];
        for (j = i + 1; j < k; ++j) {{
            const float *q;
            float lo, hi, iw, ih, inter;
            if (!keep[j] || cls[j] != cls[i])
                continue;
            q = boxes + 4 * box[j];
            lo = p[0] > q[0] ? p[0] : q[0];
            hi = p[2] < q[2] ? p[2] : q[2];
            iw = hi - lo;
            iw = iw > 0.0f ? iw : 0.0f;
            lo = p[1] > q[1] ? p[1] : q[1];
            hi = p[3] < q[3] ? p[3] : q[3];
            ih = hi - lo;
            ih = ih > 0.0f ? ih : 0.0f;
            inter = iw * ih;
            if (inter / (area[i] + area[j] - inter) > {c_float(settings.overlap_thresh)})
                keep[j] = 0;
        }}
    }}
    for (i = 0; i < k && out < {p}; ++i) {{
        if (!keep[i])
            continue;
        {name}_put_row(rows + 6 * out, (float)cls[i], scores[sorted[i]], boxes + 4 * box[i]);
        ++out;
    }}
    {name}_pad_rows(rows, out);
    return (int)out;
}}
""")
    return "".join(out)


def dequantize_source(name: str) -> str:
    """The dequantise helpers' definitions (their prototypes are in `header_source`)."""
    return f"""
void {name}_dequantize_int8(const int8_t *q, size_t n, int32_t zero_point, float scale,
    float *out)
{{
    size_t i;
    for (i = 0; i < n; ++i)
        out[i] = (float)((int32_t)q[i] - zero_point) * scale;
}}

void {name}_dequantize_s32(const int32_t *q, size_t n, float *out)
{{
    size_t i;
    for (i = 0; i < n; ++i)
        out[i] = (float)q[i] / 4096.0f;
}}
"""


def header_source(name: str, *, about: str, defines: dict[str, object], prototype: str,
                  stem: str | None = None) -> str:
    """The header: what the tail computes (`about`, a C comment body), its constants, the
    workspace query, the entry point and the dequantise helpers (`stem`: the files' stem,
    `name` by default)."""
    guard = f"{name.upper()}_POSTPROCESS_H"
    lines = "".join(f"#define {name}_{k} {v}\n" for k, v in defines.items())
    return f"""/* {stem or name}_postprocess.h: generated by ssdconv (ssdconv.tail); do not edit.
{about}
   Quantised NPU outputs are turned into float32 first, one input array at a time:
   {name}_dequantize_int8 for Rockchip RKNN's affine int8 ((q - zero_point) * scale, the
   tensor's own zero point and scale), {name}_dequantize_s32 for HiSilicon NNIE's S32 fixed
   point (q / 4096). */
#ifndef {guard}
#define {guard}

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

{lines}
/* Bytes of scratch memory {name}_postprocess needs (no malloc inside; align it as for float,
   e.g. malloc's or a static array of float). */
size_t {name}_workspace_size(void);

{prototype}

/* out[i] = (float)(q[i] - zero_point) * scale, i < n: RKNN's affine int8 outputs. */
void {name}_dequantize_int8(const int8_t *q, size_t n, int32_t zero_point, float scale,
    float *out);

/* out[i] = (float)q[i] / 4096.0f, i < n: HiSilicon NNIE's S32 outputs (scale 4096). */
void {name}_dequantize_s32(const int32_t *q, size_t n, float *out);

#ifdef __cplusplus
}}
#endif

#endif /* {guard} */
"""


def source_prelude(name: str, about: str, stem: str | None = None) -> str:
    """The .c file's first lines: what it is, its includes (`stem`: the files' stem, `name` by
    default)."""
    return f"""/* {stem or name}_postprocess.c: generated by ssdconv (ssdconv.tail); do not edit.
{about}
   C99, no allocation. No FMA contraction (MXNet rounds every product; a fused multiply-add
   moves SSD boxes by an ulp): the pragmas below turn it off in GCC and clang whatever the
   flags; elsewhere compile with the compiler's equivalent of -ffp-contract=off. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "{stem or name}_postprocess.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

"""


def workspace_source(name: str, parts: Sequence[Part]) -> str:
    _, total = workspace_layout(parts)
    return f"""size_t {name}_workspace_size(void)
{{
    return {total}u;
}}

"""


def c_prefix(stem: str) -> str:
    """The C identifier prefix of the tail for files named after `stem` (an output name such
    as "ssd_300_mobilenet0.25_voc"): every character that cannot be in an identifier becomes
    "_", and a leading digit gets a "_" before it."""
    prefix = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in stem)
    return f"_{prefix}" if not prefix or prefix[0].isdigit() else prefix


def check_name(name: str) -> str:
    """`name` if it is a C identifier prefix (the generated symbols start with it)."""
    if not name.isidentifier() or not name.isascii():
        raise ValueError(f"tail name {name!r} must be a C identifier (letters, digits, _)")
    return name


def tail_files(name: str, stem: str | None, about: str, layout: str, body: str,
               header: str) -> dict[str, str]:
    """{"STEM_postprocess.c": the prelude, the layout macro and `body`; "STEM_postprocess.h":
    `header`}: both generators' result."""
    src = source_prelude(name, about, stem) + at_macro(name, layout) + body
    stem = stem or name
    return {f"{stem}_postprocess.c": src, f"{stem}_postprocess.h": header}


def inputs_layout_text(layout: str) -> str:
    """How the header describes the inputs' layout."""
    return (f"float32, laid out {layout.upper()}: "
            + ("value at c*H*W + y*W + x" if layout == "nchw"
               else "permuted (0, 2, 3, 1), value at (y*W + x)*channels + c"))


def rows_text(p: int) -> str:
    """How the header describes the output rows (`p` of them)."""
    return (f"Output rows [{p}][6]: GluonCV's ids, scores, bboxes side by side, (class id, "
            "score, x1, y1,\n   x2, y2) in input pixels, best first; rows after the detections "
            "are -1. The return value is\n   how many rows are detections.")


def check_layout(value: str) -> str:
    if value not in ("nchw", "nhwc"):
        raise ValueError(f"layout must be 'nchw' or 'nhwc', not {value!r}")
    return value


def at_macro(name: str, value: str) -> str:
    """`NAME_AT(p, channels, hw, cell, c)`: channel c of cell (y*W + x) of one input array, in
    the layout: NCHW (c*H*W + cell) or NHWC, the (0, 2, 3, 1) permutation (cell*C + c)."""
    expr = ("(p)[(size_t)(c) * (size_t)(hw) + (size_t)(cell)]" if check_layout(value) == "nchw"
            else "(p)[(size_t)(cell) * (size_t)(channels) + (size_t)(c)]")
    return f"#define {name}_AT(p, channels, hw, cell, c) ({expr})\n\n"
