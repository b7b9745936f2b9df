"""Render the collected results as BENCHMARKS.md: three tables plus how they were produced.

Every number in the file comes from the results dict run.py collected; the prose around the
fidelity table is filled in from those numbers, so it cannot drift from them.
"""

from __future__ import annotations

FID_COLUMNS = (
    ("opencv", "OpenCV (caffe)"), ("opencv_winograd", "OpenCV, Winograd on"),
    ("ncnn_fp32", "ncnn fp32"), ("ncnn_fp16", "ncnn fp16 weights"),
    ("ncnn_default", "ncnn default opts"), ("onnx", "mx2onnx + ORT"),
    ("onnx_gamma1", "mx2onnx + ORT, γ:=1"),
)
DET_COLUMNS = FID_COLUMNS + (("onnx_vs_agnostic", "γ:=1 against MXNet with class-agnostic NMS"),)
SPEED_RUNTIMES = (("mxnet", "MXNet"), ("opencv", "OpenCV"), ("ncnn", "ncnn"),
                  ("onnxruntime", "ORT"))


def _e(x) -> str:
    return "–" if x is None else f"{x:.1e}"


def _conv_cell(r: dict | None) -> str:
    if not r or "error" in r:
        return "failed" if r else "–"
    return f"{r['wall_s']:.1f} s / {r['peak_rss_mib']:.0f} MiB"


def _ratio(a: dict | None, b: dict | None, key: str) -> str:
    if not a or not b or "error" in a or "error" in b:
        return "–"
    return f"{a[key] / b[key]:.2f}"


def conversion_table(results: dict) -> list[str]:
    lines = ["| model | ssdconv, zoo name | ssdconv, exported symbol | mx2onnx | time ratio "
             "zoo / symbol ÷ mx2onnx | RSS ratio zoo / symbol ÷ mx2onnx |",
             "|---|---|---|---|---|---|"]
    for model, r in results.items():
        c = r.get("conversion", {})
        if "error" in c:
            lines.append(f"| {model} | {c['error']} | | | | |")
            continue
        zoo, sym, onnx = c.get("ssdconv_zoo"), c.get("ssdconv_symbol"), c.get("mx2onnx")
        lines.append(f"| {model} | {_conv_cell(zoo)} | {_conv_cell(sym)} | {_conv_cell(onnx)} | "
                     f"{_ratio(zoo, onnx, 'wall_s')} / {_ratio(sym, onnx, 'wall_s')} | "
                     f"{_ratio(zoo, onnx, 'peak_rss_mib')} / "
                     f"{_ratio(sym, onnx, 'peak_rss_mib')} |")
    same = [m for m, r in results.items() if r.get("conversion", {}).get("same_output")]
    differ = [m for m, r in results.items()
              if "same_output" in r.get("conversion", {}) and m not in same]
    lines += ["", f"The zoo-name and exported-symbol conversions wrote byte-identical "
              f"prototxt/caffemodel/param/bin for {len(same)} of {len(same) + len(differ)} "
              "models" + (f" (not: {', '.join(differ)})" if differ else "") + "."]
    return lines


def _raw_cell(f: dict | None) -> str:
    if not f:
        return "n/a"
    if "error" in f:
        return "failed"
    return f"{_e(f['loc_err'])} / {_e(f['conf_err'])}"


def _det_cell(f: dict | None) -> str:
    if not f:
        return "n/a"
    if "error" in f:
        return "failed"
    extra = f" (+{f['unmatched_runtime']})" if f["unmatched_runtime"] else ""
    return f"{f['matched']}/{f['compared']}{extra}"


def fidelity_tables(results: dict) -> tuple[list[str], list[str]]:
    head = " | ".join(name for _, name in FID_COLUMNS)
    raw = [f"| model | Gluon fp32 | {head} |", "|---" * (len(FID_COLUMNS) + 2) + "|"]
    det = [f"| model | {' | '.join(name for _, name in DET_COLUMNS)} |",
           "|---" * (len(DET_COLUMNS) + 1) + "|"]
    for model, r in results.items():
        f = r.get("fidelity", {})
        if "error" in f:
            raw.append(f"| {model} | {f['error']} |" + " |" * len(FID_COLUMNS))
            continue
        raw.append(f"| {model} | {_raw_cell(f.get('gluon_fp32'))} | "
                   + " | ".join(_raw_cell(f.get(k)) for k, _ in FID_COLUMNS) + " |")
        det.append(f"| {model} | " + " | ".join(_det_cell(f.get(k)) for k, _ in DET_COLUMNS)
                   + " |")
    return raw, det


def onnx_findings(results: dict) -> list[str]:
    """What the measured numbers say about mx2onnx, per model (no claim without a number)."""
    lines = []
    for model, r in results.items():
        f = r.get("fidelity", {})
        exp = f.get("onnx_export", {}).get("onnx", {})
        if "error" in f or not exp:
            continue
        if "error" in exp:
            lines.append(f"- {model}: mx2onnx export failed: {exp['error']}")
            continue
        o, g1, agn = f.get("onnx"), f.get("onnx_gamma1"), f.get("onnx_vs_agnostic")
        if not o or not g1 or not agn or any("error" in x for x in (o, g1, agn)):
            continue
        lines.append(
            f"- {model}: {exp['fix_gamma_bns']} fix_gamma BatchNorms, {exp['stored_gamma_not_1']} "
            f"storing γ≠1; loc/conf error {_e(o['loc_err'])}/{_e(o['conf_err'])} as exported, "
            f"{_e(g1['loc_err'])}/{_e(g1['conf_err'])} with γ:=1; detections "
            f"{o['matched']}/{o['compared']} → {g1['matched']}/{g1['compared']} "
            f"(+{g1['unmatched_runtime']} ORT-only) against GluonCV, {agn['matched']}/"
            f"{agn['compared']} (+{agn['unmatched_runtime']}) against MXNet with class-agnostic "
            "NMS.")
    return lines


def _speed_cell(s: dict | None) -> str:
    if not s:
        return "–"
    if "error" in s:
        return "failed"
    mark = "\\*" if s.get("fallback") else ""
    return f"{s['median_ms']:.1f}{mark}"


def speed_table(results: dict, threads: list[int]) -> list[str]:
    cols = [(k, n, t) for k, n in SPEED_RUNTIMES for t in threads]
    lines = ["| model | ncnn layers | " + " | ".join(f"{n} {t}T" for _, n, t in cols) + " |",
             "|---" * (len(cols) + 2) + "|"]
    for model, r in results.items():
        s = r.get("speed", {})
        if "error" in s:
            lines.append(f"| {model} | {s['error']} |" + " |" * len(cols))
            continue
        lines.append(f"| {model} | {s.get('layers') or '–'} | "
                     + " | ".join(_speed_cell(s.get(f"{k}_{t}")) for k, _, t in cols) + " |")
    return lines


def _backends(results: dict) -> str:
    seen = sorted({v.get("subgraph_backend", "?") for r in results.values()
                   for k, v in r.get("speed", {}).items()
                   if k.startswith("mxnet_") and isinstance(v, dict) and "error" not in v})
    return ", ".join(seen) or "–"


def _fallbacks(results: dict) -> bool:
    return any(isinstance(v, dict) and v.get("fallback") for r in results.values()
               for v in r.get("speed", {}).values())


def _errors(results: dict) -> list[str]:
    """Every recorded failure, wherever it sits in the results."""
    out = []

    def walk(where: str, block) -> None:
        if not isinstance(block, dict):
            return
        if "error" in block:
            out.append(f"- {where}: {block['error']}")
            return
        for key, value in block.items():
            walk(f"{where}, {key}", value)

    for model, r in results.items():
        walk(model, r)
    return out


def render(results: dict, meta: dict) -> str:
    m = meta["machine"]
    v = m["versions"]
    threads = meta["threads"]
    raw, det = fidelity_tables(results)
    first = next(iter(results.values()), {})
    images = ", ".join(first.get("fidelity", {}).get("images", [])) or "–"
    md = [
        "# Benchmarks",
        "",
        "Generated by `bench/run.py`; do not edit by hand, run it again.",
        "",
        *(["> **Quick validation run** (`--quick`): few runs and images, not benchmark "
           "numbers.", ""] if meta.get("quick") else []),
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']} (the whole run took {meta['elapsed_min']:.1f} min; load "
        f"average {meta.get('load_before', '?')} before, {meta.get('load_after', '?')} after: "
        "anything well above 0 means other work shared the CPU and the timings are noisy)",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, Linux "
        f"{m['kernel']}",
        f"- software: Python {m['python']}, mxnet {v.get('mxnet')}, gluoncv {v.get('gluoncv')}, "
        f"numpy {v.get('numpy')}, opencv-python {v.get('opencv-python')}, ncnn {v.get('ncnn')}, "
        f"onnx {v.get('onnx')}, onnxruntime {v.get('onnxruntime')}, ssdconv {v.get('ssdconv')}",
        "- weights: seeded random weights (seed 0) for every model, the same in every column: "
        "these numbers are about conversion and runtimes, not about detection accuracy.",
        "",
        "## Conversion",
        "",
        "Wall time and peak RSS of one whole process each, from fork to exit (interpreter "
        "start-up and imports included), median of "
        f"{meta['conv_runs']} run(s). *zoo name*: `ssdconv convert MODEL --seed 0 --target all` "
        "(builds the Gluon net, exports and seeds it, writes caffe + ncnn). *exported symbol*: "
        "`ssdconv convert PREFIX-symbol.json --target all` on the same seeded weights written "
        "once beforehand, the like-for-like comparison with *mx2onnx*, a process that only "
        "runs `mx.onnx.export_model` on those files (one ONNX file; ssdconv writes two models "
        "and proves the priors).",
        "",
        *conversion_table(results),
        "",
        "## Fidelity",
        "",
        f"Against the float64 Gluon reference on the sample images ({images}). "
        "*OpenCV (caffe)*, *ncnn fp32* and *ncnn fp16 weights* (`--ncnn-fp16`, fp32 "
        "arithmetic) are ssdconv's staged check (`run_check`, OpenCV with Winograd off). "
        "*OpenCV, Winograd on* and *ncnn default opts* are the settings the speed table runs. "
        "*mx2onnx + ORT* is MXNet's own ONNX export run by onnxruntime; *γ:=1* is the same "
        "export with the stored γ of every fix_gamma BatchNorm set to 1 first, which is what "
        "MXNet computes. *Gluon fp32* is MXNet float32's own distance from float64, for scale.",
        "",
        "Max |Δ| of the raw tensors, loc / conf:",
        "",
        *raw,
        "",
        "Detections matched (label, IoU ≥ 0.99, score within 1e-3) of those Gluon keeps above "
        "the comparable score, summed over the images; (+k): runtime detections with no Gluon "
        "partner:",
        "",
        *det,
        "",
        "Why mx2onnx differs from GluonCV, as measured above:",
        "",
        "- **fix_gamma.** mx2onnx writes every BatchNorm as ONNX BatchNormalization with the "
        "stored γ and ignores `fix_gamma`, while MXNet multiplies by 1. GluonCV's extra SSD "
        "layers are fix_gamma BatchNorms; seeded (or trained-then-edited) weights can store "
        "γ≠1 there, and the export then computes a different network. Resetting γ to 1 before "
        "export removes that error (the γ:=1 column).",
        "- **NMS.** mx2onnx lowers `box_nms` to ONNX NonMaxSuppression over all boxes at "
        "once: it warns that boxes of different classes are no longer exempt from suppressing "
        "each other (GluonCV suppresses per class). The last column runs MXNet itself with "
        "`force_suppress=True` (class-agnostic NMS) on the same input and matches the γ:=1 "
        "export's detections against that: what it leaves unmatched is not NMS's class "
        "handling (e.g. `topk` becoming NonMaxSuppression's per-class output limit).",
        "",
        *onnx_findings(results),
        "",
        "## Deployed speed",
        "",
        f"Median latency in ms of one forward pass (feed, forward, fetch the detections) over "
        f"{meta['runs']} runs after {meta['warmup']} warm-up runs, one process per runtime and "
        f"thread count (T), OMP_NUM_THREADS set to the same count, on {meta['image']} "
        "preprocessed once outside the timed region. *MXNet*: the exported symbol bound as an "
        "executor (`Symbol.bind`), MXNET_SUBGRAPH_BACKEND as the environment had it (NONE "
        "when unset: the timing process imports ssdconv, which sets that default); "
        f"the backend MXNet reported: {_backends(results)}. *OpenCV*: DNN on the caffe model, "
        "default backend, Winograd on (default), `cv2.setNumThreads`. *ncnn*: the ncnn model "
        "with default options, `opt.num_threads`. *ORT*: onnxruntime CPU on the mx2onnx "
        "export (initializers moved out of the graph inputs, as onnxruntime advises: it "
        "constant-folds them only then), `intra_op_num_threads`. *ncnn layers*: the layer count "
        "in the `.param` header." + (" \\*: MXNet's default subgraph backend failed on "
                                     "this graph, run with NONE." if _fallbacks(results)
                                     else ""),
        "",
        *speed_table(results, threads),
    ]
    errors = _errors(results)
    if errors:
        md += ["", "## Failures", "", *errors]
    return "\n".join(md) + "\n"
