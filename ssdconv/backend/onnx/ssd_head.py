"""GluonCV's SSD post-processing (softmax, box decoder, class decoder, box_nms) as ONNX nodes, so
that an ONNX SSD outputs GluonCV's own `ids, scores, bboxes`, row for row.

GluonCV's `SSD.hybrid_forward`, after the predictors, computes (facts §6d, §11.1):

    bboxes = bbox_decoder(box_preds, anchors)            # [B, A, 4] corners, input pixels
    cls_ids, scores = cls_decoder(softmax(cls_preds, axis=-1))
    rows c*A + a = [cls_ids[..., c], scores[..., c], bboxes]; box_nms; slice post_nms

This module writes the same: `Softmax`, then the foreground scores transposed class-major, then
the decoder in MXNet's float32 operation order, then `box_nms.ssd_box_nms_nodes` (MXNet's
box_nms bit for bit, given the same scores and boxes). What is exact and what is not, measured
on this repository's CPU (AVX-512) with MXNet 1.9.1 (oneDNN), onnxruntime 1.31.1 and OpenVINO
2026.4.1 (tests/test_onnx_ssd_head.py):

* Decoder. MXNet's `_contrib_box_decode` (models built without pretrained weights) computes, in
  float32, `ox = x0*std0*aw + ax` (no FMA contraction), `ow = exp(x2*std2)*aw*0.5`, corners
  `ox -+ ow`; its `exp(float)` is C's exp(double) rounded to float: the correctly rounded exp.
  GluonCV's minimal_opset decoder (pretrained zoo models) does the same arithmetic with
  separate ops (`_mul_scalar` casts the std to float32 first), but its `exp` is glibc's expf,
  1 ulp from correctly rounded in about 6 of 10000 arguments. So both forms are one float32
  Mul/Add/Sub chain and differ only in the exp (`exp_nodes`), which is computed here in
  float-float arithmetic from float32 ops, as each form rounds it (no float64: OpenVINO's CPU
  plugin and TensorRT have none). A Max(-inf, p) after the rounded products that feed an
  addition keeps OpenVINO from fusing them into FMAs (it does: 98 of 4536 centers then differ).
  Result: MXNet's boxes bit for bit in onnxruntime and OpenVINO, both forms. The runtimes' own
  Exp is 1 (onnxruntime) or 3 (OpenVINO) ulps off; `exact_exp=False` writes it instead.
* Softmax. MXNet's CPU softmax is oneDNN's JIT kernel (its own exp polynomial, a reciprocal
  of the sum, a lane-wise summation order that depends on the CPU's vector width): not
  expressible exactly in ONNX ops. The ONNX Softmax op is written: OpenVINO's CPU Softmax is
  a oneDNN kernel too and equals MXNet bit for bit for 21 classes (within 4 ulps, 77% equal,
  for 81); onnxruntime's Softmax is the closest of the forms measured there (Softmax; Exp of
  the max-subtracted logits over their ReduceSum, by Div or by a Reciprocal and Mul; those in
  float64): 40% of the probabilities equal, the rest within 7 ulps (relative 5.2e-7). The
  composed float32 forms are within 6 ulps but equal less often (33%, 37%), the float64 ones
  within 16 ulps (MXNet's softmax is itself that far from the exact one).
* Class decoder. GluonCV's `scores > 0.01` mask and box_nms's `valid_thresh` 0.01 are one
  strict float32 threshold, applied by box_nms (a head with another class threshold gets both).

Scores that are ulps away from MXNet's can change which rows come out only where two scores
are within those ulps of each other (their order) or of the 0.01 threshold; the test names
such rows as ties (`tests/test_onnx_ssd_head.py`).
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto

from ...ir.shapes import gluon_post_nms
from .box_nms import (
    TRT_TOPK_MAX,
    IouRule,
    Subgraph,
    _Builder,
    _model,
    _out_rows,
    nms_runs,
    ssd_box_nms_nodes,
)

DecoderForm = Literal["box_decode", "minimal_opset"]

#: GluonCV's MultiPerClassDecoder threshold and box_nms valid_thresh (both hard-coded 0.01)
GLUON_VALID = 0.01

# ---- exp, exactly as MXNet's decoders round it, from float32 ops ---------------------------
#
# Both decoder forms reduce x*N/ln2 = k + r (N = 32), take 2^(k/N) from a table and a
# polynomial in r for 2^(r/N), as glibc's expf does (sysdeps/ieee754/flt-32/e_expf.c, Arm's
# optimized-routines): "minimal_opset" with glibc's own constants (its float64 table, its
# float64 32/ln2 and its cubic, so the result carries glibc's approximation error),
# "box_decode" with exact ones (32/ln2 to 72 bits, the table to 48, a degree-6 Taylor
# polynomial: the correctly rounded exp). The arithmetic is float-float (a value is an
# unevaluated sum hi + lo of two float32s, ~48 bits), so runtimes without float64 (OpenVINO's
# CPU plugin, TensorRT) compute it too; the one rounding to float32 is the last step.
_EXPF_N = 32
_EXP_LO, _EXP_HI = -104.0, 89.0  # exp is 0 below (< 2^-150) and inf above (> 2^128) in f32
_POW2_MIN, _POW2_MAX = -76, 64  # 2^q is applied as 2^floor(q/2) * 2^(q - floor(q/2))


def _ff(value: Fraction, parts: int = 2) -> list[np.float32]:
    """`value` as `parts` float32s whose exact sum is it to 24*parts bits."""
    out, rest = [], Fraction(value)
    for _ in range(parts):
        x = np.float32(float(rest))
        out.append(x)
        rest -= Fraction(float(x))
    return out


def _exp_constants(form: DecoderForm) -> tuple[list, list, np.ndarray]:
    """(32/ln2 in 3 float32s, polynomial coefficients highest degree first as float-float
    pairs, table [32, 2] float-float of 2^(i/32)) for the exp of a decoder form."""
    with localcontext() as ctx:
        ctx.prec = 80
        ln2 = Decimal(2).ln()
        if form == "minimal_opset":  # glibc's __exp2f_data: float64 constants, kept exactly
            inv = Fraction(float.fromhex("0x1.71547652b82fep+0")) * _EXPF_N
            poly = [Fraction(float.fromhex(h)) / _EXPF_N ** d for h, d in (
                ("0x1.c6af84b912394p-5", 3), ("0x1.ebfce50fac4f3p-3", 2),
                ("0x1.62e42ff0c52d6p-1", 1))] + [Fraction(1)]
            # glibc's tab[i] holds 2^(i/N) correctly rounded to float64
            table = [Fraction(float(Decimal(2) ** (Decimal(i) / _EXPF_N)))
                     for i in range(_EXPF_N)]
        elif form == "box_decode":  # the exact function: 2^(r/N) = exp(r ln2/N), Taylor
            inv = Fraction(Decimal(_EXPF_N) / ln2)
            u = Fraction(ln2 / _EXPF_N)
            poly = [u ** d / math.factorial(d) for d in range(6, -1, -1)]
            table = [Fraction(Decimal(2) ** (Decimal(i) / _EXPF_N)) for i in range(_EXPF_N)]
        else:
            raise ValueError(f"decoder form must be 'box_decode' or 'minimal_opset', not {form!r}")
    return (_ff(inv, 3), [_ff(c) for c in poly],
            np.array([_ff(t) for t in table], np.float32))


class _FloatFloat:
    """Float-float arithmetic (Dekker, Knuth) as ONNX float32 nodes.

    A rounded product that feeds an addition goes through Max(-inf, p) first: OpenVINO's CPU
    plugin fuses Multiply+Add into an FMA (measured), which would change Veltkamp's split and
    the rounded products these algorithms count on. Exact products need no barrier."""

    def __init__(self, b: _Builder, name: str) -> None:
        self.b = b
        self.name = name
        self.count = 0

    def _n(self, what: str) -> str:
        self.count += 1
        return f"{self.name}_{what}{self.count}"

    def const(self, what: str, value) -> str:
        return self.b.const(f"{self.name}_{what}", value, np.float32)

    def op(self, op: str, inputs: list[str], what: str, **attrs) -> str:
        return self.b.op(op, inputs, self._n(what), **attrs)

    def rounded_mul(self, a: str, c: str, what: str) -> str:
        p = self.op("Mul", [a, c], what)
        return self.op("Max", [self.const("minus_inf", -np.inf), p], what + "_unfused")

    def split(self, a: str) -> tuple[str, str]:
        """Veltkamp: a = hi + lo, each with at most 12 significant bits."""
        c = self.rounded_mul(a, self.const("veltkamp", 4097.0), "veltkamp")
        hi = self.op("Sub", [c, self.op("Sub", [c, a], "split_d")], "split_hi")
        return hi, self.op("Sub", [a, hi], "split_lo")

    def two_prod(self, a: str, a_split: tuple[str, str], c: np.float32) -> tuple[str, str]:
        """a * c (c a float32 constant) = p + e exactly."""
        ch, cl = _split_const(c)
        ah, al = a_split
        p = self.rounded_mul(a, self.const(f"c{_bits(c)}", c), "tp")
        e = self.op("Sub", [self.op("Mul", [ah, self.const(f"c{_bits(ch)}", ch)], "tp_hh"), p],
                    "tp_e0")
        e = self.op("Add", [e, self.op("Mul", [ah, self.const(f"c{_bits(cl)}", cl)], "tp_hl")],
                    "tp_e1")
        e = self.op("Add", [e, self.op("Mul", [al, self.const(f"c{_bits(ch)}", ch)], "tp_lh")],
                    "tp_e2")
        e = self.op("Add", [e, self.op("Mul", [al, self.const(f"c{_bits(cl)}", cl)], "tp_ll")],
                    "tp_e3")
        return p, e

    def two_prod_var(self, a: tuple[str, str], b: tuple[str, str]) -> tuple[str, str]:
        """a * b for two split tensors (a, b as returned by `split`, with their sources)."""
        (a0, ah, al), (b0, bh, bl) = a, b
        p = self.rounded_mul(a0, b0, "tv")
        e = self.op("Sub", [self.op("Mul", [ah, bh], "tv_hh"), p], "tv_e0")
        e = self.op("Add", [e, self.op("Mul", [ah, bl], "tv_hl")], "tv_e1")
        e = self.op("Add", [e, self.op("Mul", [al, bh], "tv_lh")], "tv_e2")
        e = self.op("Add", [e, self.op("Mul", [al, bl], "tv_ll")], "tv_e3")
        return p, e

    def two_sum(self, a: str, c: str) -> tuple[str, str]:
        s = self.op("Add", [a, c], "ts")
        bb = self.op("Sub", [s, a], "ts_bb")
        e = self.op("Add", [self.op("Sub", [a, self.op("Sub", [s, bb], "ts_sbb")], "ts_ea"),
                            self.op("Sub", [c, bb], "ts_eb")], "ts_e")
        return s, e

    def fast_two_sum(self, a: str, c: str) -> tuple[str, str]:
        """|a| >= |c| (or a == 0): a + c = s + e exactly."""
        s = self.op("Add", [a, c], "fs")
        return s, self.op("Sub", [c, self.op("Sub", [s, a], "fs_d")], "fs_e")

    def mul(self, a: tuple[str, str], r: tuple[str, str],
            r_split: tuple[str, str]) -> tuple[str, str]:
        """float-float a * r (r's hi already split)."""
        a_split = self.split(a[0])
        p, e = self.two_prod_var((a[0], *a_split), (r[0], *r_split))
        cross = self.op("Add", [self.rounded_mul(a[0], r[1], "cross_hl"),
                                self.rounded_mul(a[1], r[0], "cross_lh")], "cross")
        return self.fast_two_sum(p, self.op("Add", [e, cross], "mul_e"))

    def add_const(self, a: tuple[str, str], c: list[np.float32]) -> tuple[str, str]:
        s, e = self.two_sum(a[0], self.const(f"c{_bits(c[0])}", c[0]))
        e = self.op("Add", [e, self.op("Add", [a[1], self.const(f"c{_bits(c[1])}", c[1])],
                                       "addc_lo")], "addc_e")
        return self.fast_two_sum(s, e)


def _float_steps(poly: list) -> int:
    """How many of the leading (highest degree) Horner coefficients are evaluated in plain
    float32: those whose term c*r^d (|r| <= 1/2) is below 2^-32, so that float32's 2^-23
    relative error stays under 2^-55 of the result (about 1)."""
    degree = len(poly) - 1
    n = 0
    while n < degree and abs(float(poly[n][0])) * 0.5 ** (degree - n) < 2.0 ** -32:
        n += 1
    return max(n, 1)


def _bits(x: np.float32) -> str:
    return f"{int(np.float32(x).view(np.uint32)):08x}"


def _split_const(c: np.float32) -> tuple[np.float32, np.float32]:
    c = np.float32(c)
    t = np.float32(c * np.float32(4097))
    hi = np.float32(t - np.float32(t - c))
    return hi, np.float32(c - hi)


def exp_nodes(b: _Builder, x: str, form: DecoderForm | None, name: str) -> str:
    """Exp of float32 `x`, rounded as MXNet's decoder of that form rounds it.

    "box_decode": `_contrib_box_decode` calls C's exp(double) on the float and rounds: the
    correctly rounded exp. "minimal_opset": GluonCV's raw-op decoder uses `F.exp`, glibc's
    expf (about 6 in 10000 arguments 1 ulp from correctly rounded). None: the runtime's own
    float32 Exp (measured 1 ulp off in onnxruntime, 3 in OpenVINO).

    Exact but for hard cases (exact values within ~2^-48 of a rounding boundary), measured with
    `exp_reference` (which onnxruntime and OpenVINO equal bit for bit): of every third float32
    with 2^-30 <= |x| <= 20 (1.9e8 values), 3 differ from glibc 2.36's expf and 5 from the
    correctly rounded exp, by one ulp; of all floats with 20 <= |x| <= 104 (4.0e7), 0 and 1.
    Subnormal results are rounded once, on their own grid. NaN stays NaN; x is clamped to
    [-104, 89] (the results there are 0 and inf). About 230 (minimal_opset) or 300 nodes,
    elementwise on [B, A, 2].
    """
    if form is None:
        return b.op("Exp", [x], name)
    (i1, i2, i3), poly, table = _exp_constants(form)
    ff = _FloatFloat(b, name)
    nan = b.op("IsNaN", [x], f"{name}_isnan")
    safe = b.op("Where", [nan, ff.const("zero", 0.0), x], f"{name}_safe")
    safe = b.op("Clip", [safe, ff.const("lo", _EXP_LO), ff.const("hi", _EXP_HI)],
                f"{name}_clamped")
    xs = ff.split(safe)
    # z = x * 32/ln2 = k + r, r as float-float
    p1, e1 = ff.two_prod(safe, xs, i1)
    p2, e2 = ff.two_prod(safe, xs, i2)
    k = b.op("Round", [p1], f"{name}_k")  # half to even, as glibc's shift trick
    r0 = b.op("Sub", [p1, k], f"{name}_r0")  # exact: |p1| < 2^13 and k its nearest integer
    s, err = ff.two_sum(r0, p2)
    s, err2 = ff.two_sum(s, e1)
    rl = ff.op("Add", [ff.op("Add", [err, err2], "rl0"), e2], "rl1")
    rl = ff.op("Add", [rl, ff.rounded_mul(safe, ff.const(f"c{_bits(i3)}", i3), "x_i3")], "rl2")
    r = ff.fast_two_sum(s, rl)
    r_split = ff.split(r[0])
    # Horner, acc = acc * r + c: in float32 while the terms are too small to matter, then
    # float-float
    n_float = _float_steps(poly)
    acc = ff.const(f"c{_bits(poly[0][0])}", poly[0][0])
    for c in poly[1:n_float]:
        acc = ff.op("Add", [ff.rounded_mul(acc, r[0], "horner"),
                            ff.const(f"c{_bits(c[0])}", c[0])], "horner_c")
    acc = (acc, ff.const("zero", 0.0))
    for c in poly[n_float:]:
        acc = ff.add_const(ff.mul(acc, r, r_split), c)
    # 2^(k/32) = table[k mod 32] * 2^floor(k/32)
    q = b.op("Floor", [b.op("Mul", [k, ff.const("inv_n", 1.0 / _EXPF_N)], f"{name}_k_n")],
             f"{name}_q")
    i = b.op("Sub", [k, b.op("Mul", [q, ff.const("n", float(_EXPF_N))], f"{name}_qn")],
             f"{name}_i")
    i = b.op("Cast", [i], f"{name}_i64", to=TensorProto.INT64)
    t = (b.op("Gather", [b.const(f"{name}_table_hi", table[:, 0], np.float32), i],
              f"{name}_t_hi"),
         b.op("Gather", [b.const(f"{name}_table_lo", table[:, 1], np.float32), i],
              f"{name}_t_lo"))
    y, y_lo = ff.mul(t, acc, ff.split(acc[0]))  # y: the float nearest to y + y_lo
    pow2 = b.const(f"{name}_pow2", np.ldexp(np.float32(1), np.arange(_POW2_MIN, _POW2_MAX + 1)),
                   np.float32)

    def times_pow2(v: str, e: str, what: str) -> str:
        idx = b.op("Cast", [b.op("Sub", [e, ff.const("pow2_min", float(_POW2_MIN))],
                                 f"{name}_{what}_off")], f"{name}_{what}_i64",
                   to=TensorProto.INT64)
        return b.op("Mul", [v, b.op("Gather", [pow2, idx], f"{name}_{what}_2e")],
                    f"{name}_{what}")

    # a normal result: y * 2^q, exact, in two factors (2^q alone may not be a float32)
    q1 = b.op("Floor", [b.op("Mul", [q, ff.const("half", 0.5)], f"{name}_q_half")],
              f"{name}_q1")
    normal = times_pow2(times_pow2(y, q1, "scaled1"), b.op("Sub", [q, q1], f"{name}_q2"),
                        "scaled2")
    # a subnormal result is a multiple of 2^-149: round (y + y_lo) * 2^(q+149) to an integer
    # once (rounding y first, then scaling, would round twice); y_lo breaks Round's ties
    e = b.op("Clip", [b.op("Add", [q, ff.const("sub_bias", 149.0)], f"{name}_qs"),
                      ff.const("sub_lo", -2.0), ff.const("sub_hi", 24.0)], f"{name}_qs_clip")
    w, w_lo = times_pow2(y, e, "w"), times_pow2(y_lo, e, "w_lo")
    n = b.op("Round", [w], f"{name}_sub_round")
    d = b.op("Sub", [w, n], f"{name}_sub_frac")  # exact
    zero = ff.const("zero", 0.0)
    up = b.op("And", [b.op("Equal", [d, ff.const("half", 0.5)], f"{name}_d_half"),
                      b.op("Greater", [w_lo, zero], f"{name}_lo_pos")], f"{name}_up")
    down = b.op("And", [b.op("Equal", [d, ff.const("minus_half", -0.5)], f"{name}_d_mhalf"),
                        b.op("Less", [w_lo, zero], f"{name}_lo_neg")], f"{name}_down")
    adj = b.op("Where", [up, ff.const("one", 1.0),
                         b.op("Where", [down, ff.const("minus_one", -1.0), zero],
                              f"{name}_adj_down")], f"{name}_adj")
    sub = b.op("Mul", [b.op("Add", [n, adj], f"{name}_n_adj"),
                       ff.const("min_subnormal", np.ldexp(1.0, -149))], f"{name}_subnormal")
    tiny = b.op("Less", [normal, ff.const("min_normal", np.ldexp(1.0, -126))], f"{name}_tiny")
    y = b.op("Where", [tiny, sub, normal], f"{name}_y")
    return b.op("Where", [nan, x, y], name)


def exp_reference(x: np.ndarray, form: DecoderForm) -> np.ndarray:
    """`exp_nodes` in numpy float32, operation for operation (for tests and measurements)."""
    f = np.float32
    (i1, i2, i3), poly, table = _exp_constants(form)
    x = np.asarray(x, f)

    def split(a):
        c = a * f(4097)
        hi = c - (c - a)
        return hi, a - hi

    def two_prod(a, a_split, c):
        ch, cl = _split_const(c)
        ah, al = a_split
        p = a * c
        return p, (((ah * ch - p) + ah * cl) + al * ch) + al * cl

    def two_sum(a, c):
        s = a + c
        bb = s - a
        return s, (a - (s - bb)) + (c - bb)

    def fast_two_sum(a, c):
        s = a + c
        return s, c - (s - a)

    def mul(a, r, r_split):
        ah, al = split(a[0])
        rh, rl = r_split
        p = a[0] * r[0]
        e = (((ah * rh - p) + ah * rl) + al * rh) + al * rl
        return fast_two_sum(p, e + (a[0] * r[1] + a[1] * r[0]))

    def add_const(a, c):
        s, e = two_sum(a[0], c[0])
        return fast_two_sum(s, e + (a[1] + c[1]))

    with np.errstate(invalid="ignore", over="ignore"):
        nan = np.isnan(x)
        safe = np.clip(np.where(nan, f(0), x), f(_EXP_LO), f(_EXP_HI))
        xs = split(safe)
        p1, e1 = two_prod(safe, xs, i1)
        p2, e2 = two_prod(safe, xs, i2)
        k = np.rint(p1)
        s, err = two_sum(p1 - k, p2)
        s, err2 = two_sum(s, e1)
        r = fast_two_sum(s, ((err + err2) + e2) + safe * i3)
        r_split = split(r[0])
        n_float = _float_steps(poly)
        acc = np.full_like(safe, poly[0][0])
        for c in poly[1:n_float]:
            acc = acc * r[0] + c[0]
        acc = (acc, np.zeros_like(acc))
        for c in poly[n_float:]:
            acc = add_const(mul(acc, r, r_split), c)
        q = np.floor(k * f(1.0 / _EXPF_N))
        i = (k - q * f(_EXPF_N)).astype(np.int64)
        y, y_lo = mul((table[i, 0], table[i, 1]), acc, split(acc[0]))

        def pow2(e):
            return np.ldexp(f(1), e.astype(np.int64)).astype(f)

        q1 = np.floor(q * f(0.5))
        normal = (y * pow2(q1)) * pow2(q - q1)
        e = np.clip(q + f(149), f(-2), f(24))
        w, w_lo = y * pow2(e), y_lo * pow2(e)
        n = np.rint(w)
        d = w - n
        adj = np.where((d == f(0.5)) & (w_lo > 0), f(1), np.where((d == f(-0.5)) & (w_lo < 0),
                                                                 f(-1), f(0)))
        sub = (n + adj) * f(np.ldexp(1.0, -149))
        y = np.where(normal < f(np.ldexp(1.0, -126)), sub, normal)
        return np.where(nan, x, y).astype(f)


def center_anchors(anchors: np.ndarray) -> np.ndarray:
    """The decoder's anchors as float32 [A, 4] (cx, cy, w, h) in input pixels.

    Accepts what the decoder's anchor input holds: GluonCV's concatenated anchors [1, A, 4]
    (SSDAnchorGenerator/LiteAnchorGenerator output, center form), or [A, 4]; they must already
    be float32 values (a float64 copy of float32 anchors is fine: it converts exactly)."""
    a = np.asarray(anchors)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2 or a.shape[1] != 4 or a.shape[0] < 1:
        raise ValueError(f"anchors must be [1, A, 4] or [A, 4] (cx, cy, w, h), not {a.shape}")
    a32 = a.astype(np.float32)
    if not np.array_equal(a32.astype(a.dtype), a, equal_nan=True):
        raise ValueError("anchors are not float32 values; pass the float32 anchors the model's "
                         "decoder reads (MXNet holds them in float32)")
    return a32


def decode_nodes(b: _Builder, box_preds: str, anchors: np.ndarray,
                 stds: tuple[float, float, float, float], clip: float | None,
                 exp_form: DecoderForm | None, out: str) -> str:
    """GluonCV's NormalizedBoxCenterDecoder (center anchors) on box_preds [B, A, 4], written to
    `out` [B, A, 4] corners, in MXNet's float32 order: t = x*std; (t0*aw)+ax; exp(min(t2,
    clip))*aw*0.5; corners c -+ half (concat order x1, y1, x2, y2)."""
    a = center_anchors(anchors)[None]  # [1, A, 4]
    f32, i64 = np.float32, np.int64
    if len(stds) != 4:
        raise ValueError(f"stds must have 4 values, not {stds!r}")
    std = b.const("stds", np.array(stds, f32).reshape(1, 1, 4), f32)  # MXNet: float(std)
    t = b.op("Mul", [box_preds, std], "scaled")
    ax2 = b.const("axis2", [2], i64)
    t_xy = b.op("Slice", [t, b.const("c0", [0], i64), b.const("c2", [2], i64), ax2], "scaled_xy")
    t_wh = b.op("Slice", [t, b.const("c2", [2], i64), b.const("c4", [4], i64), ax2], "scaled_wh")
    a_wh = b.const("anchor_wh", a[..., 2:4], f32)
    offset = b.op("Mul", [t_xy, a_wh], "offset_xy")
    # max(-inf, p) = p: keeps OpenVINO's CPU plugin from fusing this Mul and Add into one FMA
    # (measured: it does, and 98 of 4536 centers then differ from MXNet's by an ulp). In this
    # operand order OpenVINO's Max keeps a NaN (max(p, -inf) gives -inf there)
    offset = b.op("Max", [b.const("minus_inf", -np.inf, f32), offset], "offset_xy_unfused")
    center = b.op("Add", [offset, b.const("anchor_xy", a[..., 0:2], f32)], "center")
    if clip is not None and clip > 0:
        # box_decode: dw < clip ? dw : clip; minimal_opset: minimum(dw, clip), float32 clip
        # (a clip of 0 or less, GluonCV's "None", is no clip in either form)
        t_wh = b.op("Min", [t_wh, b.const("clip", clip, f32)], "clipped_wh")
    size = exp_nodes(b, t_wh, exp_form, "exp_wh")
    half = b.op("Mul", [b.op("Mul", [size, a_wh], "size_wh"), b.const("half", 0.5, f32)],
                "half_wh")
    return b.op("Concat", [b.op("Sub", [center, half], "corner_lo"),
                           b.op("Add", [center, half], "corner_hi")], "decoded",
                outputs=[out], axis=2)


def ssd_head_nodes(box_preds: str, cls_preds: str, ids: str, scores: str, bboxes: str, *,
                   anchors: np.ndarray, stds: tuple[float, float, float, float],
                   clip: float | None, num_classes: int, nms_thresh: float, nms_topk: int,
                   post_nms: int, class_thresh: float = GLUON_VALID,
                   decoder: DecoderForm = "box_decode", exact_exp: bool = True,
                   iou_rule: IouRule = "gt", prefix: str = "ssd_head/",
                   max_k: int | None = TRT_TOPK_MAX) -> Subgraph:
    """GluonCV SSD's post-processing from its raw predictions to its three outputs.

    box_preds [B, A, 4] and cls_preds [B, A, C+1] (float32) are the predictions exactly as
    `SSD.hybrid_forward` passes them to `bbox_decoder` and `softmax`: the concatenated,
    reshaped predictor outputs in GluonCV's anchor order (in the source graph: the Reshape
    after the box predictors' Concat, and the softmax's input; `source_tensors`).

    anchors: the decoder's anchor input, float32 [1, A, 4] or [A, 4] center form (cx, cy, w, h)
    in input pixels, as GluonCV's anchor generators output them (after their optional clip) and
    concatenate them (`anchors_from_spec` rebuilds it from ssdconv's HeadSpec). stds, clip: the
    decoder's (`DecoderSpec.stds`; clip None, which every head ssdconv recognises has).
    num_classes: C, foreground. nms_thresh, nms_topk, post_nms: GluonCV's (`NmsSpec`'s
    nms_threshold, topk, post_nms). class_thresh: the MultiPerClassDecoder threshold
    (`NmsSpec.class_thresh`, GluonCV's 0.01). decoder: "box_decode" or "minimal_opset", the form
    the model's decoder has (`ssd.match.decoder_form`); it picks the Exp (`exp_nodes`);
    exact_exp=False writes a plain float32 Exp instead (no float64 ops). iou_rule, max_k: as
    `box_nms_nodes`.

    Writes `ids` [B, P, 1], `scores` [B, P, 1], `bboxes` [B, P, 4], P = post_nms (or C*A),
    -1 padded, as GluonCV's outputs. Intermediate tensors worth reading: `prefix + "softmax"`
    [B, A, C+1] and `prefix + "decoded"` [B, A, 4] (the boxes before NMS).
    """
    b = _Builder(prefix)
    a = center_anchors(anchors)
    num_anchors = a.shape[0]
    i64, f32 = np.int64, np.float32
    boxes = decode_nodes(b, box_preds, a, stds, clip,
                         decoder if exact_exp else None, prefix + "decoded")
    fg = _foreground(b, cls_preds, num_classes)
    class_major = b.op("Reshape", [b.op("Transpose", [fg], "class_major_3d", perm=[0, 2, 1]),
                                   b.const("flat", [0, -1], i64)], "class_major")
    valid = f32(GLUON_VALID)
    if f32(class_thresh) != valid:
        if nms_runs(nms_thresh, nms_topk):
            # both filters: MultiPerClassDecoder's (score 0 at or below class_thresh), then
            # box_nms's valid_thresh 0.01 (0 never passes it)
            keep = b.op("Greater", [class_major, b.const("class_thresh", class_thresh, f32)],
                        "class_mask")
            class_major = b.op("Where", [keep, class_major, b.const("zero", 0.0, f32)],
                               "class_masked")
        else:  # no box_nms: the raw rows carry MultiPerClassDecoder's mask only
            valid = f32(class_thresh)
    sub = ssd_box_nms_nodes(class_major, boxes, ids, scores, bboxes, num_anchors=num_anchors,
                            num_classes=num_classes, overlap_thresh=nms_thresh, topk=nms_topk,
                            post_nms=gluon_post_nms(nms_thresh, post_nms),
                            valid_thresh=float(valid), iou_rule=iou_rule,
                            prefix=prefix + "nms/", max_k=max_k)
    return Subgraph(b.nodes + sub.nodes, b.inits + sub.initializers)


def _foreground(b: _Builder, cls_preds: str, num_classes: int) -> str:
    """GluonCV's softmax over the C+1 logits, background dropped: [B, A, C]."""
    i64 = np.int64
    prob = b.op("Softmax", [cls_preds], "softmax", axis=-1)
    return b.op("Slice", [prob, b.const("c1", [1], i64), b.const("cn", [num_classes + 1], i64),
                          b.const("axis2", [2], i64)], "foreground")


def ssd_pre_nms_nodes(box_preds: str, cls_preds: str, boxes: str, scores: str, *,
                      anchors: np.ndarray, stds: tuple[float, float, float, float],
                      clip: float | None, num_classes: int, class_thresh: float = GLUON_VALID,
                      decoder: DecoderForm = "box_decode", exact_exp: bool = True,
                      prefix: str = "ssd_head/") -> Subgraph:
    """GluonCV SSD's post-processing up to, not including, box_nms (`--onnx-nms none`: for
    runtimes without NonMaxSuppression/TopK), from the same decode and softmax subgraphs as
    `ssd_head_nodes`, so its values are the ones that head feeds its NMS.

    Writes `boxes` [B, A, 4] (the decoder's corners, input pixels) and `scores` [B, A, C]: the
    foreground softmax after MultiPerClassDecoder's mask (`score > class_thresh`, else 0).
    GluonCV's box_nms input rows are then, class-major, row c*A + a = [c if scores[a, c] > 0
    else -1, scores[a, c], boxes[a]]: `scores.transpose(0, 2, 1).reshape(B, -1, 1)` beside
    `tile(boxes, (1, C, 1))`. Arguments as `ssd_head_nodes`."""
    b = _Builder(prefix)
    a = center_anchors(anchors)
    decode_nodes(b, box_preds, a, stds, clip, decoder if exact_exp else None, boxes)
    fg = _foreground(b, cls_preds, num_classes)
    f32 = np.float32
    keep = b.op("Greater", [fg, b.const("class_thresh", class_thresh, f32)], "class_mask")
    b.op("Where", [keep, fg, b.const("zero", 0.0, f32)], "class_masked", outputs=[scores])
    return Subgraph(b.nodes, b.inits)


# ---- from ssdconv's recognised head ------------------------------------------------------


def anchors_from_spec(spec) -> np.ndarray:
    """The decoder's anchors [1, A, 4] float32 from a HeadSpec: its levels hold, per level, the
    float32 anchors MXNet computed (as float64), in GluonCV's order; concatenated, they are the
    decoder's anchor input exactly."""
    a = np.concatenate([lv.anchors.reshape(-1, 4) for lv in spec.levels], axis=0)
    return center_anchors(a)[None]


def source_tensors(head, graph) -> dict[str, tuple[int, int]]:
    """The source graph's (node index, output) of box_preds and cls_preds for an SsdHead: the
    Reshape(0, -1, 4) after the box predictors' Concat, and the softmax's input."""
    m = head.match
    loc = [u for u in graph.consumers(m.loc_concat.index) if u.op in ("Reshape", "reshape")]
    if len(loc) != 1:
        raise ValueError(f"the box predictions' Concat {m.loc_concat.name} feeds "
                         f"{len(loc)} Reshapes, not one")
    return {"box_preds": (loc[0].index, 0), "cls_preds": tuple(m.conf_softmax.inputs[0][:2])}


def head_kwargs(head_or_spec, graph=None, decoder: DecoderForm | None = None) -> dict:
    """`ssd_head_nodes`'s keyword arguments from ssdconv's recognised head (an SsdHead or its
    HeadSpec). The decoder form comes from `decoder`, else from `graph`
    (`ssd.match.decoder_form`); one of them is needed (the spec does not record it)."""
    spec = getattr(head_or_spec, "spec", head_or_spec)
    if decoder is None:
        if graph is None:
            raise ValueError("pass the source graph or decoder='box_decode'/'minimal_opset': "
                             "the two decoder forms round exp differently")
        from ...ssd.match import decoder_form

        decoder = decoder_form(graph)
    nms = spec.nms
    return {"anchors": anchors_from_spec(spec), "stds": tuple(spec.decoder.stds),
            # ssdconv's matcher refuses decoders that clip; a spec that records one is honoured
            "clip": getattr(spec.decoder, "clip", None), "num_classes": spec.num_classes,
            "nms_thresh": nms.nms_threshold, "nms_topk": nms.topk, "post_nms": nms.post_nms,
            "class_thresh": nms.class_thresh, "decoder": decoder}


def ssd_head_from_spec(head_or_spec, box_preds: str, cls_preds: str, ids: str, scores: str,
                       bboxes: str, *, graph=None, decoder: DecoderForm | None = None,
                       **options) -> Subgraph:
    """`ssd_head_nodes` for ssdconv's recognised head: the caller passes the head (or spec), the
    five tensor names, the source graph (or the decoder form), and any of exact_exp, iou_rule,
    prefix, max_k."""
    return ssd_head_nodes(box_preds, cls_preds, ids, scores, bboxes,
                          **head_kwargs(head_or_spec, graph, decoder), **options)


def ssd_head_model(*, anchors: np.ndarray, num_classes: int, batch: int = 1,
                   debug_outputs: bool = False, **kwargs) -> onnx.ModelProto:
    """A standalone, checked model of `ssd_head_nodes`: inputs "box_preds" [batch, A, 4] and
    "cls_preds" [batch, A, C+1], outputs "ids", "scores", "bboxes" (and, with debug_outputs,
    "softmax" and "decoded", the probabilities and the boxes before NMS)."""
    a = center_anchors(anchors).shape[0]
    prefix = kwargs.get("prefix", "ssd_head/")
    sub = ssd_head_nodes("box_preds", "cls_preds", "ids", "scores", "bboxes", anchors=anchors,
                         num_classes=num_classes, **kwargs)
    p = _out_rows(a * num_classes, gluon_post_nms(kwargs["nms_thresh"], kwargs["post_nms"]))
    outputs = {"ids": [batch, p, 1], "scores": [batch, p, 1], "bboxes": [batch, p, 4]}
    if debug_outputs:
        sub = Subgraph(sub.nodes + [
            onnx.helper.make_node("Identity", [prefix + "softmax"], ["softmax"]),
            onnx.helper.make_node("Identity", [prefix + "decoded"], ["decoded"])],
            sub.initializers)
        outputs.update(softmax=[batch, a, num_classes + 1], decoded=[batch, a, 4])
    return _model(sub, {"box_preds": [batch, a, 4], "cls_preds": [batch, a, num_classes + 1]},
                  outputs, "ssd_head")
