"""The ONNX box_nms subgraph against real MXNet (`mx.nd.contrib.box_nms`, called as GluonCV calls
it, then GluonCV's post_nms slice), bit for bit and row for row.

onnxruntime CPU must equal MXNet in every case. OpenVINO CPU is measured per NMS threshold
variant: with iou_rule="ge" (nextafter threshold) it equals MXNet in every case, score ties
included (the subgraph never lets a TopK break a tie); with the plain threshold it differs
exactly where an IoU equals the threshold, because its NMS suppresses on `>=`: it then equals
MXNet run at the float32 just below the threshold.
"""

from __future__ import annotations

import functools

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov
import pytest
from onnx import TensorProto, helper

from ssdconv.backend.onnx import box_nms as bn

mx = pytest.importorskip("mxnet")

VALID = 0.01  # GluonCV's valid_thresh and MultiPerClassDecoder threshold
F32 = np.float32


def up(t: float) -> float:
    return float(np.nextafter(F32(t), F32(np.inf)))


def down(t: float) -> float:
    return float(np.nextafter(F32(t), F32(-np.inf)))


def gluoncv_nms(rows: np.ndarray, t: float, topk: int, post: int) -> np.ndarray:
    """GluonCV's SSD/YOLOv3 post-processing after the rows are built, in MXNet; [B, P, 6]."""
    r = mx.nd.array(rows, dtype="float32")
    if 0 < t < 1:
        r = mx.nd.contrib.box_nms(r, overlap_thresh=t, valid_thresh=VALID, topk=topk,
                                  id_index=0, score_index=1, coord_start=2,
                                  force_suppress=False)
    if post > 0:
        r = r.slice_axis(axis=1, begin=0, end=post)
    return r.asnumpy()


def run_ort(model: onnx.ModelProto, feed: dict) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.concatenate(sess.run(["ids", "scores", "bboxes"], feed), -1)


@functools.cache
def ov_core() -> ov.Core:
    return ov.Core()


def run_ov(model: onnx.ModelProto, feed: dict) -> np.ndarray:
    core = ov_core()
    # f32: this CPU has AVX512_BF16, and OpenVINO would otherwise run bf16
    compiled = core.compile_model(core.read_model(model.SerializeToString(), b""), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32"})
    res = compiled(feed)
    return np.concatenate([res[compiled.output(n)] for n in ("ids", "scores", "bboxes")], -1)


def differing(a: np.ndarray, b: np.ndarray) -> int:
    """Rows that differ in any bit (shapes must agree)."""
    assert a.shape == b.shape, (a.shape, b.shape)
    return int((a.view(np.int32) != b.view(np.int32)).any(-1).sum())


# ---- data -----------------------------------------------------------------------------------

NEAR = np.array([VALID, up(VALID), down(VALID), 0.0, 0.0100001, 0.0099999], F32)


def make_scores(rs: np.random.RandomState, shape: tuple, kind: str) -> np.ndarray:
    if kind == "cont":  # mostly small, as softmax outputs are; about 30% are <= 0.01
        s = rs.rand(*shape) ** 4
    elif kind == "near":  # a third of them on or around the 0.01 threshold
        s = np.where(rs.rand(*shape) < 0.33, rs.choice(NEAR, shape), rs.rand(*shape) ** 2)
    elif kind == "tied":  # five values only
        s = rs.randint(0, 5, shape) / 4
    elif kind == "sat":  # YOLOv3: sigmoid saturates to 1.0f, so products tie
        s = np.where(rs.rand(*shape) < 0.3, 1.0, rs.rand(*shape) ** 3)
    else:
        raise ValueError(kind)
    return s.astype(F32)


def make_boxes(rs: np.random.RandomState, a: int, kind: str) -> np.ndarray:
    """[1, A, 4] corner boxes. "grid": a 1/8 grid, with zero-size and duplicate boxes; "nest":
    on a 1/8 grid from two origins only, so nested pairs often overlap at exactly 1/2 or 9/20
    (IoU == 0.5 and == f32(0.45) in float32 arithmetic)."""
    if kind == "cont":
        xy, wh = rs.rand(1, a, 2), rs.rand(1, a, 2) * 0.5
    elif kind == "grid":
        xy, wh = rs.randint(0, 12, (1, a, 2)) / 8, rs.randint(0, 12, (1, a, 2)) / 8
    elif kind == "nest":
        xy, wh = rs.randint(0, 2, (1, a, 2)) / 8, rs.randint(1, 7, (1, a, 2)) / 8
    else:
        raise ValueError(kind)
    boxes = np.concatenate([xy, xy + wh], -1).astype(F32)
    if kind != "cont":
        dup = rs.rand(a) < 0.1
        boxes[0, dup] = boxes[0, rs.randint(0, a, dup.sum())]
    return boxes


def ssd_rows(scores: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """GluonCV SSD's rows from scores [B, C, A] and boxes [B, A, 4]: MultiPerClassDecoder's mask
    (cls -1, score 0 where score <= 0.01), rows class-major, row = c*A + a."""
    b, c, a = scores.shape
    mask = scores > F32(VALID)
    cls = np.where(mask, np.arange(c, dtype=F32)[None, :, None], F32(-1))
    sc = np.where(mask, scores, F32(0))
    rows = np.concatenate([cls[..., None], sc[..., None],
                           np.broadcast_to(boxes[:, None], (b, c, a, 4))], -1)
    return rows.reshape(b, c * a, 6).astype(F32)


def raw_rows(rs: np.random.RandomState, c: int, n: int, only_near: bool = False) -> np.ndarray:
    """Rows in no detector's structure: cls -1 rows WITH high scores (box_nms must drop them by
    `cls != -1`), scores around 0.01 with a real class (only_near: nothing else), boxes
    anywhere."""
    cls = rs.randint(-1, c, (1, n, 1)).astype(F32)
    s = rs.choice(NEAR, (1, n, 1)) if only_near else make_scores(rs, (1, n, 1), "near")
    xy = rs.rand(1, n, 2) * 4
    return np.concatenate([cls, s, xy, xy + rs.rand(1, n, 2)], -1).astype(F32)


def build_cases() -> list[dict]:
    """Deterministic cases: (rows, C, t, topk, post_nms) with the facts of each."""
    cases = []
    rs = np.random.RandomState(20260611)
    families = [("cont", "cont"), ("cont", "near"), ("grid", "cont"), ("nest", "cont"),
                ("cont", "tied"), ("cont", "sat"), ("nest", "tied"), ("grid", "sat")]
    for seed in range(3):
        for boxes_kind, scores_kind in families:
            c = int(rs.randint(2, 21))
            a = int(rs.randint(20, 190))
            n = c * a
            rows = ssd_rows(make_scores(rs, (1, c, a), scores_kind), make_boxes(rs, a, boxes_kind))
            n_valid = int((rows[0, :, 1] > F32(VALID)).sum())
            # topk below and above the number of valid rows; post_nms below and above K
            topk = [-1, max(1, n_valid // 3), 400][seed]
            if topk < 0 and n > bn.TRT_TOPK_MAX:
                topk = n_valid + 7
            k = n if topk < 0 else min(n, topk)
            post = [min(n, k + 13), 100 if n >= 100 else -1, -1][(seed + len(cases)) % 3]
            cases.append(dict(name=f"ssd-{boxes_kind}-{scores_kind}-{seed}", rows=rows, c=c,
                              t=[0.45, 0.5][len(cases) % 2], topk=topk, post=post))
    for i, n in enumerate((300, 1500)):
        cases.append(dict(name=f"raw-{n}", rows=raw_rows(rs, 7, n), c=7, t=0.5,
                          topk=[-1, 100][i], post=[50, -1][i]))
    cases.append(dict(name="raw-near", rows=raw_rows(rs, 5, 400, only_near=True), c=5, t=0.45,
                      topk=-1, post=-1))
    empty = ssd_rows(np.full((1, 4, 50), VALID, F32), make_boxes(rs, 50, "grid"))
    cases.append(dict(name="nothing-valid", rows=empty, c=4, t=0.45, topk=400, post=100))
    return cases


CASES = build_cases()


@functools.cache
def reference(i: int, t_shift: str = "") -> np.ndarray:
    """MXNet's result for CASES[i]; t_shift "down"/"up" runs it at the float32 next to t."""
    case = CASES[i]
    t = {"": case["t"], "down": down(case["t"]), "up": up(case["t"])}[t_shift]
    return gluoncv_nms(case["rows"], t, case["topk"], case["post"])


@functools.cache
def model(i: int, iou_rule: str) -> onnx.ModelProto:
    case = CASES[i]
    return bn.box_nms_model(num_rows=case["rows"].shape[1], num_classes=case["c"],
                            overlap_thresh=case["t"], topk=case["topk"],
                            post_nms=case["post"], iou_rule=iou_rule)


def pairwise_iou(b: np.ndarray) -> np.ndarray:
    """MXNet's corner IoU of all pairs, in float32, vectorised (same operations as bn._iou)."""
    def side(lo, hi):
        w = np.minimum(b[:, None, hi], b[None, :, hi]) - np.maximum(b[:, None, lo], b[None, :, lo])
        return np.where(w > 0, w, F32(0))
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    area = np.where((w < 0) | (h < 0), F32(0), w * h)
    inter = side(0, 2) * side(1, 3)
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / ((area[:, None] + area[None, :]) - inter)


# ---- onnxruntime ----------------------------------------------------------------------------

def test_cases_cover_what_they_claim():
    """The data has the hard parts: IoU exactly at the threshold, score ties (1.0f among them),
    scores exactly 0.01, cls -1 rows, topk below the valid count, post_nms above K."""
    at_t = ties = at_valid = topk_cut = post_pad = 0
    for i, case in enumerate(CASES):
        rows, n = case["rows"][0], case["rows"].shape[1]
        valid = rows[:, 1] > F32(VALID)
        s = rows[valid, 1]
        ties += len(s) - len(np.unique(s))
        at_valid += int((rows[:, 1] == F32(VALID)).sum())
        k = n if case["topk"] < 0 else min(n, case["topk"])
        topk_cut += k < valid.sum()
        post_pad += case["post"] > k or (case["post"] <= 0 and n > k)
        kept = reference(i)[0]
        kept = kept[kept[:, 0] >= 0]
        same = kept[:, None, 0] == kept[None, :, 0]
        at_t += int((np.triu(same, 1) & (pairwise_iou(kept[:, 2:]) == F32(case["t"]))).sum())
    assert at_t >= 20 and ties >= 1000 and at_valid >= 100 and topk_cut >= 5 and post_pad >= 5
    assert (CASES[-1]["rows"][0, :, 0] == -1).all()  # nothing valid
    raw = CASES[-3]["rows"][0]
    assert ((raw[:, 0] == -1) & (raw[:, 1] > 0.5)).any() and not (raw[:, 0] == -1).all()
    near = CASES[-2]["rows"][0]  # all of it output: a 0.01 row with a class must not be
    assert ((near[:, 1] == F32(VALID)) & (near[:, 0] >= 0)).sum() > 10


@pytest.mark.parametrize("i", range(len(CASES)), ids=[c["name"] for c in CASES])
def test_onnxruntime_equals_mxnet(i):
    """Plain threshold: MXNet's rows bit for bit. nextafter threshold: exactly box_nms at the
    next float32 up (ORT suppresses on `>`), which on this data is MXNet's result too."""
    feed = {"rows": CASES[i]["rows"]}
    want = reference(i)
    got = run_ort(model(i, "gt"), feed)
    assert differing(got, want) == 0
    assert differing(run_ort(model(i, "ge"), feed), reference(i, "up")) == 0
    if CASES[i]["name"] == "nothing-valid":
        assert (got == -1).all()


def test_onnxruntime_ge_model_is_off_by_one_ulp():
    """The nextafter model keeps, on a `>` runtime, a box at IoU == t+ that MXNet drops: no
    single threshold is exact on both kinds of runtime, hence the parameter."""
    t = 0.5
    box = np.array([0.3682684302330017, 0, 1.2634629011154175, 1], F32)  # found by a search
    assert bn._iou(np.array([0, 0, 1, 1], F32), box) == F32(up(t))
    rows = np.array([[[0, .9, 0, 0, 1, 1], [0, .8, *box]]], F32)
    want = gluoncv_nms(rows, t, -1, -1)
    assert (want[0, 1] == -1).all()  # MXNet: up(t) > t, suppressed
    gt = bn.box_nms_model(num_rows=2, num_classes=1, overlap_thresh=t, topk=-1, post_nms=-1)
    ge = bn.box_nms_model(num_rows=2, num_classes=1, overlap_thresh=t, topk=-1, post_nms=-1,
                          iou_rule="ge")
    assert differing(run_ort(gt, {"rows": rows}), want) == 0
    assert differing(run_ort(ge, {"rows": rows}), want) == 1


@pytest.mark.parametrize("t,topk", [(0.0, 400), (1.0, 400), (-1.0, -1), (0.45, 0)])
def test_no_nms_returns_raw_rows(t, topk):
    """GluonCV skips box_nms for nms_thresh outside (0, 1); box_nms with topk 0 copies its
    input: both give the raw rows, unsorted, -1/0 rows included, sliced to post_nms."""
    i = 1
    rows = CASES[i]["rows"]
    for post in (-1, 37):
        want = gluoncv_nms(rows, t, topk, post)
        m = bn.box_nms_model(num_rows=rows.shape[1], num_classes=CASES[i]["c"],
                             overlap_thresh=t, topk=topk, post_nms=post)
        assert not any(n.op_type == "NonMaxSuppression" for n in m.graph.node)
        assert differing(run_ort(m, {"rows": rows}), want) == 0
        assert differing(run_ov(m, {"rows": rows}), want) == 0


def test_batch_of_two():
    """Batches are independent, as in MXNet (which flattens leading dims into a batch)."""
    rows = np.concatenate([CASES[4]["rows"], CASES[4]["rows"][:, ::-1]], 0)
    rows = np.ascontiguousarray(rows)
    m = bn.box_nms_model(num_rows=rows.shape[1], num_classes=CASES[4]["c"], overlap_thresh=0.45,
                         topk=50, post_nms=60, batch=2)
    assert differing(run_ort(m, {"rows": rows}), gluoncv_nms(rows, 0.45, 50, 60)) == 0


def test_two_subgraphs_share_a_graph_and_limits_hold():
    """Prefixes keep two subgraphs apart; constants TensorRT wants as initializers are; K and
    post_nms beyond the limits are refused."""
    case = CASES[3]
    n, c = case["rows"].shape[1], case["c"]
    subs = [bn.box_nms_nodes("rows", f"ids{j}", f"scores{j}", f"bboxes{j}", num_rows=n,
                             num_classes=c, overlap_thresh=t, topk=k, post_nms=30,
                             prefix=f"head{j}/")
            for j, (t, k) in enumerate([(0.45, 400), (0.5, 20)])]
    inits = [x for s in subs for x in s.initializers]
    graph = helper.make_graph(
        [x for s in subs for x in s.nodes], "two",
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT, [1, n, 6])],
        [helper.make_tensor_value_info(f"{o}{j}", TensorProto.FLOAT, [1, 30, w])
         for j in range(2) for o, w in (("ids", 1), ("scores", 1), ("bboxes", 4))],
        initializer=inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", bn.OPSET)])
    onnx.checker.check_model(m, full_check=True)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"rows": case["rows"]})
    for j, (t, k) in enumerate([(0.45, 400), (0.5, 20)]):
        assert differing(np.concatenate(out[3 * j:3 * j + 3], -1),
                         gluoncv_nms(case["rows"], t, k, 30)) == 0
    init_names = {x.name for x in inits}
    for node in subs[0].nodes:
        assert node.name.startswith("head0/")
        if node.op_type == "NonMaxSuppression":
            assert set(node.input[2:]) <= init_names
            max_out = next(x for x in inits if x.name == node.input[2])
            assert onnx.numpy_helper.to_array(max_out) >= 400
        if node.op_type == "TopK":
            k_init = next(x for x in inits if x.name == node.input[1])
            assert onnx.numpy_helper.to_array(k_init)[0] <= bn.TRT_TOPK_MAX
    kw = dict(num_classes=2, overlap_thresh=0.45, post_nms=-1)
    with pytest.raises(ValueError, match="TensorRT"):
        bn.box_nms_nodes("r", "i", "s", "b", num_rows=4000, topk=-1, **kw)
    bn.box_nms_nodes("r", "i", "s", "b", num_rows=4000, topk=-1, max_k=None, **kw)
    with pytest.raises(ValueError, match="slice_axis"):
        bn.box_nms_nodes("r", "i", "s", "b", num_rows=40, topk=-1, **dict(kw, post_nms=41))


# ---- the SSD shortcut ------------------------------------------------------------------------

def gluoncv_ssd(softmax: np.ndarray, boxes: np.ndarray, t: float, topk: int,
                post: int) -> np.ndarray:
    """GluonCV SSD.hybrid_forward from the class softmax [B, A, C+1] and boxes [B, A, 4] on:
    its MultiPerClassDecoder, its per-class concat, box_nms, slice."""
    from gluoncv.nn.coder import MultiPerClassDecoder

    cls_ids, scores = MultiPerClassDecoder(softmax.shape[-1], thresh=VALID)(
        mx.nd.array(softmax))
    bb = mx.nd.array(boxes)
    rows = mx.nd.concat(*[mx.nd.concat(cls_ids.slice_axis(axis=-1, begin=i, end=i + 1),
                                       scores.slice_axis(axis=-1, begin=i, end=i + 1), bb,
                                       dim=-1)
                          for i in range(softmax.shape[-1] - 1)], dim=1)
    return gluoncv_nms(rows.asnumpy(), t, topk, post)


@pytest.mark.parametrize("seed,kind,t,topk,post", [
    (0, "cont", 0.45, 400, 100), (1, "tied", 0.5, 60, 80), (2, "near", 0.45, -1, -1),
    (3, "sat", 0.5, 400, 100), (4, "cont", 1.0, 400, 100), (5, "cont", 0.45, 0, -1)])
def test_ssd_shortcut_equals_gluoncv(seed, kind, t, topk, post):
    """Class-major scores + boxes, no C*A*6 rows: GluonCV's own decoder and concat in MXNet
    are the reference; ORT (plain threshold) and OpenVINO (nextafter) equal it bit for bit."""
    rs = np.random.RandomState(seed)
    c, a = int(rs.randint(2, 21)), int(rs.randint(30, 150))
    fg = make_scores(rs, (1, a, c), kind)
    softmax = np.concatenate([rs.rand(1, a, 1).astype(F32), fg], -1)
    boxes = make_boxes(rs, a, "nest")
    want = gluoncv_ssd(softmax, boxes, t, topk, post)
    feed = {"class_scores": np.ascontiguousarray(fg.transpose(0, 2, 1).reshape(1, c * a)),
            "boxes": boxes}
    kw = dict(num_anchors=a, num_classes=c, overlap_thresh=t, topk=topk, post_nms=post)
    assert differing(run_ort(bn.ssd_box_nms_model(**kw), feed), want) == 0
    assert differing(run_ov(bn.ssd_box_nms_model(iou_rule="ge", **kw), feed), want) == 0


# ---- OpenVINO --------------------------------------------------------------------------------

def test_openvino_nextafter_equals_mxnet_everywhere():
    """iou_rule="ge": OpenVINO CPU equals MXNet in every case, score ties included."""
    bad = {CASES[i]["name"]: differing(run_ov(model(i, "ge"), {"rows": CASES[i]["rows"]}),
                                       reference(i))
           for i in range(len(CASES))}
    assert not any(bad.values()), bad


def test_openvino_plain_threshold_differs_only_at_iou_equal_threshold():
    """iou_rule="gt" on OpenVINO CPU: suppression at IoU == t (its `>=`). Every case equals
    MXNet run at the float32 just below t, some differ from MXNet at t, and
    explain_differences puts every differing row down to IoU == t or its consequences (rows
    kept or dropped because of it, rows shifted or pushed past post_nms), never to a tie."""
    differ, reasons = [], {}
    for i, case in enumerate(CASES):
        got = run_ov(model(i, "gt"), {"rows": case["rows"]})
        assert differing(got, reference(i, "down")) == 0, case["name"]
        if differing(got, reference(i)):
            differ.append(case["name"])
            for _, why in bn.explain_differences(got[0], reference(i)[0], case["t"]):
                reasons[why] = reasons.get(why, 0) + 1
    assert differ and all("nest" in n or "grid" in n for n in differ), differ
    assert reasons.get("iou==t", 0) > 0 and set(reasons) <= {"iou==t", "follows", "moved", "cut"}, \
        reasons


def test_openvino_nms_suppresses_at_equal_iou_and_explain_says_so():
    """facts §11.3 on the subgraph: IoU([0,0,1,1], [0,0,1,2]) == 0.5 exactly."""
    rows = np.array([[[0, .9, 0, 0, 1, 1], [0, .8, 5, 5, 6, 6], [0, .7, 0, 0, 1, 2]]], F32)
    want = gluoncv_nms(rows, 0.5, -1, -1)
    kw = dict(num_rows=3, num_classes=1, overlap_thresh=0.5, topk=-1, post_nms=-1)
    got = run_ov(bn.box_nms_model(**kw), {"rows": rows})
    assert (want[0, 2] == rows[0, 2]).all() and (got[0, 2] == -1).all()
    assert bn.explain_differences(got[0], want[0], 0.5) == [(2, "iou==t")]
    assert differing(run_ov(bn.box_nms_model(iou_rule="ge", **kw), {"rows": rows}), want) == 0


def test_openvino_topk_is_not_stable():
    """Why the subgraph never lets TopK order equal scores (a deviation from facts §11.5 step 3):
    OpenVINO's TopK, from ONNX, puts equal values in another order than ONNX's lower index
    first, which onnxruntime follows. If this ever passes stably in OpenVINO, it fails here."""
    scores = np.random.RandomState(0).randint(0, 4, (1, 2000)).astype(F32)
    k = 400
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1, largest=1, sorted=1)
    graph = helper.make_graph(
        [node], "topk", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2000])],
        [helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, k]),
         helper.make_tensor_value_info("i", TensorProto.INT64, [1, k])],
        initializer=[onnx.numpy_helper.from_array(np.array([k], np.int64), "k")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", bn.OPSET)])
    stable = np.argsort(-scores[0], kind="stable")[:k]
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    assert (sess.run(["i"], {"x": scores})[0][0] == stable).all()
    core = ov_core()
    compiled = core.compile_model(core.read_model(m.SerializeToString(), b""), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled({"x": scores})[compiled.output("i")][0]
    assert (scores[0, got] == scores[0, stable]).all()  # the values agree
    assert (got != stable).any()  # the order of equal values does not
