"""GluonCV SSD's post-processing as C99, from the per-level prediction convs to GluonCV's rows.

`SSD.hybrid_forward` after its predictors: the loc and conf convs are transposed to NHWC,
flattened and concatenated, so anchor a (level, y, x, anchor in that order) reads loc channels
a_l*4 + k and conf channels a_l*(C+1) + cls of its cell; then softmax over the C+1 logits,
MultiPerClassDecoder (background dropped, `score > 0.01`), the NormalizedBoxCenterDecoder, the
class-major rows (row c*A + a) and `_contrib_box_nms` (`box_nms_c`). The C does the same per
anchor, in MXNet's float32 operation order (`ssdconv.backend.onnx.ssd_head`'s docstring):

* decoder: `t = x * float(std)`, `cx = t0*aw + ax` (two roundings: no FMA contraction,
  which the generated pragmas ensure in GCC and clang whatever the flags; measured: a build
  with -march=native -ffp-contract=fast moves 113 coordinates without them),
  `half = exp(min(t2, clip)) * aw * 0.5`, corners `cx -+ half`. The exp is the decoder
  form's: "box_decode" (`_contrib_box_decode`, models built without pretrained weights)
  rounds C's exp(double) to float, the correctly rounded exp; "minimal_opset" (GluonCV's
  raw-op decoder, the pretrained zoo models) calls `expf`, which is MXNet's only on a glibc
  host (glibc's expf is 1 ulp from correctly rounded for ~6 in 10000 arguments; another libm
  may round those differently). Decoded boxes are MXNet's bit for bit on this machine;
* softmax: plain float32, `m = max`, `e = expf(x - m)`, `sum` in class order, `e / sum`. MXNet's
  CPU softmax is a oneDNN JIT kernel (its own exp polynomial and vector summation order) that
  plain C cannot reproduce. Measured against `mx.nd.softmax` on real logits (SOFTMAX_ULPS):
  at most 11 float32 ulps for the 21-class models (8-11, 25-29% of the probabilities equal;
  12 with MXNet's oneDNN held to AVX2), 16 for the 81-class ones (12-16, ~19% equal), 5 for
  the 5-class demo. Scores therefore differ from GluonCV's by those ulps, and rows can differ
  where two scores are that close (their order) or one is that close to 0.01: ties, which the
  tests name and count.

Measured (tests/test_c_tail.py: this AVX-512 machine, MXNet 1.9.1, gcc, glibc; 2 photos x both
layouts per model; 12 models: the CI's ssd_300_mobilenet0.25_voc (both decoder forms),
ssd_512_resnet50_v1_voc and the demo SSD, the sweep's vgg16_atrous 300/512, resnet18 512,
resnet34 300, resnet101 512, mobilenet1.0 512, mobilenet1.0_lite_coco 300, mobilenet0.25_coco):
decoded boxes MXNet's bit for bit; the C's rows MXNet's box_nms of the C's own scores and boxes
bit for bit; against GluonCV's rows, every row (100 detections per image) has GluonCV's id and
box bit for bit and its score within 13 ulps (26-56 of the 100 rows bit-equal, the rest differ
only by the softmax's ulps); ties needed: 0. Speed (x86-64, -O2, one image): 1.6 ms for
ssd_300_mobilenet0.25_voc, 4.6 ms for ssd_512_resnet50_v1_voc (seeded weights: every row passes
0.01, the worst case for the sort).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

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

#: the softmax's measured maximum distance from MXNet's (oneDNN, whose kernel depends on the
#: CPU's vector width) in float32 ulps: 11 for the 21-class (VOC) models on AVX-512, 12 with
#: MXNet held to AVX2, 16 for the 81-class (COCO) ones (tests/test_c_tail.py, 13 models)
SOFTMAX_ULPS = 16

_EXP = {
    "box_decode": "(float)exp((double)x); /* _contrib_box_decode: exp(double), rounded */",
    "minimal_opset": "expf(x); /* GluonCV's minimal_opset decoder: MXNet's exp, libm's expf */",
}


def _levels(levels: Sequence) -> list[tuple[int, int, int]]:
    out = []
    for lv in levels:
        if hasattr(lv, "per_cell"):  # an AnchorLevel of ssdconv's HeadSpec
            lv = (lv.height, lv.width, lv.per_cell)
        h, w, a = (int(v) for v in lv)
        if min(h, w, a) < 1:
            raise ValueError(f"level {lv!r}: height, width and anchors per cell must be >= 1")
        out.append((h, w, a))
    if not out:
        raise ValueError("an SSD tail needs at least one level")
    return out


def _anchors(anchors, count: int) -> np.ndarray:
    a = np.asarray(anchors)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.shape != (count, 4):
        raise ValueError(f"anchors of shape {np.asarray(anchors).shape} for {count} anchors "
                         "(the levels' height * width * anchors per cell); want [A, 4]")
    a32 = a.astype(np.float32)
    if not np.array_equal(a32.astype(a.dtype), a):
        raise ValueError("anchors are not float32 values; pass the decoder's float32 anchors")
    return a32


def ssd_tail_source(name: str, *, levels: Sequence[Sequence[int]], anchors: np.ndarray,
                    stds: Sequence[float], clip: float | None, decoder: str, num_classes: int,
                    nms_thresh: float, nms_topk: int, post_nms: int, class_thresh: float,
                    layout: str, stem: str | None = None) -> dict[str, str]:
    """The C tail of a GluonCV SSD: {"STEM_postprocess.c": text, "STEM_postprocess.h": text},
    its C symbols prefixed with `name` (a C identifier: `box_nms_c.c_prefix` of the stem);
    `stem` is the files' (the output name), `name` by default.

    levels: (height, width, anchors per cell) per level, GluonCV's order (a HeadSpec's levels
    are taken as they are). anchors: float32 [A, 4] (or [1, A, 4]) center form (cx, cy, w, h)
    in input pixels, the decoder's anchor input (level, y, x, anchor order). stds, clip,
    decoder, num_classes, nms_thresh, nms_topk, post_nms, class_thresh: as
    `ssdconv.backend.onnx.ssd_head.head_kwargs` returns them.
    layout: "nchw" or "nhwc", how the inputs (per level, the loc conv [A_l*4, H, W] and the
    conf conv [A_l*(C+1), H, W]) are laid out.

    The C entry point is `int NAME_postprocess(const float *const loc[], const float *const
    conf[], float *rows, void *workspace)`: rows [NAME_POST_NMS * 6] = GluonCV's (id, score,
    x1, y1, x2, y2) padded with -1; it returns the number of rows before the padding.
    """
    check_name(name)
    check_layout(layout)
    if decoder not in _EXP:
        raise ValueError(f"decoder must be 'box_decode' or 'minimal_opset', not {decoder!r}")
    if len(stds) != 4:
        raise ValueError(f"stds must have 4 values, not {stds!r}")
    c = int(num_classes)
    if c < 1:
        raise ValueError(f"num_classes {num_classes}")
    lv = _levels(levels)
    count = sum(h * w * a for h, w, a in lv)
    anchor_table = _anchors(anchors, count)
    settings = NmsSettings(num_classes=c, overlap_thresh=float(nms_thresh), topk=int(nms_topk),
                           post_nms=int(post_nms), valid_thresh=0.01,  # SSD's, hard-coded
                           class_thresh=float(class_thresh))
    num_rows = c * count
    p = settings.out_rows(num_rows)
    parts = [Part("boxes", "float", 4 * count), Part("scores", "float", num_rows),
             Part("prob", "float", c + 1)] + nms_parts(settings, num_rows)
    about = f"""
   GluonCV SSD post-processing ({c} classes, {count} anchors, {len(lv)} levels, decoder
   {decoder!r}): softmax, box decoder, box_nms(overlap {nms_thresh!r}, topk {nms_topk}),
   the first post_nms rows, in MXNet's float32 operation order.

   Inputs, per level l (GluonCV's order, NAME_LEVELS: height, width, anchors per cell A_l):
   loc[l], the box prediction conv output [A_l*4, H, W] (channel a*4 + k), and conf[l], the
   class prediction conv output [A_l*({c}+1), H, W] (channel a*({c}+1) + class, class 0 the
   background), {inputs_layout_text(layout)}.
   {rows_text(p)}""".replace("NAME_", f"{name}_")
    defines = {"NUM_CLASSES": c, "NUM_ANCHORS": count, "NUM_LEVELS": len(lv),
               "LEVELS": "{" + ", ".join(f"{{{h}, {w}, {a}}}" for h, w, a in lv) + "}",
               "POST_NMS": p, "NHWC": int(layout == "nhwc"), "INPUT_GROUPS": 2,
               "INPUT0_SIZES": "{" + ", ".join(str(h * w * a * 4) for h, w, a in lv) + "}",
               "INPUT1_SIZES": "{" + ", ".join(str(h * w * a * (c + 1)) for h, w, a in lv)
               + "}"}
    prototype = (f"/* Post-processing of one image; returns the number of detections. loc and conf"
                 f" are\n   arrays of const float pointers (C converts a float ** only with a "
                 f"cast). */\n"
                 f"int {name}_postprocess(const float *const loc[], const float *const conf[],\n"
                 f"    float *rows, void *workspace);")
    header = header_source(name, about=about, defines=defines, prototype=prototype, stem=stem)
    clip_line = ""
    if clip is not None and clip > 0:
        clip_line = (f"            tw = tw < {c_float(clip)} ? tw : {c_float(clip)};\n"
                     f"            th = th < {c_float(clip)} ? th : {c_float(clip)};\n")
    std = [c_float(s) for s in stds]
    body = f"""{c_table("int32_t", f"{name}_level_hwa", [v for t in lv for v in t])}
/* The decoder's anchors (cx, cy, w, h), input pixels, level, y, x, anchor order. */
{c_table("float", f"{name}_anchors", anchor_table.reshape(-1).tolist(), 4)}
static float {name}_exp(float x)
{{
    return {_EXP[decoder]}
}}

{rows_source(name, [Segment(count, 0)], settings)}
{workspace_source(name, parts)}int {name}_postprocess(const float *const loc[],
    const float *const conf[], float *rows, void *workspace)
{{
    unsigned char *ws = (unsigned char *)workspace;
{carve_source(parts)}    int32_t l, base = 0;
    for (l = 0; l < {len(lv)}; ++l) {{
        const int32_t w = {name}_level_hwa[3 * l + 1], na = {name}_level_hwa[3 * l + 2];
        const int32_t hw = {name}_level_hwa[3 * l] * w;
        const float *lp = loc[l], *cp = conf[l];
        int32_t cell, k, j;
        for (cell = 0; cell < hw; ++cell) {{
            for (k = 0; k < na; ++k) {{
                const int32_t a = base + cell * na + k;
                const float *an = {name}_anchors + 4 * a;
                float *box = boxes + 4 * a;
                float tx = {name}_AT(lp, na * 4, hw, cell, k * 4) * {std[0]};
                float ty = {name}_AT(lp, na * 4, hw, cell, k * 4 + 1) * {std[1]};
                float tw = {name}_AT(lp, na * 4, hw, cell, k * 4 + 2) * {std[2]};
                float th = {name}_AT(lp, na * 4, hw, cell, k * 4 + 3) * {std[3]};
                float cx, cy, hx, hy, m, sum = 0.0f;
{clip_line}                cx = tx * an[2] + an[0];
                cy = ty * an[3] + an[1];
                hx = {name}_exp(tw) * an[2] * 0.5f;
                hy = {name}_exp(th) * an[3] * 0.5f;
                box[0] = cx - hx;
                box[1] = cy - hy;
                box[2] = cx + hx;
                box[3] = cy + hy;
                /* softmax over the {c + 1} logits (not oneDNN's kernel: a few ulps off) */
                m = {name}_AT(cp, na * {c + 1}, hw, cell, k * {c + 1});
                for (j = 1; j <= {c}; ++j) {{
                    float v = {name}_AT(cp, na * {c + 1}, hw, cell, k * {c + 1} + j);
                    m = v > m ? v : m;
                }}
                for (j = 0; j <= {c}; ++j) {{
                    prob[j] = expf({name}_AT(cp, na * {c + 1}, hw, cell, k * {c + 1} + j) - m);
                    sum += prob[j];
                }}
                for (j = 1; j <= {c}; ++j)
                    scores[(size_t)(j - 1) * {count}u + (size_t)a] = prob[j] / sum;
            }}
        }}
        base += hw * na;
    }}
    return {nms_call(name, settings)};
}}
{dequantize_source(name)}"""
    return tail_files(name, stem, about, layout, body, header)
