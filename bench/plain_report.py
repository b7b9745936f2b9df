"""BENCHMARKS.md's plain-network section, from bench/plain_target.py's results (each model's
`plain` entry): conversion, fidelity per runtime and output, latency.

Every cell is a measured figure or says why there is none; the prose names what each column
ran, so the numbers cannot drift from their meaning.
"""

from __future__ import annotations

from common import not_run_row
from onnx_report import _e, latency_table, run_record
from plain_target import BUILT, RUNTIMES
from report import _reruns

HEADING = "## Plain networks"
RUNTIME_NAMES = {"opencv": "OpenCV", "ncnn": "ncnn", "onnxruntime": "onnxruntime",
                 "openvino": "OpenVINO"}
WEIGHTS = ("seeded random weights (seed 0): the zoo classifiers' `--seed 0`, MobileFaceNet's "
           "`seeded_params(sym, (4, 3, 112, 112), seed=0)` of tests/insightface_models.py "
           "(BatchNorm statistics from a seeded batch).")
LATENCY_COLUMNS = (("opencv", "OpenCV"), ("ncnn", "ncnn"), ("ort", "ORT"),
                   ("openvino", "OpenVINO"))


def _entries(results: dict, stage: str = "plain") -> dict[str, dict]:
    """Model -> its STAGE entry, for the models that have one."""
    return {m: r[stage] for m, r in results.items() if stage in r}


def _source(model: str) -> str:
    if model in BUILT:
        builder, size = BUILT[model]
        return f"checkpoint (`{builder}`), `--input-size {','.join(map(str, size))}`"
    return "zoo, `--seed 0`"


def conversion_table(entries: dict) -> list[str]:
    lines = ["| model | source | `--target all`: wall / peak RSS |", "|---|---|---|"]
    for model, e in entries.items():
        c = e.get("conversion", {})
        cell = c["error"] if "error" in c else f"{c['wall_s']:.1f} s / {c['peak_rss_mib']:.0f} MiB"
        lines.append(f"| {model} | {_source(model)} | {cell} |")
    return lines


def _cosine(x: float | None) -> str:
    """1 − its distance from 1: a cosine of 0.99999999999 reads 1 − 1.0e-11."""
    return "–" if x is None else f"1 − {max(1.0 - x, 0.0):.1e}"


def fidelity_table(entries: dict) -> list[str]:
    lines = ["| model | runtime | output | max raw error | its bound | Gluon f32's error | "
             "worst error / bound | top-1 same | min cosine | check |", "|---" * 10 + "|"]
    for model, e in entries.items():
        f = e.get("fidelity")
        if not f or "error" in f:
            lines.append(not_run_row(model, f, 8))
            continue
        for runtime in RUNTIMES:
            r = f.get(runtime) or {"error": "not run"}
            name = RUNTIME_NAMES[runtime]
            if "error" in r:
                lines.append(f"| {model} | {name} | {r['error']} |" + " |" * 7)
                continue
            for role, o in r["outputs"].items():
                lines.append(f"| {model} | {name} | {role} | {_e(o['err'])} | {_e(o['bound'])} "
                             f"| {_e(o['gluon32_err'])} | {o['ratio']:.2f} | "
                             f"{o['top1_same']}/{r['images']} | "
                             f"{_cosine(o['cosine'])} | {'PASS' if r['ok'] else 'FAIL'} |")
    return lines


def _images(entries: dict, default: str = "–") -> str:
    """The photos the fidelity figures were measured on."""
    for e in entries.values():
        names = (e.get("fidelity") or {}).get("images")
        if names:
            return ", ".join(names)
    return default


def latency_prose(meta: dict, fetched: str, extra: str = "") -> str:
    """What a stage's latency table timed: the package's four runners as deployed, fetching
    `fetched`; `extra`: what its other columns ran."""
    return (f"Latency, median ms of {meta['runs']} runs after {meta['warmup']} warm-up runs, "
            "one process per runtime and thread count (T), on "
            f"{meta['image']} resized to the network's input, all measured in this stage, "
            "through the package's runners' `timed` hook: the input prepared beforehand, the "
            f"forward and the fetch of {fetched} timed. Run as deployed: OpenCV (caffe) with "
            "Winograd on (its default), ncnn with its default options (fp16 storage and "
            "arithmetic where the CPU has them; light mode off, as the package's runner keeps "
            "it), onnxruntime (*ORT*) and OpenVINO (CPU, f32 hint) on ssdconv's ONNX" + extra
            + ".")


def section(data: dict) -> list[str]:
    """The section of a `run.py --stage plain` run, headed by its run's record."""
    entries, meta = _entries(data["results"]), data["meta"]
    if not entries:
        return [HEADING, "", "No plain network was measured."]
    return [
        HEADING,
        "",
        *run_record(meta, WEIGHTS, pnnx=False)[:-1],
        *_reruns(meta),
        "",
        "bench/plain_target.py per model, in its own folder: `ssdconv convert SOURCE --target "
        "all` (caffe, ncnn and ONNX) timed as a whole process. A built model is saved as an "
        "MXNet checkpoint first (untimed) and converted from its exported symbol.",
        "",
        *conversion_table(entries),
        "",
        f"Fidelity on the sample photos ({_images(entries)}) through the package's own staged "
        "check (`run_check` on the conversion loaded from its manifest; OpenCV with Winograd "
        "off, ncnn exact float32, OpenVINO with an f32 hint). *max raw error*: the largest "
        "|Δ| of the output against float64 MXNet over the images; *its bound*: the bound "
        "the check applied on that image (3× Gluon float32's own error, at least 1e-4, or "
        "1e-4 of the output's peak when that is below 1); *Gluon f32's error*: float32 "
        "MXNet's own distance from float64 on that image; *worst error / bound*: the largest "
        "ratio over the images; *top-1 same*: images whose top-1 index equals Gluon "
        "float32's (for an embedding too: its largest component); *min cosine*: the smallest "
        "cosine of the output with float64's; *check*: the check's verdict on every image.",
        "",
        *fidelity_table(entries),
        "",
        latency_prose(meta, "the manifest's outputs"),
        "",
        *latency_table(entries, meta["threads"], LATENCY_COLUMNS),
    ]
