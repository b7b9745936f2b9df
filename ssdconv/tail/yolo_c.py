"""GluonCV YOLOv3's post-processing as C99, from the raw prediction convs to GluonCV's rows.

Per level (GluonCV's order, stride 32 first), `YOLOOutputV3.hybrid_forward` in MXNet's float32
operation order (`ssdconv.backend.onnx.yolo_head`'s docstring): the conv [A*(5+C), H, W] gives
anchor a of cell (y, x) the channels a*(5+C) + k, and

    centre  (sigmoid(t_xy) + offset) * stride       offset (x, y) of the cell
    half    (expf(t_wh) * anchor) / 2               anchor (w, h) in input pixels
    box     centre - half, centre + half            x1, y1, x2, y2, not clipped
    score   sigmoid(t_cls) * sigmoid(t_obj)

with MXNet's CPU sigmoid `1.0f / (1.0f + expf(-x))` and MXNet's exp, glibc's expf: the C calls
the same, so on a glibc host every row equals GluonCV's pre-NMS row bit for bit (another libm
may round a few expf results differently). The rows are class-major per level (row
level_offset + c*(H*W*A) + (y*W + x)*A + a), then `_contrib_box_nms` (`box_nms_c`).

Measured (tests/test_c_tail.py: this machine, MXNet 1.9.1, gcc, glibc; 2 photos x both
layouts): yolo3_mobilenet0.25_voc and the demo YOLOv3 (CI), yolo3_darknet53_voc,
yolo3_mobilenet1.0_voc and yolo3_darknet53_coco at 320x320 (sweep): scores and boxes of every
pre-NMS row, and every output row, GluonCV's bit for bit; 0 ties. Speed (x86-64, -O2): 1.7 ms
per image for yolo3_mobilenet0.25_voc at 416x416 (seeded: every row passes 0.01).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..yolo.spec import YoloLevel, YoloNms
from .box_nms_c import (
    NmsSettings,
    Part,
    Segment,
    c_float,
    c_table,
    carve_source,
    check_layout,
    check_name,
    dequantize_source,
    header_source,
    inputs_layout_text,
    nms_call,
    nms_parts,
    rows_source,
    rows_text,
    tail_files,
    workspace_source,
)


def _offsets(level) -> np.ndarray | None:
    """The level's grid offsets (H, W, 2) (x, y) as float32, or None when they are GluonCV's
    own grid (offset[y, x] = (x, y)), which the C computes instead of storing."""
    h, w = int(level.height), int(level.width)
    given = getattr(level, "offsets", None)
    grid = np.stack(np.meshgrid(np.arange(w), np.arange(h)), axis=-1).astype(np.float32)
    if given is None:
        return None
    off = np.asarray(given)
    if off.shape != (h, w, 2):
        raise ValueError(f"offsets of shape {off.shape} for a {h}x{w} level")
    off32 = off.astype(np.float32)
    if not np.array_equal(off32.astype(off.dtype), off):
        raise ValueError("yolo tail: offsets are not float32 values")
    return None if np.array_equal(off32, grid) else off32


def _float32(what: str, values) -> None:
    v = np.asarray(values, np.float64)
    if not np.array_equal(v, v.astype(np.float32).astype(np.float64)):
        raise ValueError(f"yolo tail: {what} are not float32 values (give them as the model "
                         "holds them)")


def yolo_tail_source(name: str, *, levels: Sequence[YoloLevel], num_classes: int,
                     nms: YoloNms, layout: str, stem: str | None = None) -> dict[str, str]:
    """The C tail of a GluonCV YOLOv3: {"STEM_postprocess.c": ..., "STEM_postprocess.h": ...},
    its C symbols prefixed with `name` (a C identifier); `stem` names the files (the output
    name), `name` by default.

    levels: `YoloSpec.levels` (per level height, width, stride, anchors ((w, h) pixels) and
    optionally offsets (H, W, 2)), GluonCV's order. num_classes: C. nms: `YoloSpec.nms`
    (nms_threshold, valid_threshold, topk, post_nms). layout: "nchw" or "nhwc", how each
    level's prediction conv output [A*(5+C), H, W] is laid out.

    The C entry point is `int NAME_postprocess(const float *const pred[], float *rows, void
    *workspace)`: rows [NAME_POST_NMS * 6] = GluonCV's (id, score, x1, y1, x2, y2) padded with
    -1; it returns the number of rows before the padding.
    """
    check_name(name)
    check_layout(layout)
    c = int(num_classes)
    if c < 1 or not levels:
        raise ValueError(f"yolo tail: {c} classes, {len(levels)} levels")
    k = 5 + c
    settings = NmsSettings(num_classes=c, overlap_thresh=float(nms.nms_threshold),
                           topk=int(nms.topk), post_nms=int(nms.post_nms),
                           valid_thresh=float(nms.valid_threshold))
    segments, tables, code, sizes = [], [], [], []
    box_start = 0
    for i, lv in enumerate(levels):
        h, w, a = int(lv.height), int(lv.width), len(lv.anchors)
        if min(h, w, a) < 1:
            raise ValueError(f"yolo tail: level {i} has {a} anchors on {h}x{w} cells")
        _float32(f"level {i} anchors", lv.anchors)
        _float32(f"level {i} stride", lv.stride)
        hw = h * w
        segments.append(Segment(hw * a, box_start))
        sizes.append(hw * a * k)
        anchors = np.asarray(lv.anchors, np.float32).reshape(-1)
        tables.append(c_table("float", f"{name}_anchors{i}", anchors.tolist(), 2))
        offsets = _offsets(lv)
        if offsets is None:
            ox, oy = f"(float)(cell % {w})", f"(float)(cell / {w})"
        else:
            tables.append(c_table("float", f"{name}_offsets{i}", offsets.reshape(-1).tolist(),
                                  2))
            ox, oy = f"{name}_offsets{i}[2 * cell]", f"{name}_offsets{i}[2 * cell + 1]"
        stride = c_float(lv.stride)
        row0 = c * box_start
        code.append(f"""    /* level {i}: {h}x{w} cells, {a} anchors, stride {lv.stride!r} */
    for (cell = 0; cell < {hw}; ++cell) {{
        for (a = 0; a < {a}; ++a) {{
            const int32_t ch = a * {k}, j = cell * {a} + a;
            float *box = boxes + 4 * ({box_start} + j);
            float cx = ({name}_sigmoid({name}_AT(pred[{i}], {a * k}, {hw}, cell, ch)) + {ox})
                       * {stride};
            float cy = ({name}_sigmoid({name}_AT(pred[{i}], {a * k}, {hw}, cell, ch + 1))
                        + {oy}) * {stride};
            float hx = (expf({name}_AT(pred[{i}], {a * k}, {hw}, cell, ch + 2))
                        * {name}_anchors{i}[2 * a]) / 2.0f;
            float hy = (expf({name}_AT(pred[{i}], {a * k}, {hw}, cell, ch + 3))
                        * {name}_anchors{i}[2 * a + 1]) / 2.0f;
            float obj = {name}_sigmoid({name}_AT(pred[{i}], {a * k}, {hw}, cell, ch + 4));
            box[0] = cx - hx;
            box[1] = cy - hy;
            box[2] = cx + hx;
            box[3] = cy + hy;
            for (cls = 0; cls < {c}; ++cls)
                scores[{row0}u + (size_t)cls * {hw * a}u + (size_t)j] =
                    {name}_sigmoid({name}_AT(pred[{i}], {a * k}, {hw}, cell, ch + 5 + cls))
                    * obj;
        }}
    }}
""")
        box_start += hw * a
    num_rows = c * box_start
    p = settings.out_rows(num_rows)
    parts = [Part("boxes", "float", 4 * box_start), Part("scores", "float", num_rows)] \
        + nms_parts(settings, num_rows)
    shapes = ", ".join(f"{{{lv.height}, {lv.width}, {len(lv.anchors)}}}" for lv in levels)
    about = f"""
   GluonCV YOLOv3 post-processing ({c} classes, {len(levels)} levels, {box_start} boxes):
   YOLOOutputV3's decode, box_nms(overlap {settings.overlap_thresh!r}, topk {settings.topk},
   valid {settings.valid_thresh!r}), the first post_nms rows, in MXNet's float32 order.

   Inputs: pred[l] per level l (GluonCV's order, stride 32 first; {name}_LEVELS: height,
   width, anchors A), the raw prediction conv output [A*({c}+5), H, W] (channel a*({c}+5) + k:
   k = 0, 1 x/y, 2, 3 w/h, 4 objectness, 5 + class), {inputs_layout_text(layout)}.
   {rows_text(p)}"""
    defines = {"NUM_CLASSES": c, "NUM_BOXES": box_start, "NUM_LEVELS": len(levels),
               "LEVELS": "{" + shapes + "}", "POST_NMS": p, "NHWC": int(layout == "nhwc"),
               "INPUT_GROUPS": 1, "INPUT0_SIZES": "{" + ", ".join(map(str, sizes)) + "}"}
    prototype = (f"/* Post-processing of one image; returns the number of detections. pred is "
                 f"an array\n   of const float pointers (C converts a float ** only with a "
                 f"cast). */\n"
                 f"int {name}_postprocess(const float *const pred[], float *rows, "
                 f"void *workspace);")
    header = header_source(name, about=about, defines=defines, prototype=prototype, stem=stem)
    body = f"""{"".join(tables)}
/* MXNet's CPU sigmoid, op for op. */
static float {name}_sigmoid(float x)
{{
    return 1.0f / (1.0f + expf(-x));
}}

{rows_source(name, segments, settings)}
{workspace_source(name, parts)}int {name}_postprocess(const float *const pred[], float *rows,
    void *workspace)
{{
    unsigned char *ws = (unsigned char *)workspace;
{carve_source(parts)}    int32_t cell, a, cls;
{"".join(code)}    return {nms_call(name, settings)};
}}
{dequantize_source(name)}"""
    return tail_files(name, stem, about, layout, body, header)
