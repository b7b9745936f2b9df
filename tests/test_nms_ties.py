"""Float32 ties at NMS are reported, not failed; every other unmatched detection still fails.

The comparison is pure, so its rules are shown on hand-made detections (squares whose IoU is
known in closed form); then on a real conversion whose scores tie exactly, where ncnn's
unstable qsort keeps other boxes of a tie than GluonCV's stable sort.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from ssdconv.convert import Options, build_ir, convert
from ssdconv.models import load_model
from ssdconv.verify import tolerances as tol
from ssdconv.verify.check import format_report, run_check
from ssdconv.verify.compare import match_detections

SIZE = 300  # image side, px
T = 0.45  # the NMS threshold of the hand-made detections
SIDE = 100.0


def square(x: float, label: int = 0, score: float = 0.9) -> tuple:
    """A SIDE-px square at (x, 50): two of them shifted by d overlap at (SIDE-d)/(SIDE+d)."""
    return label, score, [x, 50.0, x + SIDE, 50.0 + SIDE]


def shift_for(iou: float) -> float:
    """The x shift between two squares that overlap at `iou`."""
    return SIDE * (1 - iou) / (1 + iou)


def _dets(items, scale: float = 1.0) -> dict:
    return {"det_labels": np.array([i[0] for i in items], int),
            "det_scores": np.array([i[1] for i in items], np.float32),
            "det_boxes": np.array([i[2] for i in items], np.float64).reshape(-1, 4) / scale}


def match(gluon_kept, runtime_kept, candidates, nms_threshold: float | None = T):
    """Gluon's kept detections (px) and NMS candidates against a runtime's (normalised)."""
    g = dict(_dets(gluon_kept), candidates=_dets(candidates))
    return match_detections(g, _dets(runtime_kept, SIZE), SIZE, SIZE, 0.1, nms_threshold)


def test_equal_score_swap_is_explained():
    a, b = square(0), square(shift_for(0.6))  # equal scores, IoU 0.6: NMS keeps either
    det = match([a], [b], [a, b])
    assert det.ok and det.matched == 0
    assert [e[2] for e in det.explained_gluon + det.explained_runtime] == ["tie", "tie"]
    assert det.explained_gluon[0][1][2] == pytest.approx(b[2], abs=0.05)  # partner: b
    assert not match([a], [b], [a, b], nms_threshold=None).ok  # without the head's threshold


def test_iou_at_the_threshold_is_explained_and_just_below_it_fails():
    a = square(0)
    at = square(shift_for(T + tol.IOU_EPS / 5), score=0.8)  # kept by Gluon's rounding
    det = match([a, at], [a], [a, at])
    assert det.ok and [e[2] for e in det.explained_gluon] == ["threshold"]
    below = square(shift_for(T - 10 * tol.IOU_EPS), score=0.8)  # the runtime suppressed at 0.44
    det = match([a, below], [a], [a, below])
    assert not det.ok and len(det.unmatched_gluon) == 1 and not det.explained_gluon


def test_cascade_is_explained():
    # a, b tie; c overlaps b only. Gluon keeps a (drops b), so c survives; the runtime keeps b,
    # which drops both a and c.
    d = shift_for(0.6)
    a, b, c = square(0), square(d), square(2 * d, score=0.8)
    det = match([a, c], [b], [a, b, c])
    assert det.ok
    why = {e[0][1]: e[2] for e in det.explained_gluon}
    assert why == {0.9: "tie", 0.8: "cascade"} and len(det.explained_runtime) == 1


def test_box_shifted_by_5_px_fails():
    a = square(0)
    shifted = square(5.0)  # same score, IoU 0.9 with a: no Gluon candidate
    det = match([a], [shifted], [a])
    assert not det.ok
    assert (len(det.unmatched_gluon), len(det.unmatched_runtime)) == (1, 1)
    assert not det.explained_gluon and not det.explained_runtime


def test_missing_isolated_box_fails():
    a, far = square(0), square(190.0, label=1)
    det = match([a, far], [a], [a, far])
    assert not det.ok and det.matched == 1
    assert det.unmatched_gluon == [(1, 0.9, far[2])] and not det.explained_gluon


def test_two_boxes_kept_above_the_threshold_fail():
    # what a runtime with a too high NMS threshold does, even within a group of equal scores
    a, b = square(0), square(shift_for(0.6))
    det = match([a], [a, b], [a, b])
    assert not det.ok and len(det.unmatched_runtime) == 1 and not det.explained_runtime


@pytest.fixture(scope="module")
def tied(tmp_path_factory):
    """A seeded SSD whose level-2 class predictor has zero weights and class 0 of its first
    anchor on top: the 25 cells of that level score exactly alike, with overlapping boxes."""
    model = load_model("ssd_300_mobilenet0.25_voc", seed=0)
    _, head, _ = build_ir(model, Options(targets=("caffe",)).checked())
    conf = head.match.conf_convs[2]
    weight, bias = (model.graph.nodes[conf.inputs[k][0]].name for k in (1, 2))
    model.graph.params[weight] = np.zeros_like(model.graph.params[weight])
    model.graph.params[bias][1] = model.graph.params[bias][0] + 2.0  # above its background
    return convert(model, tmp_path_factory.mktemp("tied"), Options(targets=("caffe", "ncnn")))


def _counts(report, runtime: str) -> tuple[int, int]:
    dets = [r.det for r in report.results if r.runtime == runtime]
    return (sum(len(d.unmatched_gluon) + len(d.unmatched_runtime) for d in dets),
            sum(len(d.explained_gluon) + len(d.explained_runtime) for d in dets))


def test_exact_ties_on_a_real_conversion_are_reported_not_failed(tied, sample_images):
    report = run_check(tied, sample_images[:3])
    text = format_report(report)
    assert report.ok and "verdict: PASS" in text, text
    assert _counts(report, "opencv") == (0, 0)  # OpenCV sorts stably, as GluonCV does
    unmatched, explained = _counts(report, "ncnn")
    assert unmatched == 0 and explained >= 5, text
    assert "unmatched explained by NMS ties (equal scores or IoU at the 0.45 threshold)" in text


def test_a_wrong_nms_threshold_still_fails_among_ties(tied, sample_images, tmp_path):
    param = open(tied.files["param"]).read()
    assert " 1=0.45 " in param
    bad = tmp_path / "bad.param"
    bad.write_text(param.replace(" 1=0.45 ", " 1=0.5 "))
    broken = copy.copy(tied)
    broken.files = dict(tied.files, param=str(bad))
    report = run_check(broken, sample_images[:3], runtimes=("ncnn",))
    unmatched, _ = _counts(report, "ncnn")
    assert not report.ok and unmatched >= 10, format_report(report)


def rows(gluon_kept, runtime_kept, candidates):
    """compare_rows on hand-made rows (px), Gluon's candidates given."""
    from ssdconv.verify.compare import compare_rows

    g = dict(_dets(gluon_kept), candidates=_dets(candidates))
    return compare_rows(g, _dets(runtime_kept, SIZE), SIZE, SIZE, T)


def test_a_row_pushed_past_the_cap_by_a_tie_above_is_explained():
    # capped at 3 rows. a and b tie at IoU 0.6: Gluon keeps a; the runtime keeps b, which no
    # longer suppresses c (IoU < T with b): the runtime keeps b, c above Gluon's last row z
    d = shift_for(0.6)
    a, b = square(0, score=0.9), square(d, score=0.9)
    c = square(-d * 1.2, score=0.85)  # overlaps a above T, b below it
    z = square(200.0, label=1, score=0.5)
    g_rows, r_rows = [a, z, square(200.0, label=2, score=0.4)], [b, c, z]
    cands = [a, b, c, z, g_rows[2]]
    det = rows(g_rows, r_rows, cands)
    assert det.ok, (det.unmatched_gluon, det.unmatched_runtime)
    assert "cap" in [e[2] for e in det.explained_gluon]


def test_a_missing_row_above_the_others_last_is_not_a_cap():
    a, z = square(0), square(200.0, label=1, score=0.5)
    lost = square(200.0, label=2, score=0.7)  # scores above the runtime's last row
    det = rows([a, lost, z], [a, z, square(200.0, label=3, score=0.3)], [a, lost, z])
    assert not det.ok
