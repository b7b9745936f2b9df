"""Run the whole benchmark and write BENCHMARKS.md: conversion, fidelity, deployed speed, the
ncnn fusion against ncnnoptimize, the pnnx route, ncnn int8 and the ONNX target.

    .venv-bench/bin/python bench/run.py                       # the full run: SSDs + YOLOv3s
    .venv-bench/bin/python bench/run.py --quick               # one small model, few runs
    .venv-bench/bin/python bench/run.py --models a,b --runs 30
    .venv-bench/bin/python bench/run.py --models yolo         # only the three GluonCV YOLOv3s
    .venv-bench/bin/python bench/run.py --report-only         # re-render from WORK/results.json
    .venv-bench/bin/python bench/run.py --rerun int8 --models yolo   # one stage again, see below
    .venv-bench/bin/python bench/run.py --stage plain         # plain networks, their own section
    .venv-bench/bin/python bench/run.py --stage retinaface --mxnet2ncnn PATH   # RetinaFace
    .venv-bench/bin/python bench/run.py --stage rknn          # RKNN simulator (make rknn-bench)

Models run one after another, and each measurement in its own process, so a model that fails
is reported as failed and the others still run. ncnn's C++ tools come from the environment
(NCNNOPTIMIZE=/path/to/ncnnoptimize, and NCNN_TOOLS=a folder with ncnn2table and ncnn2int8 for
int8.py); without them their columns say "not run". The int8 table is filled by bench/int8.py
when that file exists (see INT8 below), also on the demo model. Results are saved to
WORK/results.json after every model; converted models and exports stay in WORK (default
build/bench, git-ignored).

`--rerun STAGE` measures one self-contained stage again for --models after a change that only
that stage sees, keeping every other figure of WORK/results.json; the report's header names
the re-measured rows, their command and date, so the tables never pass one run off as another.
Only stages that convert their own models can be re-run (`RERUNNABLE`); `--rerun plain`
re-measures rows of the last `--stage plain` run (WORK/plain-results.json) and replaces only its
section; `--rerun retinaface` and `--rerun rknn` likewise (WORK/STAGE-results.json).

`--stage rknn` runs ssdconv's headless caffe and ONNX conversions in Rockchip's RKNN simulator
(bench/rknn_target.py, which drives bench/rknn_runner.py in .venv-rknn: bench/setup_rknn.sh),
fp16 and int8, against Gluon float32: raw maps, the C tail's detections, the demos' mAP.
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
from typing import NoReturn

import common
import conversion
import onnx_target
import plain_report
import plain_target
import pnnx_route
import report
import retinaface_report
import retinaface_target
import rknn_report
import rknn_target
import speed
from common import BENCH, PY, ROOT, child_env, expand_models, machine, run_json
from fusion import ncnnoptimize_path

# The int8 hook: bench/int8.py comes with the int8 conversion (`--ncnn-int8`); run.py runs it
# once per model and once on the shipped demo model (its mAP) and reads the entry of that
# model in the JSON file it writes (`--json`); report.int8_table says which keys it reads.
# Without the file the int8 table says "not run".
INT8 = BENCH / "int8.py"


def int8_stage(model: str, workdir: Path, a: argparse.Namespace) -> dict:
    """bench/int8.py on one model in its own process: its JSON entry for the model."""
    if not INT8.exists():
        return {"not_run": f"{INT8.relative_to(ROOT)} is not there"}
    out = workdir / "int8.json"
    cmd = [PY, str(INT8), model, "--threads", ",".join(map(str, a.threads)), "--runs",
           str(a.runs), "--warmup", str(a.warmup), "--workdir", str(workdir / "int8"),
           "--json", str(out)]
    if a.quick:
        cmd += ["--calibration", "20", "--test", "50"]
    run = common.timed_run(cmd, env=child_env())
    try:
        return json.loads(out.read_text())["models"][model]
    except (OSError, ValueError, KeyError):
        return {"error": f"exit {run['rc']}: {common.tail(run['stderr'] or run['stdout'])}"}




def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", help="comma-separated zoo names; `ssd` stands for the ten "
                    "SSDs of common.DEFAULT_MODELS, `yolo` for the three YOLOv3s of "
                    "common.YOLO_MODELS, `plain` for common.PLAIN_MODELS, `retinaface` for "
                    "common.RETINAFACE_MODELS (default: ssd,yolo; with --stage plain or "
                    "retinaface: that group)")
    ap.add_argument("--runs", type=int, help="timed runs per latency (default 20)")
    ap.add_argument("--warmup", type=int, help="warm-up runs per latency (default 3)")
    ap.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    ap.add_argument("--conv-runs", type=int, default=1, help="runs per conversion (median)")
    ap.add_argument("--images", type=int, help="first N sample images for fidelity (default "
                    "all)")
    ap.add_argument("--size", default="640,640", help="the retinaface stage's input size H,W "
                    "(default 640,640, insightface's)")
    ap.add_argument("--mxnet2ncnn", default=common.BASE_ENV.get("MXNET2NCNN"),
                    help="ncnn's tools/mxnet/mxnet2ncnn binary, for the retinaface stage's "
                    "column beside ssdconv (default $MXNET2NCNN; without it: not run)")
    ap.add_argument("--target-platform", default=rknn_target.PLATFORM, help="the rknn "
                    f"stage's RKNN target_platform (default {rknn_target.PLATFORM})")
    ap.add_argument("--dataset", help="the rknn stage's int8 calibration list, one "
                    "jpg/png/bmp/npy file a line (default: the demo's training images)")
    ap.add_argument("--count", type=int, help="the rknn stage's demo evaluation images "
                    f"(default {rknn_target.COUNT}, as `ssdconv eval`; --quick: 20)")
    ap.add_argument("--algorithms", default=",".join(rknn_target.ALGORITHMS),
                    help="the rknn stage's int8 quantized_algorithm values (mmse and "
                    "kl_divergence run on the demo SSD's caffe model only; default all three)")
    ap.add_argument("--quick", action="store_true", help="validation: the first model, 5 runs, "
                    "1 warm-up, 2 images")
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "bench")
    ap.add_argument("--output", type=Path, help="default BENCHMARKS.md; with --quick "
                    "WORK/BENCHMARKS-quick.md, so a validation run never replaces the real one")
    ap.add_argument("--report-only", action="store_true", help="render WORK/results.json again")
    ap.add_argument("--no-demo", action="store_true", help="skip the demo models' stages (int8 "
                    "mAP, ONNX)")
    ap.add_argument("--stage", choices=sorted(STAGE_SECTIONS), help="run only this stage for "
                    "--models (and the demos unless --no-demo) as a run of its own, saved in "
                    "WORK/STAGE-results.json, and replace that stage's section of --output "
                    "(its own header: command, date, machine), leaving the other tables as "
                    "they are")
    ap.add_argument("--rerun", choices=sorted(RERUNNABLE), help="measure this stage again for "
                    "--models (int8: and the demo, unless --no-demo) into WORK/results.json "
                    "(plain: WORK/plain-results.json, replacing only its section), keeping "
                    "every other figure")
    a = ap.parse_args(argv)
    q = a.quick
    own = next((s for s in (a.stage, a.rerun) if s in ("plain", "retinaface", "rknn")), None)
    if own == "rknn":
        if a.dataset:  # a malformed calibration list is refused before any work
            try:
                rknn_target.validate_dataset(a.dataset)
            except rknn_target.DatasetError as exc:
                _refuse(f"bad --dataset: {exc}")
        bad = [x for x in a.algorithms.split(",") if x not in rknn_target.ALGORITHMS]
        if bad:
            _refuse(f"unknown --algorithms {','.join(bad)} (known: "
                    f"{', '.join(rknn_target.ALGORITHMS)})")
        a.count = a.count if a.count is not None else (20 if q else rknn_target.COUNT)
    group = list(rknn_target.MODELS) if own == "rknn" else expand_models(own or "ssd,yolo")
    a.models = expand_models(a.models) if a.models else (group[:1] if q else group)
    a.runs = a.runs or (5 if q else 20)
    a.warmup = a.warmup if a.warmup is not None else (1 if q else 3)
    a.images = a.images if a.images is not None else (2 if q else 0)
    a.threads = [int(t) for t in a.threads.split(",")]
    a.size = [int(t) for t in a.size.split(",")]
    a.output = a.output or (a.work / "BENCHMARKS-quick.md" if q else ROOT / "BENCHMARKS.md")
    return a


def _shown(path: str) -> str:
    """A path as the report shows it: relative to the repo when inside it."""
    p = Path(path)
    return p.relative_to(ROOT).as_posix() if p.is_relative_to(ROOT) else path


def _load() -> str:
    """The 1-minute load average: the report flags a CPU shared with other work."""
    return f"{os.getloadavg()[0]:.2f}"


def demo_int8(a: argparse.Namespace) -> dict:
    """The int8 stage on the shipped demo model (its mAP in fp32, fp16 and int8)."""
    print("[demo] int8 mAP", flush=True)
    demo = a.work / "demo"
    shutil.rmtree(demo, ignore_errors=True)
    demo.mkdir(parents=True)
    return int8_stage("demo", demo, a)


def rerun_int8(data: dict, a: argparse.Namespace) -> list[str]:
    """The int8 stage again for a.models (and the demo unless --no-demo): what it re-measured."""
    for i, model in enumerate(a.models, 1):
        print(f"[{i}/{len(a.models)}] {model}: int8", flush=True)
        (a.work / model).mkdir(parents=True, exist_ok=True)
        data["results"][model]["int8"] = int8_stage(model, a.work / model, a)
    if a.no_demo:
        return list(a.models)
    data["int8_demo"] = demo_int8(a)
    return [*a.models, "the demo"]


def onnx_stage(model: str, a: argparse.Namespace) -> dict:
    """bench/onnx_target.py's stage on one model, in WORK/MODEL/onnx (its own conversions)."""
    t = time.time()
    out = onnx_target.measure(model, a.work / model / "onnx", a.images, a.threads, a.runs,
                              a.warmup)
    print(f"  onnx {time.time() - t:.0f}s", flush=True)
    return out


def onnx_demos(a: argparse.Namespace) -> dict:
    """The ONNX stage on both shipped demos (trained weights: the head's cost on a real score
    distribution), by demo name."""
    out = {}
    for demo in onnx_target.DEMOS:
        print(f"[demo] {demo}: onnx", flush=True)
        out[demo] = onnx_stage(demo, a)
    return out


def onnx_report_section(data: dict) -> list[str]:
    """The ONNX section of a `--stage onnx` run, headed by its own run's record."""
    return report.onnx_report.section(data["results"], data.get("onnx_demos"), data["meta"],
                                      own_run=True)


def rerun_onnx(data: dict, a: argparse.Namespace) -> list[str]:
    """The ONNX stage again for a.models (and both demos unless --no-demo); the machine
    record gains the versions of the runtimes the stage adds (OpenVINO), if it lacked them."""
    versions = data["meta"]["machine"]["versions"]
    for package, version in machine()["versions"].items():
        versions.setdefault(package, version)
    for i, model in enumerate(a.models, 1):
        print(f"[{i}/{len(a.models)}] {model}: onnx", flush=True)
        data["results"][model]["onnx"] = onnx_stage(model, a)
    if a.no_demo:
        return list(a.models)
    data["onnx_demos"] = onnx_demos(a)
    return [*a.models, *onnx_target.DEMOS]


def _own_stage(data: dict, a: argparse.Namespace, stage: str, measure) -> list[str]:
    """A stage that converts its own models, for a.models, each in WORK/MODEL/STAGE:
    `measure(model, workdir)` into the model's STAGE entry."""
    for i, model in enumerate(a.models, 1):
        print(f"[{i}/{len(a.models)}] {model}: {stage}", flush=True)
        t = time.time()
        data["results"].setdefault(model, {})[stage] = measure(model, a.work / model / stage)
        print(f"  {stage} {time.time() - t:.0f}s", flush=True)
    return list(a.models)


def plain_stage(data: dict, a: argparse.Namespace) -> list[str]:
    """bench/plain_target.py's stage for a.models (`--models plain` by default)."""
    return _own_stage(data, a, "plain", lambda model, workdir: plain_target.measure(
        model, workdir, a.images, a.threads, a.runs, a.warmup))


def retinaface_stage(data: dict, a: argparse.Namespace) -> list[str]:
    """bench/retinaface_target.py's stage for a.models (`--models retinaface` by default) at
    --size, with mxnet2ncnn's column when --mxnet2ncnn names it; a re-run keeps the run's
    size and mxnet2ncnn."""
    meta = data["meta"]
    for key, value in (("size", a.size), ("mxnet2ncnn", a.mxnet2ncnn)):
        if meta.setdefault(key, value) != value:
            _refuse(f"--{key} {value} (the run: {meta[key]}); re-measured rows must be "
                    "measured as the rest of the tables were")
    return _own_stage(data, a, "retinaface", lambda model, workdir: retinaface_target.measure(
        model, workdir, a.images, a.threads, a.runs, a.warmup, a.size, a.mxnet2ncnn))


def rknn_stage(data: dict, a: argparse.Namespace) -> list[str]:
    """bench/rknn_target.py's stage for a.models (`rknn_target.MODELS` by default), each in
    its own process; a re-run keeps the run's target platform, evaluation count, calibration
    list and algorithms."""
    meta = data["meta"]
    settings = {"target_platform": a.target_platform, "count": a.count, "dataset": a.dataset,
                "algorithms": a.algorithms}
    rk = meta.setdefault("rknn", {"platform": a.target_platform, **settings})
    for key, value in settings.items():
        if rk.get(key) != value:
            _refuse(f"--{key.replace('_', '-')} {value} (the run: {rk.get(key)}); re-measured "
                    "rows must be measured as the rest of the tables were")
    extra = ["--dataset", str(Path(a.dataset).resolve())] if a.dataset else []

    def measure(model: str, workdir: Path) -> dict:
        return run_json([PY, str(BENCH / "rknn_target.py"), model, str(workdir), "--count",
                         str(a.count), "--target-platform", a.target_platform,
                         "--algorithms", a.algorithms, *extra], env=child_env())

    return _own_stage(data, a, "rknn", measure)


# Stages that convert their own models (the others read WORK/MODEL's conversion stage), each
# re-measuring into the saved results and returning what it re-measured.
RERUNNABLE = {"int8": rerun_int8, "onnx": rerun_onnx, "plain": plain_stage,
              "retinaface": retinaface_stage, "rknn": rknn_stage}


# Stages that can run as a run of their own (`--stage`): the stage over a.models into the
# results dict, and its section of the report; the section replaces its heading's part of
# BENCHMARKS.md (`report.replace_section`).
STAGE_SECTIONS = {"onnx": (rerun_onnx, onnx_report_section),
                  "plain": (plain_stage, plain_report.section),
                  "retinaface": (retinaface_stage, retinaface_report.section),
                  "rknn": (rknn_stage, rknn_report.section)}


# The stages only a `--stage` run measures, by their section's heading: a whole run (or
# --report-only) carries the section over from the report as it was, and `--rerun STAGE`
# re-measures into WORK/STAGE-results.json and replaces only that section.
OWN_RUN_ONLY = {"plain": plain_report.HEADING, "retinaface": retinaface_report.HEADING,
                "rknn": rknn_report.HEADING}


def stage_run(a: argparse.Namespace, command: str) -> dict:
    """`--stage STAGE`: that stage alone, as one run with its own meta."""
    measure, _ = STAGE_SECTIONS[a.stage]
    meta = {"command": command, "date": _now(), "machine": machine(), "runs": a.runs,
            "warmup": a.warmup, "quick": a.quick, "threads": a.threads,
            "image": speed.IMAGE.relative_to(ROOT).as_posix(), "load_before": _load()}
    data = {"meta": meta, "results": {m: {} for m in a.models}}
    start = time.time()
    measure(data, a)
    meta.update(elapsed_min=(time.time() - start) / 60, load_after=_load())
    return data


def _command(argv: list[str] | None) -> str:
    """This run's command line as the report prints it."""
    shown = sys.argv[1:] if argv is None else argv
    return " ".join(shlex.quote(x) for x in [".venv-bench/bin/python", "bench/run.py", *shown])


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _refuse(message: str) -> NoReturn:
    """A bad request: one line on stderr, exit 2, nothing measured or written."""
    print(f"bench/run.py: {message}", file=sys.stderr)
    raise SystemExit(2)


def rerun(a: argparse.Namespace, saved: Path, command: str) -> dict:
    """`--rerun STAGE`: that stage again for a.models, written into the saved results with a
    record of what was re-measured (meta `reruns`, which the report's header lists)."""
    if not saved.exists():
        _refuse(f"--rerun needs an earlier run's {saved}; run the benchmark first")
    data = json.loads(saved.read_text())
    unknown = [m for m in a.models if m not in data["results"]]
    if unknown:
        _refuse(f"--rerun: {', '.join(unknown)} not in {saved}; a re-run only replaces rows "
                "of the run it belongs to")
    meta = data["meta"]
    settings = {"quick": a.quick, "runs": a.runs, "warmup": a.warmup, "threads": a.threads}
    differ = [f"--{k} {v} (the run: {meta[k]})" for k, v in settings.items() if meta[k] != v]
    if differ:
        _refuse(f"--rerun: {'; '.join(differ)}; re-measured rows must be measured as the rest "
                "of the tables were")
    record = {"stage": a.rerun, "command": command, "date": _now(), "load_before": _load()}
    start = time.time()
    record["models"] = RERUNNABLE[a.rerun](data, a)
    record.update(elapsed_min=(time.time() - start) / 60, load_after=_load())
    meta.setdefault("reruns", []).append(record)
    saved.write_text(json.dumps(data, indent=1))
    return data


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
    timing = ["--threads", ",".join(map(str, a.threads)), "--runs", str(a.runs),
              "--warmup", str(a.warmup)]  # as fusion.py and int8.py take them
    t = time.time()
    if "error" in out["conversion"]:
        out["fusion"] = {"error": "no converted model"}
    else:
        out["fusion"] = run_json([PY, str(BENCH / "fusion.py"), model, str(workdir), *timing],
                                 env=child_env())
    print(f"  fusion {time.time() - t:.0f}s", flush=True)
    t = time.time()
    out["pnnx"] = pnnx_route.measure(model, workdir, a.images, a.threads, a.runs, a.warmup)
    print(f"  pnnx route {time.time() - t:.0f}s", flush=True)
    t = time.time()
    out["int8"] = int8_stage(model, workdir, a)
    print(f"  int8 {time.time() - t:.0f}s", flush=True)
    out["onnx"] = onnx_stage(model, a)
    return out


def main(argv: list[str] | None = None) -> int:
    a = _args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    saved = a.work / "results.json"
    stage = a.stage or (a.rerun if a.rerun in OWN_RUN_ONLY else None)
    if stage:
        saved = a.work / f"{stage}-results.json"
        if a.rerun:
            rerun(a, saved, _command(argv))
        elif not a.report_only:
            saved.write_text(json.dumps(stage_run(a, _command(argv)), indent=1))
        data = json.loads(saved.read_text())
        _, section = STAGE_SECTIONS[stage]
        old = a.output.read_text() if a.output.exists() else "# Benchmarks\n"
        a.output.write_text(report.replace_section(old, section(data)))
        print(f"wrote the {stage} section of {a.output} (results in {saved})")
        return 0
    if a.report_only:
        data = json.loads(saved.read_text())
    elif a.rerun:
        data = rerun(a, saved, _command(argv))
    else:
        start = time.time()
        meta = {"command": _command(argv), "date": _now(),
                "machine": machine(), "runs": a.runs, "warmup": a.warmup, "quick": a.quick,
                "threads": a.threads, "conv_runs": a.conv_runs,
                "image": speed.IMAGE.relative_to(ROOT).as_posix(), "load_before": _load(),
                "ncnnoptimize": ncnnoptimize_path(), "pnnx": _shown(common.pnnx_command()[0])}
        data = {"meta": meta, "results": {}}
        for i, model in enumerate(a.models, 1):
            print(f"[{i}/{len(a.models)}] {model}", flush=True)
            data["results"][model] = bench_model(model, a)
            meta["elapsed_min"] = (time.time() - start) / 60
            meta["load_after"] = _load()
            saved.write_text(json.dumps(data, indent=1))
        if not a.no_demo:
            data["onnx_demos"] = onnx_demos(a)
        if INT8.exists() and not a.no_demo:
            data["int8_demo"] = demo_int8(a)
            meta["elapsed_min"] = (time.time() - start) / 60
            meta["load_after"] = _load()
            saved.write_text(json.dumps(data, indent=1))
    text = report.render(data["results"], data["meta"], data.get("int8_demo"),
                         data.get("onnx_demos"))
    old = a.output.read_text() if a.output.exists() else ""
    for heading in OWN_RUN_ONLY.values():  # sections this run does not measure stay as they were
        kept = report.section_of(old, heading)
        if kept:
            text = report.replace_section(text, kept)
    a.output.write_text(text)
    print(f"wrote {a.output} (results in {saved})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
