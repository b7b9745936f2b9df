"""BENCHMARKS.md's RetinaFace section, from bench/retinaface_target.py's results (each model's
`retinaface` entry): conversion, fidelity per runtime beside ncnn's mxnet2ncnn, latency.

Every cell is a measured figure or says why there is none; the prose names what each column
ran, so the numbers cannot drift from their meaning.
"""

from __future__ import annotations

from common import not_run_row
from onnx_report import _e, latency_table, run_record
from plain_report import LATENCY_COLUMNS as PLAIN_LATENCY
from plain_report import RUNTIME_NAMES, _entries, _images, latency_prose
from plain_target import RUNTIMES
from report import _reruns
from retinaface_target import FACES, MODELS, MXNET2NCNN

HEADING = "## RetinaFace"
WEIGHTS = ("seeded random weights (seed 0): tests/retinaface_models.py's `save_retinaface` "
           "(BatchNorm statistics from a seeded batch, the predictors scaled on the two photos "
           "so that a few dozen anchors per stride score above 0.8: high scores, not real "
           "faces).")
ROUTES = (*((r, f"ssdconv, {RUNTIME_NAMES[r]}") for r in RUNTIMES),
          (MXNET2NCNN, "mxnet2ncnn, ncnn"))
LATENCY_COLUMNS = (*PLAIN_LATENCY, (MXNET2NCNN, "mxnet2ncnn ncnn"))


def _model(model: str, e: dict) -> str:
    kw = MODELS.get(model, {})
    size = "×".join(map(str, e.get("size", ())))
    arch = {"mnet25": "mnet.25", "r50": "R50, units (3, 4, 6, 3), width 1"}.get(kw.get("kind"),
                                                                               model)
    return f"{model} ({arch}, {size})" if size else f"{model} ({arch})"


def _run(c: dict | None, layers: bool = False) -> str:
    if not c:
        return "–"
    if "not_run" in c:
        return f"not run: {c['not_run']}"
    rss = c["peak_rss_mib"]
    floor = c.get("spawner_rss_mib") or 0.0
    cell = f"{c['wall_s']:.2f} s / " + (f"≤ {floor:.0f}" if rss <= floor + 0.5 else f"{rss:.0f}") \
        + " MiB"
    if "error" in c:
        return f"fails ({c['error']}) after {cell}"
    return cell + (f" / {c['layers']} layers" if layers and "layers" in c else "")


def conversion_table(entries: dict) -> list[str]:
    lines = ["| model | ssdconv `--target all`: wall / peak RSS | mxnet2ncnn: wall / peak RSS / "
             "ncnn layers | what mxnet2ncnn printed |", "|---|---|---|---|"]
    for model, e in entries.items():
        c = e.get("conversion", {})
        if "error" in c:
            lines.append(f"| {_model(model, e)} | {c['error']} | | |")
            continue
        m = c.get(MXNET2NCNN)
        said = "; ".join(f"`{s}`" for s in (m or {}).get("said", [])) or \
            ("nothing" if m and "said" in m else "–")
        missing = (m or {}).get("missing_blobs")
        if missing:
            said += f"; outputs missing from its model: {', '.join(missing)}"
        lines.append(f"| {_model(model, e)} | {_run(c)} | {_run(m, layers=True)} | {said} |")
    return lines


def _faces(r: dict) -> str:
    return ", ".join(f"{f['runtime']}/{f['reference']}" for f in r["faces"]) or "–"


def _ratio(r: dict) -> str:
    if r.get("ratio") is None:
        return f"shape differs ({r.get('worst', '?')})"
    return f"{r['ratio']:.2f} ({r['worst']}: {_e(r['err'])} / {_e(r['bound'])})"


def fidelity_row(model: str, route: str, r: dict | None) -> str:
    r = r or {"error": "not run"}
    if "error" in r or "not_run" in r:
        why = r.get("error") or f"not run: {r['not_run']}"
        return f"| {model} | {route} | {why} |" + " |" * 5
    verdict = "PASS" if r["ok"] else "FAIL"
    if not r["ok"] and r.get("first_divergence"):
        verdict += f" (first divergence: {r['first_divergence']})"
    ties = f" ({r['threshold_ties']} at the threshold)" if r.get("threshold_ties") else ""
    return (f"| {model} | {route} | {_ratio(r)} | {_faces(r)} | {r['unmatched']}{ties} | "
            f"{_e(r['max_box_diff_px'])} | {_e(r['max_landmark_diff_px'])} | {verdict} |")


def fidelity_table(entries: dict) -> list[str]:
    lines = ["| model | route, runtime | worst raw error / bound (output: error / bound) | "
             "faces / float64 MXNet's, per photo | unmatched | max box Δ px | "
             "max landmark Δ px | check |", "|---" * 8 + "|"]
    for model, e in entries.items():
        f = e.get("fidelity")
        if not f or "error" in f:
            lines.append(not_run_row(model, f, 6))
            continue
        lines += [fidelity_row(model, name, f.get(route)) for route, name in ROUTES]
    return lines


def _verdicts(f: dict) -> str:
    """How many of ssdconv's four routes passed the check."""
    passed = sum(bool((f.get(r) or {}).get("ok")) for r in RUNTIMES)
    return f"ssdconv's models pass it in {passed} of {len(RUNTIMES)} runtimes"


def summary(entries: dict) -> list[str]:
    """What mxnet2ncnn's route got, per model, in one line each, beside ssdconv's verdicts."""
    lines = []
    for model, e in entries.items():
        f = e.get("fidelity") or {}
        r = f.get(MXNET2NCNN)
        if not r:
            continue
        if "not_run" in r:
            lines.append(f"- {model}: mxnet2ncnn not run: {r['not_run']}.")
        elif "error" in r:
            lines.append(f"- {model}: mxnet2ncnn's route fails: {r['error']}.")
        else:
            lines.append(f"- {model}: mxnet2ncnn's model "
                         + ("passes the check" if r["ok"] else "fails the check")
                         + f" (worst raw error / bound {_ratio(r)}; faces {_faces(r)} against "
                         f"float64 MXNet's, {r['unmatched']} unmatched); {_verdicts(f)}.")
    return lines


def section(data: dict) -> list[str]:
    """The section of a `run.py --stage retinaface` run, headed by its run's record."""
    entries, meta = _entries(data["results"], "retinaface"), data["meta"]
    if not entries:
        return [HEADING, "", "No RetinaFace was measured."]
    return [
        HEADING,
        "",
        *run_record(meta, WEIGHTS, pnnx=False)[:-1],
        f"- mxnet2ncnn: {meta.get('mxnet2ncnn') or 'not given (MXNET2NCNN or --mxnet2ncnn)'}",
        *_reruns(meta),
        "",
        "bench/retinaface_target.py per model, in its own folder: insightface's RetinaFace "
        "rebuilt by tests/retinaface_models.py, saved as an MXNet checkpoint (untimed), then "
        "`ssdconv convert SYMBOL --input-size H,W --target all` (caffe, ncnn and ONNX) and "
        "ncnn's own converter, `mxnet2ncnn SYMBOL PARAMS OUT.param OUT.bin`, on the same "
        "files, each timed as a whole process (peak RSS: the child's own, from wait4; Linux "
        "counts the spawning bench process's peak in it, so *≤ N* says the tool stayed within "
        "the bench's own N MiB).",
        "",
        *conversion_table(entries),
        "",
        f"Fidelity on the face photos ({_images(entries, ', '.join(FACES))}) at the "
        "network's size. ssdconv's models go through the package's own staged check "
        "(`run_check` on the conversion loaded from its manifest; OpenCV with Winograd off, "
        "ncnn exact float32, OpenVINO with an f32 hint); mxnet2ncnn's model through the same "
        "check, run by the package's ncnn runner with the same exact float32 options, fed the "
        "same RGB pixels (no mean, no scale, as MXNet takes them), its nine outputs extracted "
        "by their MXNet names. "
        "*worst raw error / bound*: the largest ratio over the nine outputs and the images of "
        "|Δ| against float64 MXNet to the bound the check applied (3× MXNet float32's own "
        "error, at least 1e-4, or 1e-4 of the output's peak when that is below 1), with that "
        "output's error and bound; *faces*: those insightface's decode (float64 model of "
        "`retinaface.py` `detect`: threshold 0.8, NMS 0.4) finds on the route's outputs, "
        "against those it finds on float64 MXNet's, per photo; *unmatched*: faces of either "
        "side with no partner (IoU 0.99, score within 1e-3) over the photos; *max box / "
        "landmark Δ*: the largest corner and landmark differences of matched faces; *check*: "
        "the verdict on every photo (a failure names the first layer where the route leaves "
        "MXNet).",
        "",
        *summary(entries),
        "",
        *fidelity_table(entries),
        "",
        latency_prose(meta, "the nine outputs", "; *mxnet2ncnn ncnn*: mxnet2ncnn's model in "
                      "the same ncnn runner with the same options"),
        "",
        *latency_table(entries, meta["threads"], LATENCY_COLUMNS),
    ]
