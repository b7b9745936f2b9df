"""The generated C tails (`ssdconv.tail`) against real GluonCV/MXNet, row for row.

Seeded zoo detectors and the shipped demo models run in MXNet (float32) on sample photos; the
per-level prediction convs they compute feed the compiled C tail (gcc, -O2, no FMA
contraction) in both layouts, and its rows are compared with GluonCV's own ids/scores/bboxes.
The workspace the C leaves behind holds its decoded boxes and its scores, so each stage is
also checked on its own: boxes against MXNet's decoder, scores against MXNet's softmax (SSD) or
pre-NMS rows (YOLOv3), and the C's NMS against `mx.nd.contrib.box_nms` run on the C's own
scores and boxes. The shared box_nms C is further checked on crafted rows (ties, IoU exactly
at the threshold) bit for bit against MXNet.

Measured here (AVX-512, MXNet 1.9.1, gcc, glibc), 2 photos x 2 layouts per model; CI: 4 SSD
cases and 2 YOLOv3s (~40 s), sweep (`-m sweep`): 9 more SSDs (every GluonCV SSD architecture)
and 3 YOLOv3s (~240 s):
* SSD decoded boxes: MXNet's bit for bit, both decoder forms;
* SSD softmax: at most 11 ulps from MXNet's oneDNN kernel for 21 classes (12 with oneDNN held
  to AVX2), 16 for 81 (SOFTMAX_ULPS), 19-35% of the probabilities equal;
* SSD rows: ids and boxes bit for bit, scores within 13 ulps (26-56 of 100 rows bit-equal);
  ties needed: 0 in every case (a differing row must be named by `row_differences` and is
  counted in the printed figures);
* YOLOv3: scores, boxes and rows GluonCV's bit for bit;
* NMS: the C's rows are MXNet's box_nms of the C's own scores and boxes bit for bit, on real
  and on crafted rows (4 settings x 100 random cases: exact score ties, IoU = threshold); a `>=` IoU
  test or an unstable sort in the C is caught; so are reversed stds and swapped YOLO anchors.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from dataclasses import dataclass, replace

import numpy as np
import pytest

from ssdconv import shipped
from ssdconv.tail import compile_tail, ssd_tail_source, yolo_tail_source
from ssdconv.tail.box_nms_c import (
    NmsSettings,
    Part,
    Segment,
    carve_source,
    header_source,
    nms_call,
    nms_parts,
    rows_source,
    source_prelude,
    workspace_layout,
    workspace_source,
)
from ssdconv.tail.ssd_c import SOFTMAX_ULPS

mx = pytest.importorskip("mxnet")
if shutil.which("cc") is None:
    pytest.skip("no C compiler", allow_module_level=True)

from tests.test_onnx_ssd_head import (  # noqa: E402
    gluon_decode,
    gluon_nms,
    row_differences,
    seeded,
    ulps,
)

F32 = np.float32
MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)  # GluonCV's (and the demos')
PHOTOS = (0, 2)  # astronaut, cat
LAYOUTS = ("nchw", "nhwc")
TIES = {"order", "threshold", "moved", "cut"}
DEMO_CLASSES = ["circle", "square", "triangle", "star"]

SSD_CI = ["ssd_300_mobilenet0.25_voc", "ssd_300_mobilenet0.25_voc-minimal_opset",
          "ssd_512_resnet50_v1_voc", "demo"]
SSD_SWEEP = ["ssd_300_vgg16_atrous_voc", "ssd_512_vgg16_atrous_voc", "ssd_512_resnet18_v1_voc",
             "ssd_300_resnet34_v1b_voc", "ssd_512_resnet101_v2_voc", "ssd_512_mobilenet1.0_voc",
             "ssd_300_mobilenet1.0_lite_coco", "ssd_300_mobilenet0.25_coco",
             "ssd_512_resnet152_v2_voc"]
YOLO_CI = ["yolo3_mobilenet0.25_voc", "demo"]
YOLO_SWEEP = ["yolo3_darknet53_voc", "yolo3_mobilenet1.0_voc", "yolo3_darknet53_coco"]


def _params(ci: list[str], sweep: list[str]) -> list:
    return [*ci, *(pytest.param(n, marks=pytest.mark.sweep) for n in sweep)]


# every compiled tail gets its own folder in one that is removed when the tests end
_WORK = tempfile.TemporaryDirectory(prefix="ctail_")


def workdir() -> str:
    return tempfile.mkdtemp(dir=_WORK.name)


def compiled(sources: dict[str, str]):
    tail = compile_tail(sources, workdir())
    assert tail.warnings == "", tail.warnings  # -Wall -Wextra, C99: not one warning
    return tail


def photo_input(graph, runner, photo: int) -> np.ndarray:
    from ssdconv.verify.images import load_rgb

    h, w = graph.image_size
    return runner.input(load_rgb(str(shipped.photos()[photo]), h, w))


def workspace_floats(tail, parts: list[Part], name: str) -> np.ndarray:
    """A float array the C left in the workspace (`box_nms_c.workspace_layout`)."""
    offsets, _ = workspace_layout(parts)
    i = [p.name for p in parts].index(name)
    start = offsets[i] // 4
    return tail._workspace.view(F32)[start:start + parts[i].count].copy()


# ---- SSD ----------------------------------------------------------------------------------


@dataclass
class SsdCase:
    graph: object
    head: object
    kwargs: dict  # ssd_tail_source's, but name and layout
    images: list[dict]  # loc, conf (per level [C, H, W]), softmax [A, C+1], decoded, rows


@functools.cache
def ssd_case(key: str) -> SsdCase:
    from ssdconv.backend.onnx.ssd_head import head_kwargs
    from ssdconv.family import recognise
    from ssdconv.mxnet.run import run_outputs
    from ssdconv.verify.gluon_runner import GluonRunner

    if key == "demo":
        from ssdconv.models import load_model

        graph = load_model(str(shipped.DEMO_SYMBOL), classes=DEMO_CLASSES).graph
        head = recognise(graph)
    else:
        name, _, form = key.partition("-")
        graph, head = seeded(name, form == "minimal_opset")
    kw = head_kwargs(head, graph)
    kw["levels"] = [(lv.height, lv.width, lv.per_cell) for lv in head.spec.levels]
    m = head.match
    nms = next(n for n in graph.nodes if n.op == "_contrib_box_nms")
    wanted = ([(n.index, 0) for n in m.loc_convs] + [(n.index, 0) for n in m.conf_convs]
              + [(m.conf_softmax.index, 0), tuple(nms.inputs[0][:2])] + list(graph.heads))
    runner = GluonRunner(graph, head, MEAN, STD)
    levels = len(m.loc_convs)
    images = []
    for photo in PHOTOS:
        outs, _ = run_outputs(graph, wanted, photo_input(graph, runner, photo))
        a = outs[2 * levels].shape[1]
        images.append({"loc": [o[0] for o in outs[:levels]],
                       "conf": [o[0] for o in outs[levels:2 * levels]],
                       "softmax": outs[2 * levels][0],
                       "decoded": np.ascontiguousarray(outs[2 * levels + 1][0, :a, 2:6]),
                       "rows": np.concatenate(outs[2 * levels + 2:], -1)[0]})
    return SsdCase(graph, head, kw, images)


def ssd_parts(case: SsdCase) -> list[Part]:
    a = case.images[0]["softmax"].shape[0]
    return [Part("boxes", "float", 4 * a), Part("scores", "float", case.kwargs["num_classes"] * a)]


def inputs_in(arrays: list[np.ndarray], layout_: str) -> list[np.ndarray]:
    return arrays if layout_ == "nchw" else [np.transpose(x, (1, 2, 0)) for x in arrays]


def ssd_run(tail, img: dict, layout_: str) -> np.ndarray:
    return tail.run([inputs_in(img["loc"], layout_), inputs_in(img["conf"], layout_)])


def rows_differ(got: np.ndarray, want: np.ndarray, candidates: np.ndarray) -> dict:
    """Row for row: ids and boxes bit for bit, scores within SOFTMAX_ULPS, or a named tie."""
    diffs = row_differences(got, want, candidates, tol=SOFTMAX_ULPS)
    bad = [d for d in diffs if d[1] not in TIES]
    same = [i for i in range(len(got)) if i not in {d[0] for d in diffs}]
    g, w = got[same], want[same]
    ids_boxes = np.array_equal(g[:, [0, 2, 3, 4, 5]].view(np.int32),
                               w[:, [0, 2, 3, 4, 5]].view(np.int32))
    return {"ties": len(diffs) - len(bad), "unexplained": bad, "ids_boxes_equal": ids_boxes,
            "score_ulps": int(ulps(g[:, 1], w[:, 1]).max(initial=0)),
            "bit_equal": int(((got.view(np.int32) == want.view(np.int32)).all(1)
                              & (want[:, 0] >= 0)).sum()),
            "detections": int((want[:, 0] >= 0).sum())}


@pytest.mark.parametrize("key", _params(SSD_CI, SSD_SWEEP))
def test_ssd_tail_is_gluoncv(key):
    case = ssd_case(key)
    c = case.kwargs["num_classes"]
    parts = ssd_parts(case)
    found = []
    by_layout = {}
    for layout_ in LAYOUTS:
        tail = compiled(ssd_tail_source("ssd", layout=layout_, **case.kwargs))
        assert tail.post_nms == 100
        for photo, img in zip(PHOTOS, case.images):
            got = ssd_run(tail, img, layout_)
            # the decoder: MXNet's boxes bit for bit
            boxes = workspace_floats(tail, parts, "boxes").reshape(-1, 4)
            assert np.array_equal(boxes.view(np.int32), img["decoded"].view(np.int32)), (
                f"{int((boxes != img['decoded']).sum())} coordinates differ")
            # the softmax: within SOFTMAX_ULPS of MXNet's oneDNN kernel
            scores = workspace_floats(tail, parts, "scores").reshape(c, -1).T
            prob_ulps = ulps(scores, img["softmax"][:, 1:])
            assert prob_ulps.max() <= SOFTMAX_ULPS
            # the NMS: MXNet's box_nms of the C's own scores and boxes, bit for bit
            fake = np.concatenate([np.zeros_like(scores[:, :1]), scores], 1)[None]
            assert np.array_equal(got.view(np.int32),
                                  gluon_nms(fake, boxes[None])[0].view(np.int32))
            # the rows: GluonCV's, but for named ties
            r = rows_differ(got, img["rows"], img["decoded"])
            assert not r["unexplained"] and r["ids_boxes_equal"], (key, photo, r)
            assert r["detections"] > 10 and tail.last_count == r["detections"]
            found.append((int(prob_ulps.max()), round(float((prob_ulps == 0).mean()), 3),
                          r["detections"], r["bit_equal"], r["score_ulps"], r["ties"]))
            by_layout.setdefault(photo, []).append(got)
    for rows in by_layout.values():  # the layouts read the same values: the same rows
        assert np.array_equal(rows[0].view(np.int32), rows[1].view(np.int32))
    print(key, "per photo and layout: softmax max ulps, share equal; detections, bit-equal, "
          "max score ulps, ties:", found)


def test_ssd_mutants_fail():
    """The comparison catches a tail built wrong: stds in another order, the other exp."""
    case = ssd_case(SSD_CI[0])
    img = case.images[0]
    bad = dict(case.kwargs, stds=tuple(reversed(case.kwargs["stds"])))
    got = ssd_run(compiled(ssd_tail_source("bad", layout="nchw", **bad)), img, "nchw")
    r = rows_differ(got, img["rows"], img["decoded"])
    assert r["unexplained"] or not r["ids_boxes_equal"]
    # the other exp: glibc's expf is 1 ulp from the correctly rounded exp for ~6 in 10000
    # arguments; seeded predictions (not the CPU-dependent conv outputs) make that a certainty
    rng = np.random.default_rng(0)
    loc = [rng.normal(0, 2, x.shape).astype(F32) for x in img["loc"]]
    box_preds = np.concatenate([x.transpose(1, 2, 0).reshape(-1, 4) for x in loc])[None]
    want = gluon_decode(box_preds, case.kwargs["anchors"].reshape(1, -1, 4),
                        case.kwargs["stds"], None, False)[0]
    parts = ssd_parts(case)
    for decoder, differ in (("box_decode", False), ("minimal_opset", True)):
        tail = compiled(ssd_tail_source(decoder, layout="nchw",
                                        **dict(case.kwargs, decoder=decoder)))
        tail.run([loc, img["conf"]])
        boxes = workspace_floats(tail, parts, "boxes").reshape(-1, 4)
        assert ((boxes != want).sum() > 0) == differ, decoder


@pytest.mark.parametrize("decoder", ["box_decode", "minimal_opset"])
def test_ssd_decoder_clip_and_odd_stds(decoder):
    """The decoder on predictions far wider than a trained net's (the loc convs times 40), with
    odd stds and GluonCV's usual clip, against GluonCV's NormalizedBoxCenterDecoder in MXNet,
    bit for bit; without the clip it must differ."""
    case = ssd_case(SSD_CI[0])
    img = case.images[0]
    loc = [x * F32(40) for x in img["loc"]]
    box_preds = np.concatenate([x.transpose(1, 2, 0).reshape(-1, 4) for x in loc])[None]
    stds, clip = (0.13, 0.07, 0.3, 0.21), 4.135166556742356  # log(1000/16)
    anchors = case.kwargs["anchors"].reshape(1, -1, 4)
    want = gluon_decode(box_preds, anchors, stds, clip, decoder == "minimal_opset")[0]
    parts = ssd_parts(case)

    def boxes(clip_):
        kw = dict(case.kwargs, stds=stds, clip=clip_, decoder=decoder)
        tail = compiled(ssd_tail_source("clip", layout="nchw", **kw))
        tail.run([loc, img["conf"]])
        return workspace_floats(tail, parts, "boxes").reshape(-1, 4)

    got = boxes(clip)
    assert np.array_equal(got.view(np.int32), want.view(np.int32)), int((got != want).sum())
    assert (boxes(None) != want).sum() > 10


@pytest.mark.parametrize("settings", [
    {"nms_thresh": 0.6, "nms_topk": 50, "post_nms": 30},
    {"class_thresh": 0.05},
    {"nms_thresh": 1.0},  # GluonCV skips box_nms: every raw row, cls -1 / score 0 included
    {"nms_topk": 0},  # box_nms returns its input: the first post_nms raw rows
    {"nms_topk": -1, "post_nms": -1},
], ids=["t0.6_topk50_post30", "cls0.05", "no_nms", "topk0", "all"])
def test_ssd_settings(settings):
    """Other box_nms settings, against GluonCV's blocks on the C's own scores and boxes."""
    case = ssd_case(SSD_CI[0])
    img = case.images[0]
    kw = dict(case.kwargs, **settings)
    tail = compiled(ssd_tail_source("set", layout="nhwc", **kw))
    got = ssd_run(tail, img, "nhwc")
    parts = ssd_parts(case)
    scores = workspace_floats(tail, parts, "scores").reshape(kw["num_classes"], -1).T
    boxes = workspace_floats(tail, parts, "boxes").reshape(1, -1, 4)
    fake = np.concatenate([np.zeros_like(scores[:, :1]), scores], 1)[None]
    want = gluon_nms(fake, boxes, **{k: kw[k] for k in ("nms_thresh", "nms_topk", "post_nms",
                                                        "class_thresh")})[0]
    assert got.shape == want.shape
    assert np.array_equal(got.view(np.int32), want.view(np.int32))


# ---- YOLOv3 -------------------------------------------------------------------------------


@dataclass
class YoloCase:
    spec: object
    images: list[dict]  # raws (per level [A*(5+C), H, W]), rows (pre-NMS [N, 6]), final


@functools.cache
def yolo_case(key: str) -> YoloCase:
    from ssdconv.family import recognise
    from ssdconv.models import load_model
    from ssdconv.mxnet.run import run_outputs
    from ssdconv.verify.gluon_runner import GluonRunner

    if key == "demo":
        model = load_model(str(shipped.DEMO_YOLO_SYMBOL), classes=DEMO_CLASSES)
    else:
        size = (320, 320) if "darknet53_coco" in key else None
        model = load_model(key, seed=0, input_size=size)
    g = model.graph
    head = recognise(g)
    spec = head.spec
    runner = GluonRunner(g, head, MEAN, STD)
    n = len(spec.levels)
    images = []
    for photo in PHOTOS:
        outs, _ = run_outputs(g, [(lv.conv, 0) for lv in spec.levels] + list(g.heads)
                              + [g.nodes[spec.nms_node].inputs[0]], photo_input(g, runner, photo))
        images.append({"raws": [o[0] for o in outs[:n]],
                       "final": np.concatenate(outs[n:n + 3], -1)[0], "rows": outs[n + 3][0]})
    return YoloCase(spec, images)


def yolo_parts(spec) -> list[Part]:
    boxes = sum(lv.num_boxes for lv in spec.levels)
    return [Part("boxes", "float", 4 * boxes), Part("scores", "float", boxes * spec.num_classes)]


def yolo_row_boxes(spec, boxes: np.ndarray) -> np.ndarray:
    """The C's boxes [NB, 4] spread over GluonCV's rows (class-major per level)."""
    out, start = [], 0
    for lv in spec.levels:
        out.append(np.tile(boxes[start:start + lv.num_boxes], (spec.num_classes, 1)))
        start += lv.num_boxes
    return np.concatenate(out)


def yolo_source(spec, name: str, layout_: str) -> dict[str, str]:
    return yolo_tail_source(name, levels=spec.levels, num_classes=spec.num_classes,
                            nms=spec.nms, layout=layout_)


@pytest.mark.parametrize("key", _params(YOLO_CI, YOLO_SWEEP))
def test_yolo_tail_is_gluoncv(key):
    case = yolo_case(key)
    spec = case.spec
    parts = yolo_parts(spec)
    for layout_ in LAYOUTS:
        tail = compiled(yolo_source(spec, "yolo", layout_))
        for img in case.images:
            got = tail.run(inputs_in(img["raws"], layout_))
            scores = workspace_floats(tail, parts, "scores")
            boxes = workspace_floats(tail, parts, "boxes").reshape(-1, 4)
            assert np.array_equal(scores.view(np.int32), img["rows"][:, 1].view(np.int32))
            assert np.array_equal(yolo_row_boxes(spec, boxes).view(np.int32),
                                  img["rows"][:, 2:].view(np.int32))
            assert np.array_equal(got.view(np.int32), img["final"].view(np.int32))
            assert (img["final"][:, 0] >= 0).sum() > 5
            assert tail.last_count == (img["final"][:, 0] >= 0).sum()


def test_yolo_mutant_fails():
    """Anchors read as (h, w) in reverse order: the boxes and rows differ."""
    case = yolo_case(YOLO_CI[0])
    spec = case.spec
    bad = replace(spec, levels=tuple(replace(lv, anchors=tuple(a[::-1] for a in lv.anchors[::-1]))
                                     for lv in spec.levels))
    img = case.images[0]
    got = compiled(yolo_source(bad, "bad", "nchw")).run(img["raws"])
    assert not np.array_equal(got, img["final"])


# ---- box_nms alone, on crafted rows -------------------------------------------------------


def nms_only_source(name: str, segments: list[Segment], settings: NmsSettings,
                    mutate=None) -> dict[str, str]:
    """The shared box_nms C with an entry point taking scores [N] and boxes [NB*4] directly."""
    num_boxes = sum(s.boxes for s in segments)
    rows = settings.num_classes * num_boxes
    parts = nms_parts(settings, rows)
    body = (rows_source(name, segments, settings) + workspace_source(name, parts)
            + f"int {name}_postprocess(const float *const in[], float *rows, void *workspace)\n"
            f"{{\n    unsigned char *ws = (unsigned char *)workspace;\n"
            f"    const float *scores = in[0], *boxes = in[1];\n{carve_source(parts)}"
            f"    (void)ws;\n    return {nms_call(name, settings)};\n}}\n")
    src = source_prelude(name, "   box_nms test harness.") + body
    if mutate:
        src = mutate(src)
    defines = {"POST_NMS": settings.out_rows(rows), "INPUT_GROUPS": 1,
               "INPUT0_SIZES": f"{{{rows}, {4 * num_boxes}}}"}
    header = header_source(name, about="   test", defines=defines,
                           prototype=f"int {name}_postprocess(const float *const in[], "
                                     "float *rows, void *workspace);")
    return {f"{name}_postprocess.c": src, f"{name}_postprocess.h": header}


def mxnet_rows(scores, boxes, segments, s: NmsSettings) -> np.ndarray:
    """GluonCV's rows and MXNet's box_nms + slice for the same scores and boxes."""
    c = s.num_classes
    rows = []
    for seg in segments:
        for cls in range(c):
            base = sum(len(r) for r in rows)
            sc = scores[base:base + seg.boxes]
            ids = np.full(seg.boxes, cls, F32)
            if s.class_thresh is not None:
                keep = sc > F32(s.class_thresh)
                ids, sc = np.where(keep, ids, F32(-1)), np.where(keep, sc, F32(0))
            b = boxes[seg.box_start:seg.box_start + seg.boxes]
            rows.append(np.concatenate([ids[:, None], sc[:, None], b], 1).astype(F32))
    result = mx.nd.array(np.concatenate(rows)[None])
    if 0 < s.overlap_thresh < 1:
        result = mx.nd.contrib.box_nms(result, overlap_thresh=s.overlap_thresh, topk=s.topk,
                                       valid_thresh=s.valid_thresh, id_index=0, score_index=1,
                                       coord_start=2, force_suppress=False)
        if s.post_nms > 0:
            result = result.slice_axis(axis=1, begin=0, end=s.post_nms)
    return result.asnumpy()[0]


def crafted(rs: np.random.RandomState, num_boxes: int, num_classes: int):
    """Scores on a 1/8 grid (many exact ties, some at 0.01 and below) and boxes on a coarse
    grid: IoUs of exactly 0.5, 1/3, 0.25 are common."""
    scores = rs.randint(0, 9, num_boxes * num_classes).astype(F32) / F32(8)
    scores[rs.rand(scores.size) < 0.05] = F32(0.01)
    xy = rs.randint(0, 4, (num_boxes, 2)).astype(F32)
    wh = rs.randint(0, 4, (num_boxes, 2)).astype(F32)
    wh[rs.rand(num_boxes) < 0.05] = -1  # an inverted box: area 0
    return scores, np.concatenate([xy, xy + wh], 1).astype(F32)


NMS_SETTINGS = [
    # post_nms <= N rows: MXNet's slice_axis refuses an end past the rows
    NmsSettings(num_classes=3, overlap_thresh=0.5, topk=400, post_nms=40, valid_thresh=0.01),
    NmsSettings(num_classes=3, overlap_thresh=1 / 3, topk=7, post_nms=5, valid_thresh=0.01,
                class_thresh=0.25),
    NmsSettings(num_classes=2, overlap_thresh=0.25, topk=-1, post_nms=-1, valid_thresh=0.125),
    NmsSettings(num_classes=2, overlap_thresh=0.0, topk=400, post_nms=100, valid_thresh=0.01,
                class_thresh=0.3),
]


@pytest.mark.parametrize("settings", NMS_SETTINGS, ids=["gluon", "topk7_cls", "all", "off"])
def test_box_nms_is_mxnets_on_crafted_rows(settings):
    segments = [Segment(12, 0), Segment(5, 12)]  # a YOLO-like row numbering: two levels
    tail = compiled(nms_only_source("nms", segments, settings))
    rs = np.random.RandomState(5)
    at_threshold = 0
    for _ in range(100):
        scores, boxes = crafted(rs, 17, settings.num_classes)
        want = mxnet_rows(scores, boxes, segments, settings)
        got = tail.run([scores, boxes])
        assert got.shape == want.shape
        assert np.array_equal(got.view(np.int32), want.view(np.int32)), (got, want)
        at_threshold += int((want[:, 0] >= 0).sum())
    assert at_threshold > 100


def swap(old: str, new: str):
    def mutate(text: str) -> str:
        assert text.count(old) == 1, old
        return text.replace(old, new)

    return mutate


def test_box_nms_mutants_are_caught():
    """`>=` for MXNet's strict IoU test, or an unstable tie order, changes rows on crafted
    data: the crafted test can fail."""
    s = NMS_SETTINGS[0]
    segments = [Segment(12, 0), Segment(5, 12)]
    ge = compiled(nms_only_source("ge", segments, s, swap("- inter) > 0x1p-1f",
                                                          "- inter) >= 0x1p-1f")))
    unstable = compiled(nms_only_source("unstable", segments, s, swap(
        "key[src[r]] > key[src[l]]", "key[src[r]] >= key[src[l]]")))
    rs = np.random.RandomState(5)
    wrong = {"ge": 0, "unstable": 0}
    for _ in range(100):
        scores, boxes = crafted(rs, 17, s.num_classes)
        want = mxnet_rows(scores, boxes, segments, s)
        for what, tail in (("ge", ge), ("unstable", unstable)):
            wrong[what] += not np.array_equal(tail.run([scores, boxes]), want)
    assert wrong["ge"] > 5 and wrong["unstable"] > 5, wrong


def test_iou_exactly_at_threshold_keeps_the_box():
    """facts §11.7's case: [0,0,1,1] and [0,0,1,2] overlap with IoU exactly 0.5: both kept."""
    s = replace(NMS_SETTINGS[0], post_nms=5)
    segments = [Segment(3, 0)]
    tail = compiled(nms_only_source("edge", segments, s))
    scores = np.zeros(9, F32)
    scores[:3] = [0.9, 0.8, 0.7]
    boxes = np.array([[0, 0, 1, 1], [5, 5, 6, 6], [0, 0, 1, 2]], F32)
    got = tail.run([scores, boxes])
    assert tail.last_count == 3 and list(got[:3, 1]) == [F32(0.9), F32(0.8), F32(0.7)]
    assert np.array_equal(got, mxnet_rows(scores, boxes, segments, s))


# ---- the generated files ------------------------------------------------------------------


def test_sources_and_helpers():
    """Pure generators (same text twice), the header's API, the dequantise helpers."""
    import ctypes

    case = yolo_case(YOLO_CI[1])
    a = yolo_source(case.spec, "demo", "nhwc")
    assert a == yolo_source(case.spec, "demo", "nhwc")
    assert set(a) == {"demo_postprocess.c", "demo_postprocess.h"}
    h = a["demo_postprocess.h"]
    for text in ("size_t demo_workspace_size(void);",
                 "int demo_postprocess(const float *const pred[], float *rows, void *workspace);",
                 "#define demo_POST_NMS 100", "#define demo_NUM_CLASSES 4",
                 "void demo_dequantize_int8(const int8_t *q, size_t n, int32_t zero_point, "
                 "float scale,", "void demo_dequantize_s32(const int32_t *q, size_t n, "
                 "float *out);"):
        assert text in h, text
    includes = {line for line in a["demo_postprocess.c"].splitlines()
                if line.startswith("#include")}
    assert includes == {"#include <math.h>", "#include <stddef.h>", "#include <stdint.h>",
                        "#include <string.h>", '#include "demo_postprocess.h"'}
    assert "malloc" not in a["demo_postprocess.c"]
    tail = compiled(a)
    lib = tail._lib
    q8 = np.array([-128, -3, 0, 5, 127], np.int8)
    out = np.empty(5, F32)
    lib.demo_dequantize_int8.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int32,
                                         ctypes.c_float, ctypes.c_void_p]
    lib.demo_dequantize_int8(q8.ctypes.data, 5, -3, ctypes.c_float(0.0625), out.ctypes.data)
    assert np.array_equal(out, (q8.astype(F32) + F32(3)) * F32(0.0625))
    q32 = np.array([-2 ** 31, -4096, 1, 4096 * 7 + 5, 2 ** 31 - 1], np.int32)
    lib.demo_dequantize_s32.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    lib.demo_dequantize_s32(q32.ctypes.data, 5, out.ctypes.data)
    assert np.array_equal(out, q32.astype(F32) / F32(4096))
    with pytest.raises(ValueError, match="layout"):
        yolo_source(case.spec, "demo", "NCHW")
    with pytest.raises(ValueError, match="identifier"):
        yolo_source(case.spec, "my-model", "nchw")
    with pytest.raises(ValueError, match="values"):
        tail.run([np.zeros(3, F32) for _ in case.spec.levels])
    # another tail of the same name compiled into the same folder runs its own code
    work = workdir()
    raws = case.images[0]["raws"]
    one = compile_tail(yolo_source(case.spec, "same", "nchw"), work).run(raws)
    nms = replace(case.spec.nms, post_nms=7)
    two = compile_tail(yolo_tail_source("same", levels=case.spec.levels, num_classes=4, nms=nms,
                                        layout="nchw"), work).run(raws)
    assert one.shape == (100, 6) and np.array_equal(two, one[:7])


def test_yolo_offsets_table():
    """A level whose grid offsets are not GluonCV's own grid is read from a table: the boxes
    follow `(sigmoid(t) + offset) * stride` with MXNet's sigmoid, float32 (numpy rounds each
    operation as MXNet does)."""
    case = yolo_case(YOLO_CI[1])
    spec = case.spec
    lv = spec.levels[0]
    shifted = (np.asarray(lv.offsets, F32) + F32(0.25)).astype(F32)
    odd = replace(spec, levels=(replace(lv, offsets=shifted), *spec.levels[1:]))
    source = yolo_source(odd, "odd", "nchw")["odd_postprocess.c"]
    assert "odd_offsets0[2 * cell]" in source and "odd_offsets1" not in source
    tail = compiled(yolo_source(odd, "odd", "nchw"))
    img = case.images[0]
    tail.run(img["raws"])
    boxes = workspace_floats(tail, yolo_parts(spec), "boxes").reshape(-1, 4)
    a, k = lv.num_anchors, 5 + spec.num_classes
    raw = img["raws"][0].reshape(a, k, -1)  # [A, K, HW]
    sig = mx.nd.sigmoid(mx.nd.array(raw[:, 0:2])).asnumpy()  # [A, 2, HW]
    off = shifted.reshape(-1, 2).T[None]  # [1, 2, HW]
    centre = ((sig + off) * F32(lv.stride)).astype(F32)  # [A, 2, HW]
    half = (mx.nd.exp(mx.nd.array(raw[:, 2:4])).asnumpy()
            * np.asarray(lv.anchors, F32)[:, :, None]) / F32(2)
    want = np.concatenate([centre - half, centre + half], 1).transpose(2, 0, 1).reshape(-1, 4)
    assert np.array_equal(boxes[:lv.num_boxes].view(np.int32), want.view(np.int32))
    # GluonCV's own grid gives other boxes: the table was read
    assert (boxes[:lv.num_boxes] != img["rows"][:lv.num_boxes, 2:]).mean() > 0.9


MAIN_C = r"""
#include <stdio.h>
#include <stdlib.h>

#include "demo_postprocess.h"

/* How a device program uses the tail: the NPU's raw outputs in, GluonCV's rows out. */
int main(int argc, char **argv)
{
    static const size_t sizes[demo_NUM_LEVELS] = demo_INPUT0_SIZES;
    const float *pred[demo_NUM_LEVELS];
    float rows[demo_POST_NMS * 6];
    void *workspace = malloc(demo_workspace_size());
    FILE *in;
    int i, n;
    if (argc != 2 || workspace == NULL || (in = fopen(argv[1], "rb")) == NULL)
        return 2;
    for (i = 0; i < demo_NUM_LEVELS; ++i) {
        float *p = malloc(sizes[i] * sizeof(float));
        if (p == NULL || fread(p, sizeof(float), sizes[i], in) != sizes[i])
            return 3;
        pred[i] = p;
    }
    fclose(in);
    n = demo_postprocess(pred, rows, workspace);
    fwrite(rows, sizeof(float), demo_POST_NMS * 6, stdout);
    fprintf(stderr, "%d\n", n);
    return 0;
}
"""


def test_standalone_c_program(tmp_path):
    """The generated files build into a plain C99 program (-pedantic -Werror) beside a main
    that knows only the header; it prints the rows ctypes gets; the header is valid C++."""
    import subprocess

    case = yolo_case(YOLO_CI[1])
    sources = yolo_source(case.spec, "demo", "nhwc")
    for name, text in sources.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "main.c").write_text(MAIN_C)
    exe = tmp_path / "demo"
    subprocess.run(["cc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror",
                    "-ffp-contract=off", "-O2", "-o", str(exe), str(tmp_path / "main.c"),
                    str(tmp_path / "demo_postprocess.c"), "-lm"], check=True, cwd=tmp_path)
    raws = inputs_in(case.images[0]["raws"], "nhwc")
    (tmp_path / "in.bin").write_bytes(b"".join(np.ascontiguousarray(r, F32).tobytes()
                                               for r in raws))
    done = subprocess.run([str(exe), str(tmp_path / "in.bin")], capture_output=True, check=True)
    rows = np.frombuffer(done.stdout, F32).reshape(-1, 6)
    assert np.array_equal(rows.view(np.int32), case.images[0]["final"].view(np.int32))
    assert int(done.stderr) == (rows[:, 0] >= 0).sum()
    cxx = shutil.which("c++")
    if cxx:
        (tmp_path / "use.cpp").write_text('#include "demo_postprocess.h"\n'
                                          "int main() { return demo_workspace_size() == 0; }\n")
        subprocess.run([cxx, "-Wall", "-Wextra", "-Werror", "-fsyntax-only",
                        str(tmp_path / "use.cpp")], check=True, cwd=tmp_path)


def test_compile_needs_a_compiler(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", "no-such-cc-here")
    case = ssd_case(SSD_CI[0])
    with pytest.raises(RuntimeError, match="no C compiler"):
        compile_tail(ssd_tail_source("x", layout="nchw", **case.kwargs), tmp_path)
    # a HeadSpec's levels are the (height, width, anchors per cell) tuples
    kw = dict(case.kwargs, levels=case.head.spec.levels)
    assert ssd_tail_source("x", layout="nchw", **kw) == ssd_tail_source("x", layout="nchw",
                                                                         **case.kwargs)


def _has_fma() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return " fma " in f.read()
    except OSError:
        return False


def test_no_fma_contraction_whatever_the_flags():
    """Built for this CPU with contraction on (-march=native -ffp-contract=fast), the SSD's
    boxes and rows stay MXNet's: the generated pragma turns contraction off. Without the pragma
    the same build moves boxes (where the CPU has FMA)."""
    case = ssd_case(SSD_CI[0])
    img = case.images[0]
    fast = ["-march=native", "-ffp-contract=fast"]
    src = ssd_tail_source("fast", layout="nchw", **case.kwargs)
    reference = ssd_run(compiled(src), img, "nchw")
    tail = compile_tail(src, workdir(), fast)
    assert np.array_equal(ssd_run(tail, img, "nchw").view(np.int32), reference.view(np.int32))
    boxes = workspace_floats(tail, ssd_parts(case), "boxes").reshape(-1, 4)
    assert np.array_equal(boxes.view(np.int32), img["decoded"].view(np.int32))
    if _has_fma():
        name = "fast_postprocess.c"
        bare = dict(src, **{name: swap('#pragma GCC optimize("fp-contract=off")', "")(src[name])})
        tail = compile_tail(bare, workdir(), fast)
        ssd_run(tail, img, "nchw")
        boxes = workspace_floats(tail, ssd_parts(case), "boxes").reshape(-1, 4)
        assert (boxes != img["decoded"]).sum() > 10
