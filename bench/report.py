"""Render the collected results as BENCHMARKS.md: the tables plus how they were produced.

Every number in the file comes from the results dict run.py collected; the prose around the
fidelity table is filled in from those numbers, so it cannot drift from them.

Raw-tensor cells hold one figure per manifest role of the head's raw tensors (`by_manifest_role`):
an SSD's loc / conf, a YOLOv3's `outputs` (the largest over its three prediction outputs). Their
headers name the role layouts the models have, and a note says what a folded role stands for
only when one is there, so an SSD-only report reads as it always did.
"""

from __future__ import annotations

import onnx_report
from common import by_manifest_role, manifest_role

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
    if not a or not b or key not in a or key not in b:
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


def _raw_errors(f: dict) -> dict[str, float]:
    """A fidelity entry's raw-tensor errors (its `ROLE_err` keys; `prior_err` is the SSD
    stage's, no raw tensor) folded by manifest role: SSD loc, conf; YOLOv3 outputs."""
    return by_manifest_role({k[:-len("_err")]: v for k, v in f.items()
                             if k.endswith("_err") and k != "prior_err"})


def _raw_cell(f: dict | None, sep: str = " / ") -> str:
    if not f:
        return "n/a"
    if "error" in f:
        return "failed"
    return sep.join(_e(e) for e in _raw_errors(f).values())


def _model_roles(r: dict) -> list[str]:
    """One model's raw roles, unfolded (SSD loc, conf; YOLOv3 outputs.0, ...), from whichever
    stage recorded them: the Gluon reference's own errors, else the int8 raw errors."""
    g = r.get("fidelity", {}).get("gluon_fp32")
    if g:
        return [k[:-len("_err")] for k in g if k.endswith("_err")]
    raw = r.get("int8", {}).get("raw_error_vs_fp32") or {}
    return list(next(iter(raw.values()), {}))


def raw_label(results: dict, sep: str = " / ") -> str:
    """The raw cells' layouts, as headers name them: "loc / conf" for SSDs, "outputs" for
    YOLOv3s, "loc / conf or outputs" for both."""
    layouts: list[tuple[str, ...]] = []
    for r in results.values():
        roles = tuple(by_manifest_role(dict.fromkeys(_model_roles(r), 0.0)))
        if roles and roles not in layouts:
            layouts.append(roles)
    return " or ".join(sep.join(t) for t in layouts or [("loc", "conf")])


def raw_note(results: dict) -> list[str]:
    """A header line saying what a folded role's cell holds (YOLOv3's `outputs`: the largest
    over its prediction outputs); none when no model has one (SSDs alone)."""
    folded: dict[str, list[str]] = {}
    for r in results.values():
        for role in _model_roles(r):
            members = folded.setdefault(manifest_role(role), [])
            if role not in members:
                members.append(role)
    folded = {k: v for k, v in folded.items() if len(v) > 1}
    if not folded:
        return []
    return ["- raw tensors: every raw-tensor cell has one figure per manifest role of the head's "
            "raw tensors (`Head.raw_outputs()`): an SSD's loc / conf; "
            + "; ".join(f"*{k}* is the largest over {', '.join(v)}, the blobs of the manifest's "
                        f"`blobs.{k}` list (a YOLOv3's {len(v)} prediction convs)"
                        for k, v in folded.items()) + "."]


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
            f"storing γ≠1; {'/'.join(_raw_errors(o))} error {_raw_cell(o, '/')} as exported, "
            f"{_raw_cell(g1, '/')} with γ:=1; detections "
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


def _ms(s: dict | None) -> str:
    """A latency cell: the median, "failed", or "not run"/"–" when it was not measured."""
    if not s:
        return "–"
    return "failed" if "error" in s else f"{s['median_ms']:.1f}"


def _tool_cell(o: dict | None, before: int | None) -> str:
    """ncnnoptimize's result: rewrite lines printed, and layers before → after."""
    if not o:
        return "–"
    if "not_run" in o:
        return "not run"
    if "error" in o:
        return "failed"
    return f"{o['rewrite_lines']} / {before if before is not None else '?'} → {o['layers']}"


def fusion_table(results: dict, threads: list[int]) -> list[str]:
    """Layers and latency of ssdconv's fused and unfused ncnn output and ncnnoptimize on it."""
    kinds = (("fused", "fused"), ("unfused", "unfused"), ("ncnnoptimize", "ncnnoptimize'd"))
    cols = [(k, n, t) for t in threads for k, n in kinds]
    lines = ["| model | layers unfused / fused | ncnnoptimize on fused: lines / layers | "
             "ncnnoptimize on unfused: lines / layers |"
             + "".join(f" {n} {t}T |" for _, n, t in cols), "|---" * (len(cols) + 4) + "|"]
    for model, r in results.items():
        f = r.get("fusion")
        if not f:
            continue
        if "error" in f:
            lines.append(f"| {model} | {f['error']} |" + " |" * (len(cols) + 2))
            continue
        fused, unfused = f.get("fused", {}), f.get("unfused", {})
        lines.append(
            f"| {model} | {unfused.get('layers', 'failed')} / {fused.get('layers', '–')} | "
            f"{_tool_cell(f.get('ncnnoptimize'), fused.get('layers'))} | "
            f"{_tool_cell(f.get('ncnnoptimize_unfused'), unfused.get('layers'))} |"
            + "".join(" not run |" if "not_run" in f.get(k, {}) else
                      f" {_ms(f.get(k, {}).get(f'ncnn_{t}'))} |" for k, _, t in cols))
    return lines


def fusion_verdict(results: dict) -> list[str]:
    """The must-show line, counted from the table: ncnnoptimize found nothing to do."""
    ran = {m: r["fusion"]["ncnnoptimize"] for m, r in results.items()
           if "ncnnoptimize" in r.get("fusion", {})
           and "rewrite_lines" in r["fusion"]["ncnnoptimize"]}
    if not ran:
        return ["ncnnoptimize was not run (set NCNNOPTIMIZE to its path)."]
    clean = [m for m, o in ran.items() if o["rewrite_lines"] == 0]
    same = [m for m, o in ran.items() if o["layers"] == results[m]["fusion"]["fused"]["layers"]]
    out = [f"ncnnoptimize on ssdconv's ncnn output printed no fuse_/eliminate_/replace_ line for "
           f"{len(clean)} of {len(ran)} models and left the layer count unchanged for "
           f"{len(same)} of {len(ran)}."]
    for m, o in ran.items():
        if o["rewrite_lines"]:
            out.append(f"- {m}: " + ", ".join(f"{k} ×{v}" for k, v in o["rewrites"].items()))
    return out


# headers: {raw} is raw_label's ("loc/conf" for SSDs)
PNNX_VARIANTS = (("whole", "whole model"), ("body", "body (to {raw})"),
                 ("body_gamma1", "body, γ:=1"))


def _pnnx_failures(results: dict) -> dict[str, int]:
    """Each distinct failure (where + first error line) -> its footnote number."""
    notes: dict[str, int] = {}
    for r in results.values():
        for key, _ in PNNX_VARIANTS:
            v = r.get("pnnx", {}).get(key)
            if v and not v.get("converted") and "first_error" in v:
                notes.setdefault(_where(v), len(notes) + 1)
    return notes


def _where(v: dict) -> str:
    where = " / ".join(x for x in (v.get("stage"), v.get("step")) if x)
    valid = v.get("onnx_valid")
    given = "" if valid is None else (
        " (the ONNX file pnnx was given passes onnx.checker with full_check and loads in "
        "onnxruntime)" if valid == "ok" else f" (the ONNX file itself is refused: {valid})")
    return (f"{v['exit']}" + (f", in {where}" if where else "") + f": `{v['first_error']}`"
            + given)


def pnnx_tables(results: dict, threads: list[int]) -> list[str]:
    """Does it convert; fidelity beside ssdconv's ncnn fp32; latency beside ssdconv's."""
    notes = _pnnx_failures(results)
    raw = raw_label(results, "/")
    heads = [n.format(raw=raw) for _, n in PNNX_VARIANTS]
    conv = ["| model | " + " | ".join(heads) + " | ssdconv ncnn layers |",
            "|---" * (len(PNNX_VARIANTS) + 2) + "|"]
    fid = ["| model | ssdconv ncnn fp32 | " + " | ".join(heads)
           + " | detections: ssdconv | " + " | ".join(heads) + " |",
           "|---" * (2 * len(PNNX_VARIANTS) + 3) + "|"]
    cols = [(k, t) for k in ("ssdconv", "ssdconv_raw", "whole", "body") for t in threads]
    names = {"ssdconv": "ssdconv, detections", "ssdconv_raw": f"ssdconv, {raw}",
             "whole": "pnnx whole model", "body": "pnnx body"}
    speed = ["| model | " + " | ".join(f"{names[k]} {t}T" for k, t in cols) + " |",
             "|---" * (len(cols) + 1) + "|"]
    for model, r in results.items():
        p = r.get("pnnx")
        if not p:
            continue
        if "error" in p:
            conv.append(f"| {model} | {p['error']} |" + " |" * len(PNNX_VARIANTS))
            continue
        cells = []
        for key, _ in PNNX_VARIANTS:
            v = p.get(key, {})
            if v.get("converted"):
                cells.append(f"yes ({v['layers']} layers, {v['wall_s']:.1f} s)")
            else:
                cells.append(f"no [{notes[_where(v)]}]" if "first_error" in v else "–")
        ours_layers = r.get("speed", {}).get("layers") or r.get("fusion", {}).get(
            "fused", {}).get("layers") or "–"
        conv.append(f"| {model} | " + " | ".join(cells) + f" | {ours_layers} |")
        ours = r.get("fidelity", {}).get("ncnn_fp32")
        fids = [p.get(k, {}).get("fidelity") if p.get(k, {}).get("converted") else None
                for k, _ in PNNX_VARIANTS]
        fid.append(f"| {model} | {_raw_cell(ours)} | "
                   + " | ".join(_raw_cell(f) if f else "did not convert" for f in fids)
                   + f" | {_det_cell(ours)} | "
                   + " | ".join(_det_cell(f) if f else "–" for f in fids) + " |")
        timing = {"ssdconv": r.get("speed", {}), "ssdconv_raw": p.get("ssdconv_raw", {}),
                  "whole": p.get("whole", {}), "body": p.get("body", {})}
        speed.append(f"| {model} | " + " | ".join(
            _ms(timing[k].get(f"ncnn_{t}")) for k, t in cols) + " |")
    footnotes = [f"[{n}] {text}" for text, n in notes.items()]
    return conv + ["", *footnotes, "", f"Fidelity (max |Δ| {raw_label(results)} against "
                   "float64 Gluon; detections matched as in the fidelity table):", "", *fid, "",
                   "Latency (ms, median, ncnn default options):", "", *speed]


INT8_VARIANTS = (("int8", "ssdconv int8"), ("ncnn-tools-int8", "ncnn2table + ncnn2int8"))


def _int8_count(entry: dict) -> str:
    """How many of the model's convolutions ssdconv made int8: "47 of 50"."""
    layers = entry.get("int8_layers")
    if not layers:
        return "–"
    total = layers["convolutions"]
    return f"{total - len(layers['float'])} of {total}"


def int8_table(results: dict, threads: list[int], demo: dict | None = None) -> list[str]:
    """ncnn int8 against fp32, from bench/int8.py's JSON entry per model. Keys read:
    `latency` {"fp32_T" / "int8_T" / "ncnn-tools-int8_T": {"median_ms", "cpu_median_ms"}} per
    thread count T (one process each, detections fetched, ncnn default options),
    `raw_error_vs_fp32` {variant: {"loc", "conf"}} (rms of the difference / std of fp32's),
    `int8_layers` {"convolutions": count, "float": {layer: why it stayed float}} (absent in
    results older than it: "–"), and on the demo model `map` {variant: VOC07 mAP} over
    `map_images` held-out images."""
    ran = {m: r["int8"] for m, r in results.items()
           if r.get("int8") and "not_run" not in r["int8"]}
    if not ran:
        why = next((r["int8"]["not_run"] for r in results.values()
                    if "not_run" in r.get("int8", {})), "no result")
        return [f"Not run: {why}."]
    if demo and "latency" in demo:
        ran["demo (shipped, trained)"] = demo
    cols = [(v, n, t) for t in threads for v, n in (("fp32", "fp32"), *INT8_VARIANTS)]
    label = raw_label({m: {"int8": d} for m, d in ran.items()})
    lines = ["| model |" + "".join(f" {n} {t}T |" for _, n, t in cols)
             + "".join(f" speed-up {n} {t}T |" for t in threads for _, n in INT8_VARIANTS[:1])
             + f" speed-up 1T, CPU time | ssdconv int8 convolutions | raw error int8 {label} "
             f"| raw error ncnn tools {label} |",
             "|---" * (len(cols) + len(threads) + 5) + "|"]
    for model, d in ran.items():
        if "error" in d:
            lines.append(f"| {model} | {d['error']} |" + " |" * (len(cols) + len(threads) + 3))
            continue
        lat, raw = d.get("latency", {}), d.get("raw_error_vs_fp32", {})
        ups = [_ratio(lat.get(f"fp32_{t}"), lat.get(f"int8_{t}"), "median_ms") for t in threads]
        cpu = _ratio(lat.get("fp32_1"), lat.get("int8_1"), "cpu_median_ms")
        errs = [" / ".join(f"{e:.4f}" for e in by_manifest_role(raw[v]).values())
                if v in raw else "not run" for v, _ in INT8_VARIANTS]
        lines.append(f"| {model} |" + "".join(f" {_ms(lat.get(f'{v}_{t}'))} |"
                                              if f"{v}_{t}" in lat else " not run |"
                                              for v, _, t in cols)
                     + "".join(f" {u} |" for u in ups)
                     + f" {cpu} | {_int8_count(d)} | {errs[0]} | {errs[1]} |")
    if demo and "map" in demo:
        lines += ["", f"The demo model's VOC07 mAP on {demo.get('map_images', '?')} held-out "
                  "test images: " + ", ".join(f"{v} {m:.4f}" for v, m in demo["map"].items())
                  + "."]
    elif demo and "error" in demo:
        lines += ["", f"The demo model's int8 run failed: {demo['error']}"]
    return lines


def _rewrite_names(results: dict) -> str:
    names = next((r["fusion"]["unfused"].get("skip_passes") for r in results.values()
                  if "skip_passes" in r.get("fusion", {}).get("unfused", {})), None)
    return ", ".join(f"`{n}`" for n in names) if names else "–"


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


def _reruns(meta: dict) -> list[str]:
    """Header lines for the stages measured again after the run (bench/run.py --rerun)."""
    return [f"- re-measured after it: the {r['stage']} stage of {', '.join(r['models'])}, "
            f"with `{r['command']}` on {r['date']} ({r['elapsed_min']:.1f} min; load average "
            f"{r['load_before']} before, {r['load_after']} after); every other figure is from "
            "the run above" for r in meta.get("reruns", [])]


def render(results: dict, meta: dict, int8_demo: dict | None = None,
           onnx_demos: dict | None = None) -> str:
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
        *_reruns(meta),
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, Linux "
        f"{m['kernel']}",
        f"- software: Python {m['python']}, mxnet {v.get('mxnet')}, gluoncv {v.get('gluoncv')}, "
        f"numpy {v.get('numpy')}, opencv-python {v.get('opencv-python')}, ncnn {v.get('ncnn')}, "
        f"onnx {v.get('onnx')}, onnxruntime {v.get('onnxruntime')}, openvino "
        f"{v.get('openvino', '?')}, ssdconv {v.get('ssdconv')}; "
        f"pnnx {v.get('pnnx', '?')} with torch {v.get('torch', '?')} in its own venv",
        "- weights: seeded random weights (seed 0) for every model, the same in every column: "
        "these numbers are about conversion and runtimes, not about detection accuracy.",
        *raw_note(results),
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
        f"Max |Δ| of the raw tensors, {raw_label(results)}:",
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
        "executor (`Symbol.bind`), MXNET_SUBGRAPH_BACKEND as the environment had it (unset, "
        "MXNet 1.9.1 activates its MKLDNN fusion backend); "
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
        "",
        "## ncnn: fused, unfused and ncnnoptimize",
        "",
        "ssdconv's ncnn writer does ncnnoptimize's rewrites itself (`ssdconv/backend/ncnn/"
        "fuse.py`). *fused*: ssdconv's ncnn model as above. *unfused*: `ssdconv convert "
        "PREFIX-symbol.json --target ncnn --config unfused.yaml`, the preset's `skip_passes` "
        "naming every ncnn rewrite (" + _rewrite_names(results) + "). *ncnnoptimize*: ncnn's "
        "own optimizer, built from ncnn's source (" + (f"`{meta['ncnnoptimize']}`"
                                                      if meta.get("ncnnoptimize") else
                                                      "not given: NCNNOPTIMIZE unset")
        + "), run as `ncnnoptimize IN.param IN.bin OUT.param OUT.bin 0` on the fused model "
        "and, for scale, on the unfused one; *lines*: the fuse_/eliminate_/replace_ lines it "
        "printed, one per rewrite it made; layers are the `.param` header's count before → "
        "after. Latency as in the speed table (ncnn default options, detections fetched), "
        "median ms.",
        "",
        *fusion_table(results, threads),
        "",
        *fusion_verdict(results),
        "",
        "## The ncnn route without ssdconv: mx2onnx → pnnx → ncnn",
        "",
        f"MXNet's ONNX export of the same seeded model, converted by `pnnx` "
        f"{v.get('pnnx', '?')} (PyPI, run as `{meta.get('pnnx', 'pnnx')} MODEL.onnx "
        "inputshape=[...] fp16=0`; fp16=0 keeps fp32 weights as ssdconv writes them). "
        "*whole model*: the whole export (its raw tensors added as outputs: an SSD's loc/conf, a "
        "YOLOv3's three prediction convs). *body*: only the network up to the raw tensors, no "
        "decoding or NMS, what is left to convert when the whole "
        "model does not. *body, γ:=1*: the same with every fix_gamma BatchNorm's stored γ set "
        "to 1, which separates mx2onnx's fix_gamma error (see the fidelity section) from "
        "pnnx's own. Converts = pnnx exits 0 and the ncnn package loads its .param/.bin; the "
        "time is the `pnnx` command's wall time (its Python wrapper imports torch first). The "
        "body's detections are GluonCV's own decoding and NMS run in MXNet on the ncnn "
        "raw tensors: they show what the raw differences do, not something the route ships (it "
        "has no post-processing). pnnx's models run in ncnn fp32 with Gluon's own "
        "preprocessed input; their outputs out0, out1, ... are mapped to the raw tensors by the "
        "ONNX output order.",
        "",
        *pnnx_tables(results, threads),
        "",
        "## ncnn int8",
        "",
        "bench/int8.py per model: ssdconv's fp32 ncnn model against its `--ncnn-int8` one "
        "(calibrated on the demo's generated training split) and, with NCNN_TOOLS, ncnn's own "
        "ncnn2table + ncnn2int8 on the same fp32 model and images. Median ms of one forward "
        "pass (detections fetched, ncnn default options); speed-up = fp32 / int8; raw error = "
        "rms of each raw tensor's difference from fp32 over the std of fp32's, on the sample "
        "images. *ssdconv int8 convolutions*: how many of the model's convolutions ssdconv "
        "made int8; the manifest lists the rest and why (a convolution whose output is a graph "
        "output, such as a YOLOv3's prediction convs, or whose input was zero on every "
        "calibration image). ncnn's tools make every convolution int8.",
        "",
        *int8_table(results, threads, int8_demo),
    ]
    onnx = onnx_report.section(results, onnx_demos, meta)
    if onnx:
        md += ["", *onnx]
    errors = _errors(results)
    if errors:
        md += ["", "## Failures", "", *errors]
    return "\n".join(md) + "\n"


def _span(lines: list[str], heading: str) -> tuple[int, int] | None:
    """Where the section under `heading` lies in `lines` (its heading to the next `## `, or the
    end), or None."""
    if heading not in lines:
        return None
    start = lines.index(heading)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
               len(lines))
    return start, end


def section_of(markdown: str, heading: str) -> list[str] | None:
    """The section under `heading` (heading included, trailing blank lines dropped), or None."""
    lines = markdown.rstrip("\n").split("\n")
    span = _span(lines, heading)
    if not span:
        return None
    section = lines[span[0]:span[1]]
    while section and not section[-1]:
        section.pop()
    return section


def replace_section(markdown: str, section: list[str]) -> str:
    """`markdown` with the section whose heading is `section`'s first line replaced by it (or
    inserted before the Failures section, else appended): a stage run of its own updates its
    table and leaves every other one as it was."""
    lines = markdown.rstrip("\n").split("\n")
    span = _span(lines, section[0])
    if span:
        start, end = span
        lines[start:end] = [*section, ""] if end < len(lines) else section
    else:
        at = lines.index("## Failures") if "## Failures" in lines else len(lines)
        block = ["", *section] if at == len(lines) else [*section, ""]
        lines[at:at] = block
    return "\n".join(lines) + "\n"
