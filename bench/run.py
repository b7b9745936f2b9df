"""Run the whole benchmark and write BENCHMARKS.md: conversion, fidelity, deployed speed.

    .venv-bench/bin/python bench/run.py                       # the full run (bench/setup.sh first)
    .venv-bench/bin/python bench/run.py --quick               # one small model, few runs
    .venv-bench/bin/python bench/run.py --models a,b --runs 30
    .venv-bench/bin/python bench/run.py --report-only         # re-render from WORK/results.json

Models run one after another, and each measurement in its own process, so a model that fails
is reported as failed and the others still run. Results are saved to WORK/results.json after
every model; converted models and exports stay in WORK (default build/bench, git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import conversion
import report
import speed
from common import BENCH, DEFAULT_MODELS, PY, ROOT, child_env, machine, run_json


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", help="comma-separated zoo names (default: the ten in "
                    "common.DEFAULT_MODELS)")
    ap.add_argument("--runs", type=int, help="timed runs per latency (default 20)")
    ap.add_argument("--warmup", type=int, help="warm-up runs per latency (default 3)")
    ap.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    ap.add_argument("--conv-runs", type=int, default=1, help="runs per conversion (median)")
    ap.add_argument("--images", type=int, help="first N sample images for fidelity (default "
                    "all)")
    ap.add_argument("--quick", action="store_true", help="validation: the first model, 5 runs, "
                    "1 warm-up, 2 images")
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "bench")
    ap.add_argument("--output", type=Path, help="default BENCHMARKS.md; with --quick "
                    "WORK/BENCHMARKS-quick.md, so a validation run never replaces the real one")
    ap.add_argument("--report-only", action="store_true", help="render WORK/results.json again")
    a = ap.parse_args(argv)
    q = a.quick
    a.models = [m.strip() for m in a.models.split(",") if m.strip()] if a.models else (
        list(DEFAULT_MODELS[:1]) if q else list(DEFAULT_MODELS))
    a.runs = a.runs or (5 if q else 20)
    a.warmup = a.warmup if a.warmup is not None else (1 if q else 3)
    a.images = a.images if a.images is not None else (2 if q else 0)
    a.threads = [int(t) for t in a.threads.split(",")]
    a.output = a.output or (a.work / "BENCHMARKS-quick.md" if q else ROOT / "BENCHMARKS.md")
    return a


def _load() -> str:
    """The 1-minute load average: the report flags a CPU shared with other work."""
    return f"{os.getloadavg()[0]:.2f}"


def bench_model(model: str, a: argparse.Namespace) -> dict:
    workdir = a.work / model
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    out: dict = {}
    t = time.time()
    out["conversion"] = conversion.measure(model, workdir, a.conv_runs)
    print(f"  conversion {time.time() - t:.0f}s", flush=True)
    t = time.time()
    out["fidelity"] = run_json([PY, str(BENCH / "fidelity.py"), model, str(workdir),
                                "--images", str(a.images)], env=child_env())
    print(f"  fidelity {time.time() - t:.0f}s", flush=True)
    t = time.time()
    if "error" in out["conversion"]:
        out["speed"] = {"error": "no converted model"}
    else:
        out["speed"] = speed.measure(workdir, a.threads, a.runs, a.warmup)
    print(f"  speed {time.time() - t:.0f}s", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    a = _args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    saved = a.work / "results.json"
    if a.report_only:
        data = json.loads(saved.read_text())
    else:
        start = time.time()
        argv_shown = sys.argv[1:] if argv is None else argv
        cmd = " ".join(shlex.quote(x) for x in [".venv-bench/bin/python", "bench/run.py",
                                                *argv_shown])
        meta = {"command": cmd, "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "machine": machine(), "runs": a.runs, "warmup": a.warmup, "quick": a.quick,
                "threads": a.threads, "conv_runs": a.conv_runs,
                "image": speed.IMAGE.relative_to(ROOT).as_posix(), "load_before": _load()}
        data = {"meta": meta, "results": {}}
        for i, model in enumerate(a.models, 1):
            print(f"[{i}/{len(a.models)}] {model}", flush=True)
            data["results"][model] = bench_model(model, a)
            meta["elapsed_min"] = (time.time() - start) / 60
            meta["load_after"] = _load()
            saved.write_text(json.dumps(data, indent=1))
    a.output.write_text(report.render(data["results"], data["meta"]))
    print(f"wrote {a.output} (results in {saved})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
