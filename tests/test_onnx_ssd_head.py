"""The ONNX SSD head (softmax, box decoder, class decoder, box_nms) against real GluonCV/MXNet.

Seeded zoo SSDs run in MXNet (float32, as users run them) on sample photos; their raw
predictions (GluonCV's box_preds and cls_preds, the tensors `hybrid_forward` hands to the
decoder and the softmax) feed the ONNX head in onnxruntime (iou_rule "gt") and OpenVINO
("ge"), and its outputs are compared with GluonCV's own ids/scores/bboxes row for row.

Measured here (AVX-512 CPU; MXNet 1.9.1, onnxruntime 1.31.1, OpenVINO 2026.4.1), 5 models x 2
photos, 100 detections each:
* decoded boxes (before NMS): bit for bit in both runtimes, both decoder forms;
* softmax: OpenVINO bit for bit for the 21-class models (its Softmax is a oneDNN kernel, as
  MXNet's), within 4 ulps for the 81-class one; onnxruntime within 7 ulps (relative 5.2e-7,
  40% of the probabilities equal). SCORE_ULPS allows 16 (relative <= 1.9e-6);
* NMS: given a runtime's own scores and boxes, its rows equal MXNet's box_nms bit for bit
  (`gluon_nms`), so every difference from GluonCV's rows comes from those score ulps;
* rows: ids and boxes identical and scores within 4 ulps, in every case (OpenVINO: every bit
  where its softmax is exact). A row that differs otherwise must be named a tie by
  `row_differences` (scores within the tolerance of each other or of the 0.01 threshold);
  none of these cases needed one.
"""

from __future__ import annotations

import functools

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov
import pytest

from ssdconv import shipped
from ssdconv.backend.onnx import ssd_head as sh
from ssdconv.backend.onnx.box_nms import OPSET, _iou
from ssdconv.ssd.match import decoder_form

mx = pytest.importorskip("mxnet")

F32 = np.float32
MEAN = (123.675, 116.28, 103.53)  # GluonCV's preprocessing (RGB, pixels)
STD = (58.395, 57.12, 57.375)
SCORE_ULPS = 16  # softmax vs MXNet's (oneDNN): max 7 ulps measured (5.2e-7 relative)
VALID = F32(0.01)

# (zoo name, minimal_opset decoder): 300 and 512 inputs, VOC and COCO, Lite anchors, VGG
MODELS = [("ssd_300_mobilenet0.25_voc", False), ("ssd_300_mobilenet1.0_lite_coco", False),
          ("ssd_300_vgg16_atrous_voc", False), ("ssd_512_mobilenet1.0_voc", False),
          ("ssd_300_mobilenet0.25_voc", True)]
MODEL_IDS = [n + ("-minimal_opset" if m else "") for n, m in MODELS]
PHOTOS = (0, 2)  # astronaut, cat
RUNTIMES = ("ort", "ov")


# ---- GluonCV in MXNet ---------------------------------------------------------------------


@functools.cache
def seeded(name: str, minimal: bool):
    """(graph, head) of a seeded zoo SSD; minimal: built with GluonCV's minimal_opset decoder,
    as its pretrained zoo models are."""
    import warnings

    from ssdconv.family import recognise
    from ssdconv.models import _constants, load_model
    from ssdconv.mxnet.load import load_block, zoo_net
    from ssdconv.mxnet.seeded import seed_params

    if not minimal:
        graph = load_model(name, seed=0).graph
    else:
        net = zoo_net(name)
        net.bbox_decoder._minimal_opset = True  # before the first forward (test_models.py)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net.initialize()
        size = int(name.split("_")[1])
        graph = load_block(net, (size, size), name="minimal").graph
        seed_params(graph, 0, _constants(net))
    return graph, recognise(graph)


@functools.cache
def gluon(name: str, minimal: bool, photo: int) -> dict:
    """GluonCV's tensors for one photo: box_preds, cls_preds, softmax, decoded (the boxes in
    box_nms's rows), anchors (the decoder's anchor input) and the final ids/scores/bboxes."""
    from ssdconv.mxnet.run import run_outputs
    from ssdconv.ssd.match import _decoder_spec
    from ssdconv.verify.images import load_rgb

    graph, head = seeded(name, minimal)
    h, w = graph.image_size
    rgb = load_rgb(str(shipped.photos()[photo]), h, w).astype(np.float64)
    x = ((rgb - MEAN) / STD).transpose(2, 0, 1)[None].astype(F32)
    src = sh.source_tensors(head, graph)
    nms = next(n for n in graph.nodes if n.op == "_contrib_box_nms")
    _, anchors = _decoder_spec(graph, graph.nodes[src["box_preds"][0]])
    wanted = [src["box_preds"], src["cls_preds"], (head.match.conf_softmax.index, 0),
              tuple(nms.inputs[0][:2]), (anchors.index, 0)] + list(graph.heads)
    outs, _ = run_outputs(graph, wanted, x)
    a = outs[0].shape[1]
    return {"box_preds": outs[0], "cls_preds": outs[1], "softmax": outs[2],
            "decoded": np.ascontiguousarray(outs[3][:, :a, 2:6]), "anchors": outs[4],
            "rows": np.concatenate(outs[5:8], -1)}


def gluon_nms(softmax: np.ndarray, boxes: np.ndarray, *, nms_thresh=0.45, nms_topk=400,
              post_nms=100, class_thresh=0.01) -> np.ndarray:
    """GluonCV's SSD tail after the softmax and the decoder, with GluonCV's own blocks and
    MXNet's ops (`SSD.hybrid_forward`): rows [B, P, 6]."""
    from gluoncv.nn.coder import MultiPerClassDecoder

    c = softmax.shape[-1] - 1
    cls_ids, scores = MultiPerClassDecoder(c + 1, thresh=class_thresh)(mx.nd.array(softmax))
    bboxes = mx.nd.array(boxes)
    result = mx.nd.concat(*[mx.nd.concat(cls_ids.slice_axis(axis=-1, begin=i, end=i + 1),
                                         scores.slice_axis(axis=-1, begin=i, end=i + 1),
                                         bboxes, dim=-1) for i in range(c)], dim=1)
    if 0 < nms_thresh < 1:
        result = mx.nd.contrib.box_nms(result, overlap_thresh=nms_thresh, topk=nms_topk,
                                       valid_thresh=0.01, id_index=0, score_index=1,
                                       coord_start=2, force_suppress=False)
        if post_nms > 0:
            result = result.slice_axis(axis=1, begin=0, end=post_nms)
    return result.asnumpy()


def gluon_decode(box_preds, anchors, stds, clip, minimal: bool) -> np.ndarray:
    """GluonCV's NormalizedBoxCenterDecoder, either form, imperatively."""
    from gluoncv.nn.coder import NormalizedBoxCenterDecoder

    dec = NormalizedBoxCenterDecoder(stds, clip=clip, minimal_opset=minimal)
    return dec(mx.nd.array(box_preds), mx.nd.array(anchors)).asnumpy()


# ---- the ONNX head in the runtimes --------------------------------------------------------


@functools.cache
def ov_core() -> ov.Core:
    return ov.Core()


def run(model: onnx.ModelProto, runtime: str, feed: dict) -> dict:
    if runtime == "ort":
        sess = ort.InferenceSession(model.SerializeToString(),
                                    providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, feed)))
    core = ov_core()
    # f32: this CPU has AVX512_BF16, and OpenVINO would otherwise run bf16
    compiled = core.compile_model(core.read_model(model.SerializeToString(), b""), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32"})
    res = compiled(feed)
    return {o.any_name: res[o] for o in compiled.outputs}


def rows_of(out: dict) -> np.ndarray:
    return np.concatenate([out["ids"], out["scores"], out["bboxes"]], -1)


@functools.cache
def head_model(name: str, minimal: bool, runtime: str, batch: int = 1) -> onnx.ModelProto:
    graph, head = seeded(name, minimal)
    return sh.ssd_head_model(**sh.head_kwargs(head, graph), batch=batch,
                             iou_rule="gt" if runtime == "ort" else "ge", debug_outputs=True)


@functools.cache
def onnx_run(name: str, minimal: bool, runtime: str, photo: int) -> dict:
    g = gluon(name, minimal, photo)
    return run(head_model(name, minimal, runtime), runtime,
               {"box_preds": g["box_preds"], "cls_preds": g["cls_preds"]})


# ---- comparing rows -----------------------------------------------------------------------


def ulps(a, b) -> np.ndarray:
    """|a - b| in float32 ulps (same-sign values; the probabilities here are >= 0)."""
    return np.abs(np.asarray(a, F32).view(np.int32).astype(np.int64)
                  - np.asarray(b, F32).view(np.int32).astype(np.int64))


def row_differences(got: np.ndarray, want: np.ndarray, candidates: np.ndarray,
                    tol: int = SCORE_ULPS, overlap_thresh: float = 0.45) -> list[tuple[int, str]]:
    """Why a runtime's rows `got` [P, 6] differ from GluonCV's `want`, when their scores may
    differ by up to `tol` ulps and everything else is exact (ids, boxes, NMS given the scores).
    `candidates` [A, 4] are the decoded boxes both sides chose from (bit-identical, as
    `test_decoded_boxes_are_gluons_bit_for_bit` shows): a differing row whose box is not one of
    them is "unexplained" whatever else holds.

    Rows are the same detection when class and box bits agree; a position is fine when both
    sides hold the same detection with scores within tol. Every other position gets a reason:
    - "order" (a tie): a detection on both sides, ranked differently among the common ones,
      whose score is within 2*tol of every score it swapped places with; or a lone detection
      that a same-class detection lone on the other side, scoring within 2*tol, overlaps
      above the threshold (which of the two NMS kept flipped with their order);
    - "threshold" (a tie): a lone detection scoring within tol of 0.01;
    - "moved": a common detection in the same rank among the common ones, shifted by lone
      rows above it; "cut": a lone row pushed past the last of the other side's full P rows
      (scoring within 2*tol of that last row or below it); both are consequences of a tie;
    - "unexplained": a real difference.
    """
    got, want = np.asarray(got, F32), np.asarray(want, F32)
    t = F32(overlap_thresh)

    def real(rows):
        return [r for r in rows if not (r == -1).all()]

    def key(r):
        return r[0].tobytes() + r[2:6].tobytes()

    boxes = {b.tobytes() for b in np.asarray(candidates, F32).reshape(-1, 4)}
    sides = {"got": real(got), "want": real(want)}
    keys = {s: [key(r) for r in rows] for s, rows in sides.items()}
    other = {"got": "want", "want": "got"}
    common = {s: [k for k in keys[s] if k in keys[other[s]]] for s in sides}

    def close(a, b, n):
        return ulps(a, b) <= n

    def judge_common(side: str, r) -> str:
        k = key(r)
        i, j = common[side].index(k), common[other[side]].index(k)
        if i == j:
            return "moved"
        lo, hi = min(i, j), max(i, j)
        swapped = [sides[s][keys[s].index(c)][1] for s in sides for c in common[s][lo:hi + 1]]
        return "order" if all(close(r[1], s, 2 * tol) for s in swapped) else "unexplained"

    def judge_lone(side: str, r) -> str:
        if close(r[1], VALID, tol):
            return "threshold"
        rivals = [y for y in sides[other[side]] if key(y) not in keys[side]
                  and y[0] == r[0] and close(y[1], r[1], 2 * tol)]
        if any(_iou(r[2:6], y[2:6]) > t for y in rivals):
            return "order"
        rest = sides[other[side]]
        if len(rest) == len(got) and (r[1] <= rest[-1][1] or close(r[1], rest[-1][1], 2 * tol)):
            return "cut"
        return "unexplained"

    out = []
    for i in range(len(got)):
        g, w = got[i], want[i]
        if key(g) == key(w) and close(g[1], w[1], tol) and g[0] == w[0]:
            continue
        reasons = []
        for side, r in (("got", g), ("want", w)):
            if (r == -1).all():
                continue
            if r[2:6].tobytes() not in boxes:
                reasons.append("unexplained")
                continue
            in_other = key(r) in keys[other[side]]
            reasons.append(judge_common(side, r) if in_other else judge_lone(side, r))
        bad = [x for x in reasons if x == "unexplained"]
        out.append((i, bad[0] if bad else (reasons[0] if reasons else "unexplained")))
    return out


TIES = {"order", "threshold", "moved", "cut"}


def assert_rows_match(got: np.ndarray, want: np.ndarray, candidates: np.ndarray,
                      what: str) -> dict:
    """Row for row: ids and boxes identical, scores within SCORE_ULPS; any other difference
    must be a tie. Returns measurements."""
    diffs = row_differences(got, want, candidates)
    assert all(reason in TIES for _, reason in diffs), f"{what}: {diffs}"
    same = [i for i in range(len(got)) if i not in {d[0] for d in diffs}]
    g, w = got[same], want[same]
    assert np.array_equal(g[:, 0], w[:, 0]) and np.array_equal(g[:, 2:], w[:, 2:]), what
    score_ulps = int(ulps(g[:, 1], w[:, 1]).max(initial=0))
    assert score_ulps <= SCORE_ULPS, what
    return {"differing_rows": len(diffs), "score_ulps": score_ulps}


# ---- tests: the whole head on real models -------------------------------------------------


@pytest.mark.parametrize("name,minimal", MODELS, ids=MODEL_IDS)
def test_graph_and_spec_give_the_heads_inputs(name, minimal):
    """The spec's anchors are the decoder's anchor input bit for bit; the decoder form and the
    settings come from the graph; and GluonCV's blocks, run imperatively on the graph's own
    softmax and boxes (`gluon_nms`, the reference of the other tests), give the graph's rows."""
    graph, head = seeded(name, minimal)
    g = gluon(name, minimal, PHOTOS[0])
    kw = sh.head_kwargs(head, graph)
    a = g["box_preds"].shape[1]
    assert kw["anchors"].shape == (1, a, 4) and kw["anchors"].dtype == F32
    assert np.array_equal(kw["anchors"].view(np.int32), g["anchors"].reshape(1, a, 4)
                          .view(np.int32))
    assert decoder_form(graph) == ("minimal_opset" if minimal else "box_decode")
    assert kw["decoder"] == decoder_form(graph)
    assert kw["stds"] == (0.1, 0.1, 0.2, 0.2) and kw["clip"] is None
    assert (kw["nms_thresh"], kw["nms_topk"], kw["post_nms"]) == (0.45, 400, 100)
    assert kw["num_classes"] == g["cls_preds"].shape[2] - 1 == (80 if "coco" in name else 20)
    assert np.array_equal(gluon_nms(g["softmax"], g["decoded"]), g["rows"])
    assert np.array_equal(gluon_decode(g["box_preds"], g["anchors"].reshape(1, a, 4),
                                       kw["stds"], None, minimal), g["decoded"])


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("name,minimal", MODELS, ids=MODEL_IDS)
def test_decoded_boxes_are_gluons_bit_for_bit(name, minimal, runtime):
    for photo in PHOTOS:
        got = onnx_run(name, minimal, runtime, photo)["decoded"]
        want = gluon(name, minimal, photo)["decoded"]
        assert got.shape == want.shape
        assert np.array_equal(got.view(np.int32), want.view(np.int32)), (
            f"{int((got != want).sum())} coordinates differ")


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("name,minimal", MODELS, ids=MODEL_IDS)
def test_rows_are_gluons_row_for_row(name, minimal, runtime):
    """ids, scores, bboxes against GluonCV's outputs. The runtime's NMS is first shown exact on
    its own scores and boxes, so what remains is the softmax's ulps."""
    for photo in PHOTOS:
        g, out = gluon(name, minimal, photo), onnx_run(name, minimal, runtime, photo)
        got = rows_of(out)
        assert got.shape == g["rows"].shape
        assert np.array_equal(got.view(np.int32),
                              gluon_nms(out["softmax"], out["decoded"]).view(np.int32))
        prob_ulps = int(ulps(out["softmax"], g["softmax"]).max())
        assert prob_ulps <= SCORE_ULPS
        assert (g["rows"][0, :, 0] >= 0).sum() > 10  # real detections to compare
        if prob_ulps == 0:  # OpenVINO here: MXNet's own softmax kernel, so every bit
            assert np.array_equal(got.view(np.int32), g["rows"].view(np.int32))
        assert_rows_match(got[0], g["rows"][0], g["decoded"], f"{name} {runtime} photo {photo}")


def test_batch_of_two_is_two_single_runs():
    name, minimal = MODELS[0]
    g0, g1 = (gluon(name, minimal, p) for p in PHOTOS)
    feed = {k: np.concatenate([g0[k], g1[k]]) for k in ("box_preds", "cls_preds")}
    out = rows_of(run(head_model(name, minimal, "ort", batch=2), "ort", feed))
    for b, p in enumerate(PHOTOS):
        single = rows_of(onnx_run(name, minimal, "ort", p))[0]
        assert np.array_equal(out[b].view(np.int32), single.view(np.int32))


# ---- tests: other settings, against GluonCV's blocks --------------------------------------


@pytest.mark.parametrize("settings", [
    {"class_thresh": 0.05},  # MultiPerClassDecoder's threshold above box_nms's 0.01
    {"class_thresh": 0.005},  # and below it
    {"nms_thresh": 1.0},  # GluonCV skips box_nms: raw rows, cls -1 / score 0 included
    {"nms_thresh": 0.0, "class_thresh": 0.05},
    {"nms_thresh": 0.6, "nms_topk": 50, "post_nms": 30},
    {"nms_topk": 2000, "post_nms": -1},  # every row box_nms returns
], ids=["cls0.05", "cls0.005", "no_nms", "no_nms_cls0.05", "t0.6_topk50_post30", "all_rows"])
def test_settings_against_gluoncv(settings):
    name, minimal = MODELS[0]
    graph, head = seeded(name, minimal)
    g = gluon(name, minimal, PHOTOS[0])
    kw = dict(sh.head_kwargs(head, graph), debug_outputs=True)
    kw.update(settings)
    out = run(sh.ssd_head_model(**kw), "ort",
              {"box_preds": g["box_preds"], "cls_preds": g["cls_preds"]})
    ref = settings
    got = rows_of(out)
    assert np.array_equal(got.view(np.int32),
                          gluon_nms(out["softmax"], out["decoded"], **ref).view(np.int32))
    want = gluon_nms(g["softmax"], g["decoded"], **ref)
    assert got.shape == want.shape
    if settings.get("nms_thresh", 0.45) in (0.0, 1.0):  # raw rows: compare every row as is
        mask = (want[0, :, 0] >= 0) == (got[0, :, 0] >= 0)
        assert mask.all(), "a score crossed the class threshold"
        assert ulps(got[0, :, 1], want[0, :, 1]).max() <= SCORE_ULPS
        assert np.array_equal(got[0, :, [0, 2, 3, 4, 5]], want[0, :, [0, 2, 3, 4, 5]])
    else:
        assert_rows_match(got[0], want[0], g["decoded"], str(settings))


# ---- tests: the decoder and its exp -------------------------------------------------------


def decoder_model(anchors, stds, clip, form) -> onnx.ModelProto:
    from ssdconv.backend.onnx.box_nms import Subgraph, _Builder, _model

    b = _Builder("dec/")
    sh.decode_nodes(b, "box_preds", anchors, stds, clip, form, "decoded")
    a = anchors.shape[-2]
    return _model(Subgraph(b.nodes, b.inits), {"box_preds": [1, a, 4]},
                  {"decoded": [1, a, 4]}, "decoder")


@functools.cache
def wide_predictions() -> tuple[np.ndarray, np.ndarray]:
    """Real anchors (ssd_300_mobilenet0.25_voc) twice, with offsets far wider than a trained
    net's, so the size terms reach the clip, large exps and every rounding case."""
    g = gluon(*MODELS[0], PHOTOS[0])
    a = g["anchors"].reshape(1, -1, 4)
    rs = np.random.RandomState(7)
    p = np.concatenate([g["box_preds"], rs.normal(0, 6, g["box_preds"].shape)], 1).astype(F32)
    return p, np.concatenate([a, a], 1)


ODD_STDS = (0.13, 0.07, 0.3, 0.21)
CLIP = 4.135166556742356  # GluonCV's usual bbox clip, log(1000/16)


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("stds,clip", [((0.1, 0.1, 0.2, 0.2), None), (ODD_STDS, CLIP),
                                       (ODD_STDS, None)], ids=["gluon", "odd_clip", "odd"])
@pytest.mark.parametrize("minimal", [False, True], ids=["box_decode", "minimal_opset"])
def test_decoder_equals_mxnets_and_mutants_do_not(minimal, stds, clip, runtime):
    """Both of GluonCV's decoder forms, with and without clip, against MXNet on wide offsets;
    the same decoder with the stds in another order, without the clip, or with the other
    form's exp (or the runtime's Exp) must differ."""
    p, a = wide_predictions()
    want = gluon_decode(p, a, stds, clip, minimal)
    form = "minimal_opset" if minimal else "box_decode"

    def differing(stds_, clip_, form_) -> int:
        got = run(decoder_model(a, stds_, clip_, form_), runtime, {"box_preds": p})["decoded"]
        return int((got.view(np.int32) != want.view(np.int32)).sum())

    assert differing(stds, clip, form) == 0
    assert differing(stds[::-1], clip, form) > 1000
    assert differing((stds[0], stds[2], stds[1], stds[3]), clip, form) > 1000
    if clip is not None:  # about 1% of the size terms reach it
        assert differing(stds, None, form) > 10
    other = "box_decode" if minimal else "minimal_opset"
    assert differing(stds, clip, other) > 0  # glibc's expf is not the correctly rounded exp
    assert differing(stds, clip, None) > 0


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("minimal", [False, True], ids=["box_decode", "minimal_opset"])
def test_decoder_keeps_nan_and_inf(minimal, runtime):
    a = np.array([[[100, 100, 50, 50]] * 4], F32)
    p = np.array([[[np.nan, 0, 0, 0], [0, 0, np.inf, 0], [1, 1, np.nan, -np.inf],
                   [-np.inf, 0, 1e30, -1e30]]], F32)
    form = "minimal_opset" if minimal else "box_decode"
    got = run(decoder_model(a, (0.1, 0.1, 0.2, 0.2), None, form), runtime,
              {"box_preds": p})["decoded"]
    want = gluon_decode(p, a, (0.1, 0.1, 0.2, 0.2), None, minimal)
    assert np.array_equal(got, want, equal_nan=True), (got, want)


@functools.cache
def exp_arguments() -> np.ndarray:
    rs = np.random.RandomState(11)
    special = [0.0, -0.0, np.nan, np.inf, -np.inf, 88.72283, 88.72284, -87.33655, -87.33654,
               -103.972, -103.973, -104.5, 89.5, 1e-30, -1e-30, 1e-7, -1e-7, 1.0, -1.0]
    return np.concatenate([rs.normal(0, 1, 400_000), rs.normal(0, 0.1, 100_000),
                           rs.uniform(-110, 95, 100_000), special]).astype(F32)


def mxnet_exp(x: np.ndarray, form: str) -> np.ndarray:
    """MXNet's exp as each decoder computes it: `F.exp` (minimal_opset) and box_decode's own,
    read from box_decode with std 1 and anchor (0, 0, w, w): x2 = 0 + exp(x) * w * 0.5, exact
    for w = 2 (w = 1 and doubling where exp(x) * 2 would overflow)."""
    if form == "minimal_opset":
        return mx.nd.exp(mx.nd.array(x)).asnumpy()
    z = np.zeros_like(x)
    data = mx.nd.array(np.stack([z, z, x, x], -1)[None])

    def decode(w: float) -> np.ndarray:
        anchors = np.broadcast_to(np.array([0, 0, w, w], F32), data.shape)
        return mx.nd.contrib.box_decode(data, mx.nd.array(anchors), 1.0, 1.0, 1.0, 1.0,
                                        clip=-1, format="center").asnumpy()[0, :, 2]

    return np.where(x > 80, decode(1.0) * F32(2), decode(2.0))


def exp_model(form, size) -> onnx.ModelProto:
    from ssdconv.backend.onnx.box_nms import Subgraph, _Builder, _model

    b = _Builder("exp/")
    sh.exp_nodes(b, "x", form, "y")
    b.nodes[-1].output[0] = "y"
    return _model(Subgraph(b.nodes, b.inits), {"x": [size]}, {"y": [size]}, "exp")


@pytest.mark.parametrize("form", ["box_decode", "minimal_opset"])
def test_exp_is_mxnets(form):
    """The float-float exp equals its numpy twin in both runtimes and MXNet's exp of that
    decoder form on 600k arguments (subnormal results, overflow, NaN, inf included); the
    runtimes' own Exp and the other form's do not."""
    x = exp_arguments()
    want = mxnet_exp(x, form)
    ref = sh.exp_reference(x, form)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(ref), nan) and nan.sum() == 1
    assert np.array_equal(ref[~nan].view(np.int32), want[~nan].view(np.int32))
    assert ((want > 0) & (want < 2.0 ** -126)).sum() > 1000  # subnormal results were tested
    other = "minimal_opset" if form == "box_decode" else "box_decode"
    assert (sh.exp_reference(x, other) != want).sum() > 10
    model = exp_model(form, x.size)
    for runtime in RUNTIMES:
        got = run(model, runtime, {"x": x})["y"]
        assert np.array_equal(np.isnan(got), nan), runtime
        assert np.array_equal(got[~nan].view(np.int32), ref[~nan].view(np.int32)), runtime
    plain = run(exp_model(None, x.size), "ort", {"x": x})["y"]
    assert (plain[np.isfinite(want)] != want[np.isfinite(want)]).sum() > 1000


# ---- tests: the model, the API, the tie helper --------------------------------------------


def test_standalone_model_is_valid():
    name, minimal = MODELS[0]
    graph, head = seeded(name, minimal)
    for debug in (False, True):
        model = sh.ssd_head_model(**sh.head_kwargs(head, graph), debug_outputs=debug)
        onnx.checker.check_model(model, full_check=True)
        assert model.opset_import[0].version == OPSET
        assert [i.name for i in model.graph.input] == ["box_preds", "cls_preds"]
        outs = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim]
                for o in model.graph.output}
        want = {"ids": [1, 100, 1], "scores": [1, 100, 1], "bboxes": [1, 100, 4]}
        if debug:
            want.update(softmax=[1, 2268, 21], decoded=[1, 2268, 4])
        assert outs == want
        types = {t.data_type for t in model.graph.initializer}
        assert onnx.TensorProto.DOUBLE not in types  # runs where float64 does not


def test_from_spec_needs_the_decoder_form_and_names_its_tensors():
    name, minimal = MODELS[0]
    graph, head = seeded(name, minimal)
    with pytest.raises(ValueError, match="decoder"):
        sh.head_kwargs(head)
    names = ("loc", "conf", "i", "s", "b")
    a = sh.ssd_head_from_spec(head, *names, graph=graph, prefix="h/")
    b = sh.ssd_head_from_spec(head.spec, *names, decoder="box_decode", prefix="h/")
    assert [n.SerializeToString() for n in a.nodes] == [n.SerializeToString() for n in b.nodes]
    produced = {o for n in a.nodes for o in n.output}
    assert {"i", "s", "b", "h/softmax", "h/decoded"} <= produced
    assert all(o.startswith("h/") or o in names for o in produced)
    with pytest.raises(ValueError, match="float32"):
        sh.center_anchors(np.full((1, 3, 4), 0.1, np.float64))
    with pytest.raises(ValueError, match=r"\[1, A, 4\]"):
        sh.center_anchors(np.zeros((1, 3, 5), F32))


def _rows(*rows) -> np.ndarray:
    out = np.full((5, 6), -1, F32)
    out[:len(rows)] = np.array(rows, F32)
    return out


def test_row_differences_names_ties_and_only_ties():
    s = F32(0.5)
    near = np.nextafter(s, F32(0))  # 1 ulp below
    box_a, box_b, box_c = [0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 11]  # a, c overlap
    boxes = np.array([box_a, box_b, box_c], F32)

    def row_differences(got, want):
        return globals()["row_differences"](got, want, boxes)

    want = _rows([1, s, *box_a], [2, near, *box_b], [3, 0.3, *box_b])
    assert row_differences(want, want) == []
    # within tolerance: same rows
    got = want.copy()
    got[0, 1] = np.nextafter(s, F32(1))
    assert row_differences(got, want) == []
    # two scores 1 ulp apart swap places: an order tie
    got = _rows([2, near, *box_b], [1, s, *box_a], [3, 0.3, *box_b])
    assert [r for _, r in row_differences(got, want)] == ["order", "order"]
    # the same swap with scores far apart is not a tie
    far = _rows([1, 0.9, *box_a], [2, 0.5, *box_b], [3, 0.3, *box_b])
    swapped = _rows([2, 0.5, *box_b], [1, 0.9, *box_a], [3, 0.3, *box_b])
    assert "unexplained" in {r for _, r in row_differences(swapped, far)}
    # a row at the threshold on one side only, the rows below move
    at = np.nextafter(VALID, F32(1))
    got = _rows([1, s, *box_a], [2, near, *box_b], [3, 0.3, *box_b], [4, at, *box_a])
    assert row_differences(got, want) == [(3, "threshold")]
    got = _rows([4, at, *box_a], [1, s, *box_a], [2, near, *box_b], [3, 0.3, *box_b])
    assert {r for _, r in row_differences(got, want)} == {"threshold", "moved"}
    # same class, overlapping, scores 1 ulp apart: NMS kept the other one
    want = _rows([1, s, *box_a], [2, 0.3, *box_b])
    got = _rows([1, near, *box_c], [2, 0.3, *box_b])
    assert [r for _, r in row_differences(got, want)] == ["order"]
    # a missing detection scoring well above the threshold is a real difference
    got = _rows([2, 0.3, *box_b])
    assert "unexplained" in {r for _, r in row_differences(got, want)}
    # a box that moved is a real difference
    got = want.copy()
    got[1, 5] = np.nextafter(got[1, 5], F32(99))
    assert {r for _, r in row_differences(got, want)} == {"unexplained"}
