"""ncnn's own Yolov3DetectionOutput, run by the `ncnn` package, against `ssdconv.yolo.native`.

Each test writes a tiny ncnn model through ssdconv's writer (three Input blobs shaped like a
YOLOv3 head at strides 32, 16, 8, feeding one Yolov3DetectionOutput) and runs it on seeded
random predictions. The wheel runs one build of the layer per CPU; the model reproduces the one
this CPU runs (`ncnn_fuses_multiply_add`). Measured with the 1.0.20261020 wheel, natively on an
AVX-512 CPU and under `qemu-x86_64 -cpu Haswell`, `SandyBridge` and `Nehalem` (`make
test-isa`): bit for bit, counts, order, labels, scores and boxes, on a 128-pixel input with 4
classes and at GluonCV's 416 (grids 13, 26, 52) with 20 classes, tied scores included; so the
tolerance is 0. The model's choices each fail these tests when undone (measured): the other
build's rounding (fused or not) differs by 1-2 ulps (6e-8) in ~7% of rows
(`test_the_other_builds_rounding_differs`), numpy's float32 exp by up to 4.8e-7, the source's
literal divisions at 416 by up to 4.8e-7 in 94% of rows, a stable sort instead of ncnn's
quicksort reorders ties, `>` instead of `>=` drops the threshold's own box.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from test_ncnn_backend import load_net, make_graph, to_mat

from ssdconv.backend.caffe.lower import lower_for_caffe
from ssdconv.backend.ncnn.emit import write_ncnn
from ssdconv.errors import UnsupportedError, UserError
from ssdconv.ir.graph import Node
from ssdconv.ir.validate import validate
from ssdconv.yolo.native import (
    _fma32,
    check_native_input,
    native_detections,
    native_params,
    ncnn_fuses_multiply_add,
)

CLASSES = 4
# GluonCV's YOLOv3 anchors and strides, in its level order (stride 32 first).
ANCHORS = [[(116.0, 90.0), (156.0, 198.0), (373.0, 326.0)],
           [(30.0, 61.0), (62.0, 45.0), (59.0, 119.0)],
           [(10.0, 13.0), (16.0, 30.0), (33.0, 23.0)]]
STRIDES = [32.0, 16.0, 8.0]
INPUT = 128  # grids 4, 8, 16: every division by a grid or input size is exact
GLUON_INPUT = 416  # grids 13, 26, 52: ncnn's reciprocals and fused corners show
BLOBS = ["pred32", "pred16", "pred8"]
#: Largest difference measured between ncnn's rows and the reference: none at all.
TOL = 0.0


def grids(size: int) -> list[int]:
    return [size // int(s) for s in STRIDES]


def head_graph(threshold: float, nms: float = 0.45, classes: int = CLASSES, size: int = INPUT):
    attrs = native_params(ANCHORS, STRIDES, classes, threshold, nms)
    node = Node("detections", "Yolov3DetectionOutput", list(BLOBS), ["detections"], attrs)
    inputs = {b: (1, 3 * (5 + classes), g, g) for b, g in zip(BLOBS, grids(size))}
    return make_graph(inputs, [node], ["detections"]), attrs


def predictions(seed: int, objectness: float = -2.0, tied: bool = False,
                classes: int = CLASSES, size: int = INPUT) -> list[np.ndarray]:
    """Raw prediction blobs; objectness pushed negative so tens of boxes pass, class logits
    spread so every class wins somewhere. `tied` rounds obj and class logits to halves: many
    boxes then share a score while their boxes differ, and class logits tie."""
    rng = np.random.default_rng(seed)
    out = []
    for g in grids(size):
        x = rng.standard_normal((1, 3 * (5 + classes), g, g)).astype(np.float32)
        per_box = x.reshape(3, 5 + classes, g, g)
        per_box[:, 4] += objectness
        per_box[:, 5:] *= 2.0
        if tied:
            per_box[:, 4:] = np.round(per_box[:, 4:] * 2.0) / 2.0
        out.append(x)
    return out


def run_ncnn(graph, feeds: list[np.ndarray], tmp: Path) -> tuple[int, int, np.ndarray]:
    """(extract's return code, the Mat's w, rows as (n, 6)); an empty Mat is never turned into
    an array (np.array on it crashes the process)."""
    net = load_net(write_ncnn(graph, tmp, "yolo"))
    ex = net.create_extractor()
    for blob, value in zip(BLOBS, feeds):
        assert ex.input(blob, to_mat(value)) == 0
    rc, mat = ex.extract("detections")
    rows = np.array(mat).reshape(-1, 6).copy() if mat.w else np.zeros((0, 6), np.float32)
    return rc, mat.w, rows


def reference(feeds, attrs, size: int = INPUT, fused: bool | None = None) -> np.ndarray:
    return native_detections(feeds, input_w=size, input_h=size, fused=fused, **attrs)


def assert_same_rows(got: np.ndarray, ref: np.ndarray) -> None:
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got[:, 0], ref[:, 0])
    diff = np.abs(got[:, 1:].astype(np.float64) - ref[:, 1:])
    assert diff[:, 0].max(initial=0.0) <= TOL  # scores
    assert diff[:, 1:].max(initial=0.0) <= TOL  # boxes


@pytest.mark.parametrize("seed, threshold, rows", [(0, 0.3, (80, 120)), (1, 0.3, (70, 110)),
                                                   (2, 0.05, (500, 650))])
def test_native_layer_equals_the_reference(tmp_path, seed, threshold, rows):
    graph, attrs = head_graph(threshold)
    feeds = predictions(seed)
    rc, _, got = run_ncnn(graph, feeds, tmp_path)
    ref = reference(feeds, attrs)
    assert rc == 0 and rows[0] <= len(ref) <= rows[1]
    assert set(np.unique(ref[:, 0])) == {1.0, 2.0, 3.0, 4.0}  # labels 1-based, all found
    assert np.all(np.diff(ref[:, 1]) <= 0)
    assert_same_rows(got, ref)


@pytest.mark.parametrize("classes, tied", [(4, False), (20, False), (20, True)])
def test_gluoncv_sized_grids_and_many_classes(tmp_path, classes, tied):
    """13/26/52 grids, where ncnn's -ffast-math arithmetic (reciprocals, fused corners) differs
    from the source's divisions (measured: 1109 of 1181 rows off by up to 4.8e-7 when modelled
    literally); 20 classes run the AVX2 gather argmax over groups of 8."""
    graph, attrs = head_graph(0.5, classes=classes, size=GLUON_INPUT)
    feeds = predictions(7, objectness=-1.0, tied=tied, classes=classes, size=GLUON_INPUT)
    _, _, got = run_ncnn(graph, feeds, tmp_path)
    ref = reference(feeds, attrs, GLUON_INPUT)
    assert len(ref) > 300 and len(np.unique(ref[:, 0])) == classes
    assert_same_rows(got, ref)


def test_the_other_builds_rounding_differs(tmp_path):
    """The build choice is load-bearing: modelled with the other build's rounding (fused
    multiply-adds where this CPU's build has none, or the reverse), scores differ by one or two
    ulps (the denominator's one, doubled by the reciprocal): measured 43 of 584 rows here."""
    graph, attrs = head_graph(0.05)
    feeds = predictions(2)
    _, _, got = run_ncnn(graph, feeds, tmp_path)
    other = reference(feeds, attrs, fused=not ncnn_fuses_multiply_add())
    assert got.shape == other.shape
    ulps = np.abs(got[:, 1].view(np.int32) - other[:, 1].view(np.int32))
    assert 1 <= ulps.max() <= 2 and np.count_nonzero(ulps) > len(got) // 20


def test_tied_scores_come_out_in_ncnn_quicksort_order(tmp_path):
    graph, attrs = head_graph(0.3)
    feeds = predictions(3, tied=True)
    _, _, got = run_ncnn(graph, feeds, tmp_path)
    ref = reference(feeds, attrs)
    scores = ref[:, 1]
    assert len(np.unique(scores)) < len(scores) / 2  # ties everywhere
    # Within some tie the boxes differ, so the order is visible in the output.
    tie = [np.unique(ref[scores == s, 2:], axis=0).shape[0] for s in np.unique(scores)]
    assert max(tie) > 1
    assert_same_rows(got, ref)


def test_threshold_is_inclusive(tmp_path):
    loose, attrs = head_graph(0.3)
    feeds = predictions(4)
    lowest = float(reference(feeds, attrs)[-1, 1])  # a float32 score ncnn keeps at >= it
    strict, attrs = head_graph(lowest)
    _, _, got = run_ncnn(strict, feeds, tmp_path)
    ref = reference(feeds, attrs)
    assert got[-1, 1] == np.float32(lowest) and ref[-1, 1] == np.float32(lowest)
    assert_same_rows(got, ref)


def test_nothing_passing_gives_an_empty_mat(tmp_path):
    graph, attrs = head_graph(0.999)
    feeds = predictions(5)
    rc, width, _ = run_ncnn(graph, feeds, tmp_path)
    assert rc == 0 and width == 0
    assert reference(feeds, attrs).shape == (0, 6)


def test_params_and_param_line(tmp_path):
    graph, attrs = head_graph(0.3)
    assert attrs["num_box"] == 3 and attrs["num_class"] == CLASSES
    assert attrs["biases"][:4] == (116.0, 90.0, 156.0, 198.0) and len(attrs["biases"]) == 18
    assert attrs["mask"] == tuple(range(9)) and attrs["anchors_scale"] == (32.0, 16.0, 8.0)
    assert graph.shapes["detections"] == (1, 3 * sum(g * g for g in grids(INPUT)), 6)
    line = Path(write_ncnn(graph, tmp_path, "yolo")["param"]).read_text().splitlines()[-1]
    fields = line.split()
    assert fields[:8] == ["Yolov3DetectionOutput", "detections", "3", "1", *BLOBS, "detections"]
    assert fields[8:12] == ["0=4", "1=3", "2=0.3", "3=0.45"]
    # mask as floats: written as ints, ncnn would read their bit patterns (all anchor 0)
    assert fields[13] == "-23305=9,0.0,1.0,2.0,3.0,4.0,5.0,6.0,7.0,8.0"
    assert fields[14] == "-23306=3,32.0,16.0,8.0"


def test_unequal_anchor_counts_are_a_user_error():
    anchors = [ANCHORS[0], ANCHORS[1][:2], ANCHORS[2]]
    with pytest.raises(UserError) as info:
        native_params(anchors, STRIDES, CLASSES, 0.01, 0.45)
    assert str(info.value) == (
        "ncnn's Yolov3DetectionOutput needs the same number of anchors on every level; level 1 "
        "has 2, level 0 has 3: convert without --yolo-head native (the exact head handles it)")


def test_grid_not_matching_the_input_is_a_user_error():
    check_native_input([(13, 13), (26, 26), (52, 52)], STRIDES, 416, 416)
    with pytest.raises(UserError, match=r"level 0's boxes by stride 32 x its 10x10 grid = "
                                        r"320x320, not the 300x300 input"):
        check_native_input([(10, 10), (19, 19), (38, 38)], STRIDES, 300, 300)


def test_caffe_backend_refuses_the_native_head():
    graph, _ = head_graph(0.3)
    with pytest.raises(UnsupportedError, match="ncnn's Yolov3DetectionOutput has no caffe-ssd "
                                               "layer; convert the caffe model without "
                                               "--yolo-head native"):
        lower_for_caffe(graph)


def test_contract_and_shape_rule_catch_inconsistent_nodes():
    graph, attrs = head_graph(0.3)
    node = graph.nodes[-1]
    node.attrs = {**attrs, "mask": attrs["mask"][:8]}
    with pytest.raises(RuntimeError, match="mask"):
        validate(graph)
    node.attrs = {**attrs, "num_class": CLASSES + 1}
    with pytest.raises(ValueError, match="predictions of 3 boxes and 5 classes"):
        validate(graph)


def _correctly_rounded(exact: Fraction, r: np.float32) -> bool:
    """r is the float32 nearest to `exact` (ties to an even mantissa)."""
    d = abs(exact - Fraction(float(r)))
    ups = [np.nextafter(r, np.float32(s)) for s in (np.inf, -np.inf)]
    near = [abs(exact - Fraction(float(u))) for u in ups]
    if d < min(near):
        return True
    return d == min(near) and int(r.view(np.uint32)) % 2 == 0


def test_fma32_rounds_once():
    # 24929 * (673 / 2**24) is exactly 1 + 2**-24, halfway between two float32 values; a
    # 2**-60 nudge decides the rounding, which float64 arithmetic alone loses.
    a, b = np.float32(24929.0), np.float32(673.0 / 2**24)
    nudges = [np.float32(2.0**-60), np.float32(-(2.0**-60)), np.float32(0.0)]
    got = [_fma32(a, b, c) for c in nudges]
    assert got == [np.float32(1 + 2**-23), np.float32(1.0), np.float32(1.0)]
    assert got[0] != np.float32(np.float64(a) * np.float64(b) + np.float64(nudges[0]))
    rng = np.random.default_rng(6)
    x, y, z = (rng.standard_normal(2000).astype(np.float32) for _ in range(3))
    r = _fma32(x, y, z)
    for xi, yi, zi, ri in zip(x, y, z, r):
        assert _correctly_rounded(Fraction(float(xi)) * Fraction(float(yi)) +
                                  Fraction(float(zi)), ri)


def test_ncnn_backend_refuses_a_stride_that_truncates(tmp_path):
    graph, attrs = head_graph(0.3)
    graph.nodes[-1].attrs = {**attrs, "anchors_scale": (32.0, 16.0, 8.1)}  # 8.1 x 16 = 129.6
    with pytest.raises(UnsupportedError, match="stride 8.1 times the 16x16 grid of pred8 is "
                                               "not a whole input size; ncnn truncates it"):
        write_ncnn(graph, tmp_path, "yolo")
    assert not list(tmp_path.iterdir())
