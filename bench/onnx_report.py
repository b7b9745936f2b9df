"""BENCHMARKS.md's ONNX section, from bench/onnx_target.py's results (each zoo model's `onnx`
entry and the demos'): conversion, fidelity row for row, pnnx on ssdconv's body, latency.

Every cell is a measured figure or says why there is none; the prose names what each column
ran, so the numbers cannot drift from their meaning.
"""

from __future__ import annotations

from common import by_manifest_role, not_run_row


def _e(x: float | None) -> str:
    return "–" if x is None else f"{x:.1e}"


def _raw(f: dict | None) -> str:
    """A fidelity entry's raw errors by manifest role (SSD loc / conf, YOLOv3 outputs)."""
    if not f or "error" in f:
        return "failed" if f else "–"
    errs = {k[:-len("_err")]: v for k, v in f.items() if k.endswith("_err") and k != "prior_err"}
    return " / ".join(_e(v) for v in by_manifest_role(errs).values())


def _rows(f: dict | None) -> str:
    """Rows equal to GluonCV's at the same position of those compared; ties and unmatched."""
    if not f or "error" in f:
        return "failed" if f else "–"
    cell = f"{f['matched']}/{f['compared']}"
    notes = []
    if f["explained_ties"]:
        notes.append(f"{f['explained_ties']} tie rows")
    if f["unmatched_gluon"] or f["unmatched_runtime"]:
        notes.append(f"−{f['unmatched_gluon']} +{f['unmatched_runtime']}")
    return cell + (f" ({', '.join(notes)})" if notes else "")


def _size(c: dict) -> str:
    return "–" if c.get("size_mib") is None else f"{c['size_mib']:.1f} MiB"


def _conv(c: dict | None) -> str:
    if not c:
        return "–"
    if "error" in c:
        return "failed"
    return f"{c['wall_s']:.1f} s / {c['peak_rss_mib']:.0f} MiB / {_size(c)}"


def _entries(results: dict, demos: dict | None) -> dict[str, dict]:
    """Model -> its ONNX stage entry: the zoo models', then the demos'."""
    out = {m: r["onnx"] for m, r in results.items() if "onnx" in r}
    out.update({f"{d} (demo)": e for d, e in (demos or {}).items()})
    return out


def conversion_table(entries: dict) -> list[str]:
    lines = ["| model | ssdconv `--target onnx` | mx2onnx |", "|---|---|---|"]
    for model, e in entries.items():
        c = e.get("conversion", {})
        if "error" in c:
            lines.append(f"| {model} | {c['error']} | |")
            continue
        lines.append(f"| {model} | {_conv(c.get('ssdconv'))} | {_conv(c.get('mx2onnx'))} |")
    return lines


def _mx2onnx(m: dict | None) -> tuple[str, str, str]:
    """mx2onnx's cells: raw error, rows, matched sets; or where it stopped."""
    if not m:
        return "–", "–", "–"
    if not m.get("loads", True) or "error" in m:
        where = {"mx2onnx": "export fails", "onnxruntime": "does not load",
                 "run": "fails to run"}.get(m.get("stage"), "failed")
        return where, "–", "–"
    rows, sets = m["rows"], m["sets"]
    extra = f" (+{sets['unmatched_runtime']})" if sets["unmatched_runtime"] else ""
    return (_raw(rows), f"{rows['matched']}/{rows['compared']}",
            f"{sets['matched']}/{sets['compared']}{extra}")


def _pnnx(p: dict | None) -> tuple[str, str]:
    if not p:
        return "–", "–"
    if "error" in p:
        return "failed", "–"
    if "not_run" in p:
        return "not run", "–"
    if not p.get("converted"):
        return f"no: {p.get('first_error', '?')}", "–"
    f = p.get("fidelity", {})
    if "error" in f:
        return "yes, fails to run", "–"
    extra = f" (+{f['unmatched_runtime']})" if f["unmatched_runtime"] else ""
    return f"yes, {p['layers']} layers", f"{_raw(f)}; {f['matched']}/{f['compared']}{extra}"


def fidelity_table(entries: dict) -> list[str]:
    lines = ["| model | raw, ORT | raw, OpenVINO | rows, ORT | rows, OpenVINO | mx2onnx raw | "
             "mx2onnx rows | mx2onnx sets | pnnx on ssdconv's body | its raw; sets |",
             "|---" * 10 + "|"]
    for model, e in entries.items():
        f = e.get("fidelity")
        if not f or "error" in f:
            lines.append(not_run_row(model, f, 9))
            continue
        ort, ov = f.get("onnxruntime"), f.get("openvino")
        lines.append(f"| {model} | {_raw(ort)} | {_raw(ov)} | {_rows(ort)} | {_rows(ov)} | "
                     + " | ".join(_mx2onnx(f.get("mx2onnx"))) + " | "
                     + " | ".join(_pnnx(f.get("pnnx_body"))) + " |")
    return lines


LATENCY_COLUMNS = (("ort", "ssdconv ORT"), ("openvino", "ssdconv OpenVINO"),
                   ("mx2onnx_ort", "mx2onnx ORT"), ("ncnn", "ncnn"), ("opencv", "OpenCV"),
                   ("pnnx_body", "pnnx body, ncnn"))


def _ms(s: dict | None) -> str:
    if not s:
        return "–"
    return "failed" if "error" in s else f"{s['median_ms']:.1f}"


def latency_table(entries: dict, threads: list[int],
                  columns: tuple[tuple[str, str], ...] = LATENCY_COLUMNS) -> list[str]:
    """Median ms per model of each (latency key, column name) of `columns` at each thread
    count (the entry's `latency[KEY_T]`)."""
    cols = [(k, n, t) for k, n in columns for t in threads]
    lines = ["| model | " + " | ".join(f"{n} {t}T" for _, n, t in cols) + " |",
             "|---" * (len(cols) + 1) + "|"]
    for model, e in entries.items():
        lat = e.get("latency", {})
        lines.append(f"| {model} | " + " | ".join(_ms(lat.get(f"{k}_{t}")) for k, _, t in cols)
                     + " |")
    return lines


def _totals(entries: dict, runtime: str) -> tuple[int, int, int, int]:
    """Over every model: rows equal, rows compared, tie rows, models whose rows all equal."""
    same = compared = ties = exact = 0
    for e in entries.values():
        f = e.get("fidelity", {}).get(runtime)
        if not f or "error" in f:
            continue
        same += f["matched"]
        compared += f["compared"]
        ties += f["explained_ties"]
        exact += bool(f["rows_exact"])
    return same, compared, ties, exact


def summary(entries: dict) -> list[str]:
    """The section's measured headline, one line per runtime."""
    lines = []
    for runtime, name in (("onnxruntime", "onnxruntime"), ("openvino", "OpenVINO")):
        same, compared, ties, exact = _totals(entries, runtime)
        lines.append(f"- ssdconv's ONNX in {name}: {same} of {compared} rows equal to "
                     f"GluonCV's at the same position ({ties} listed as ties); every row equal "
                     f"for {exact} of {len(entries)} models.")
    loads = sum(1 for e in entries.values()
                if e.get("fidelity", {}).get("mx2onnx", {}).get("loads"))
    lines.append(f"- mx2onnx's export loads in onnxruntime for {loads} of {len(entries)} models.")
    converted = sum(1 for e in entries.values()
                    if e.get("fidelity", {}).get("pnnx_body", {}).get("converted"))
    lines.append(f"- pnnx converts ssdconv's ONNX body for {converted} of {len(entries)} "
                 "models.")
    return lines


DEMO_WEIGHTS = ("seeded random weights (seed 0) for the zoo models; the demos' own trained "
                "weights.")


def run_record(meta: dict, weights: str = DEMO_WEIGHTS, pnnx: bool = True) -> list[str]:
    """The header of a section measured as a run of its own (`run.py --stage STAGE`):
    command, date, load, machine, versions (`pnnx`'s too when the stage runs it), and what
    `weights` the models ran with."""
    m = meta["machine"]
    v = m["versions"]
    return [
        *(["> **Quick validation run** (`--quick`): few runs and images, not benchmark "
           "numbers.", ""] if meta.get("quick") else []),
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']} ({meta['elapsed_min']:.1f} min; load average "
        f"{meta['load_before']} before, {meta['load_after']} after: anything well above 0 "
        "means other work shared the CPU and the timings are noisy)",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, Linux "
        f"{m['kernel']}",
        f"- software: Python {m['python']}, mxnet {v.get('mxnet')}, gluoncv "
        f"{v.get('gluoncv')}, numpy {v.get('numpy')}, onnx {v.get('onnx')}, onnxruntime "
        f"{v.get('onnxruntime')}, openvino {v.get('openvino')}, opencv-python "
        f"{v.get('opencv-python')}, ncnn {v.get('ncnn')}, ssdconv {v.get('ssdconv')}"
        + (f"; pnnx {v.get('pnnx', '?')} with torch {v.get('torch', '?')} in its own venv"
           if pnnx else ""),
        f"- weights: {weights}",
        "",
    ]


def section(results: dict, demos: dict | None, meta: dict, own_run: bool = False) -> list[str]:
    """The ONNX section, or nothing when no ONNX stage ran; `own_run`: headed by its run's
    record (a `--stage onnx` run, apart from the other tables')."""
    entries = _entries(results, demos)
    if not entries:
        return []
    threads = meta["threads"]
    return [
        "## ONNX: ssdconv's ONNX against mx2onnx",
        "",
        *(run_record(meta) if own_run else []),
        "bench/onnx_target.py per model, in its own folder: `ssdconv convert MODEL --seed 0 "
        "--target onnx` (the demos: `--config samples/demo/NAME.yaml`, trained weights) and "
        "mx2onnx (`mx.onnx.export_model` on the same exported files), each timed as a whole "
        "process: wall time / peak RSS / file size.",
        "",
        *conversion_table(entries),
        "",
        "Fidelity on the sample photos. *raw*: max |Δ| of the head's raw tensors against "
        "float64 Gluon (loc / conf; a YOLOv3's outputs: the largest of its three). *rows*: "
        "ssdconv's ONNX (GluonCV's post-processing in the graph) through the package's own "
        "staged check in onnxruntime (*ORT*) and OpenVINO (CPU, f32 hint, the manifest's "
        "`onnx.openvino_iou_threshold` applied): rows equal to GluonCV's at the same position "
        "(same id, score within 1e-3, box IoU ≥ 0.99) of GluonCV's rows, summed over the "
        "images; *tie rows*: rows, on either side, whose partner sits at another position "
        "(equal scores ordered otherwise) or that only a float32 tie at the NMS threshold "
        "explains, listed by the check, never hidden; −g +r: rows left unmatched on GluonCV's "
        "and the runtime's side. *mx2onnx*: MXNet's export (the raw tensors added as outputs) "
        "in onnxruntime, rows equal at the same position by the same function, and matched as "
        "sets above the comparable score (as the fidelity section matches; +k: its detections "
        "with no GluonCV partner), or why it does not run. *pnnx on ssdconv's body*: "
        "ssdconv's ONNX cut at the raw tensors (`onnx.utils.extract_model`), converted by pnnx "
        "(`fp16=0`) and run in ncnn fp32; its detections are GluonCV's own decoding and NMS "
        "on its raw tensors, matched as sets.",
        "",
        *summary(entries),
        "",
        *fidelity_table(entries),
        "",
        f"Latency, median ms of {meta['runs']} runs after {meta['warmup']} warm-up runs, one "
        "process per runtime and thread count (T), on "
        f"{meta['image']} preprocessed outside the timed region, all measured in this stage. "
        "*ssdconv ORT / OpenVINO*: the package's runners (`Runner.timed`: forward and fetch of "
        "GluonCV's three outputs and the raw tensors); *mx2onnx ORT*: MXNet's export, "
        "initializers out of the graph inputs; *ncnn*, *OpenCV*: ssdconv's ncnn and caffe "
        "models of the same conversion, as the speed table runs them (detections fetched); "
        "*pnnx body, ncnn*: pnnx's ncnn model of ssdconv's body (raw tensors fetched, no "
        "post-processing). Seeded weights give every class about 1/21 of the softmax, so every "
        "box passes the 0.01 threshold and NMS work is inflated on the zoo rows; the demos show "
        "the head's cost on a trained score distribution.",
        "",
        *latency_table(entries, threads),
    ]
