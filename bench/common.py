"""Shared helpers of the benchmark scripts: paths, the model list, child processes, machine facts.

Every measurement that depends on process start-up, thread counts or MXNet's environment runs in
a child process, so this module imports nothing heavy. The environment is snapshotted here, so
children see the environment the user started the bench with.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from ssdconv.shipped import SAMPLES_DIR

BASE_ENV = dict(os.environ)
BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SAMPLES = SAMPLES_DIR
PY = sys.executable

DEFAULT_MODELS = (
    "ssd_300_mobilenet0.25_voc", "ssd_512_mobilenet1.0_voc", "ssd_300_vgg16_atrous_voc",
    "ssd_512_resnet50_v1_voc", "ssd_512_resnet101_v2_voc", "ssd_300_resnet34_v1b_voc",
    "ssd_300_mobilenet1.0_lite_coco", "ssd_512_vgg16_atrous_voc", "ssd_512_resnet18_v1_voc",
    "ssd_512_resnet152_v2_voc",
)
# GluonCV's YOLOv3s: in the default run after the SSDs (BENCHMARKS.md has rows for both
# families); `--models yolo` runs only them
YOLO_MODELS = ("yolo3_mobilenet0.25_voc", "yolo3_mobilenet1.0_voc", "yolo3_darknet53_voc")
# the plain-network stage's models (bench/plain_target.py, `run.py --stage plain`): two GluonCV
# classifiers and insightface's MobileFaceNet (built by tests/insightface_models.py)
PLAIN_MODELS = ("resnet50_v2", "mobilenetv2_1.0", "mobilefacenet")
# the RetinaFace stage's models (bench/retinaface_target.py, `run.py --stage retinaface`):
# insightface's mnet.25 and R50, built by tests/retinaface_models.py
RETINAFACE_MODELS = ("mnet25", "r50")
MODEL_GROUPS = {"ssd": DEFAULT_MODELS, "yolo": YOLO_MODELS, "plain": PLAIN_MODELS,
                "retinaface": RETINAFACE_MODELS}


def expand_models(spec: str) -> list[str]:
    """`--models`: comma-separated zoo names, where `ssd`, `yolo`, `plain` and `retinaface`
    stand for DEFAULT_MODELS, YOLO_MODELS, PLAIN_MODELS and RETINAFACE_MODELS (any other name
    is passed on: ssdconv itself says what it cannot load)."""
    out: list[str] = []
    for name in (m.strip() for m in spec.split(",")):
        for model in MODEL_GROUPS.get(name, (name,) if name else ()):
            if model not in out:
                out.append(model)
    return out


def manifest_role(role: str) -> str:
    """The manifest `blobs` key a runner's role comes from: `outputs.1` (one blob of a list,
    ssdconv.verify.runners.blobs_by_role) -> `outputs`; `loc` -> `loc`."""
    return role.split(".", 1)[0]


def by_manifest_role(values: dict[str, float]) -> dict[str, float]:
    """Figures per raw tensor (the head's roles: SSD `loc`, `conf`; YOLOv3 `outputs.0`, ...)
    folded to one per manifest role, keeping the largest: an SSD's stay loc and conf, a
    YOLOv3's three prediction outputs become one `outputs` figure, so a table has one cell
    layout per family whatever its level count."""
    out: dict[str, float] = {}
    for role, value in values.items():
        key = manifest_role(role)
        out[key] = max(out[key], value) if key in out else value
    return out


def pnnx_command() -> list[str]:
    """The `pnnx` command: $PNNX, else the one bench/setup.sh installs in .venv-pnnx (pnnx needs
    torch, and GluonCV refuses to import beside torch >= 2, so it cannot share .venv-bench)."""
    return [BASE_ENV.get("PNNX") or str(ROOT / ".venv-pnnx" / "bin" / "pnnx")]


def child_env(threads: int | None = None, **extra: str) -> dict[str, str]:
    """The start-up environment, with every OpenMP/MXNet thread knob pinned when asked."""
    env = dict(BASE_ENV)
    env.setdefault("PYTHONWARNINGS", "ignore")
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MXNET_OMP_MAX_THREADS=str(threads),
                   MXNET_CPU_WORKER_NTHREADS="1", OPENBLAS_NUM_THREADS=str(threads))
    env.update(extra)
    return env


def timed_run(cmd: list[str], env: dict | None = None, cwd: str | Path | None = None,
              timeout: float | None = None) -> dict:
    """Run `cmd` to completion: wall seconds from fork to reap and the child's own peak RSS.

    os.wait4 returns the rusage of exactly this child (and the grandchildren it reaped), so
    nothing else in this process pollutes the figure; ru_maxrss is in KiB on Linux. After
    `timeout` seconds the child is killed and "timed_out" is set (rc is then -9). Linux counts
    the spawning process's own peak RSS in the child's (exec keeps the high-water mark of the
    memory it replaces), so "spawner_rss_mib" records this process's at the spawn: a child
    whose peak equals it used at most that much.
    """
    import resource
    import threading

    spawner = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env or child_env(), cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    timer = threading.Timer(timeout, proc.kill) if timeout else None
    if timer:
        timer.start()
    out, err = _drain(proc)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    timed_out = bool(timer) and not timer.is_alive() and wall >= timeout
    if timer:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024.0, "rc": proc.returncode,
            "stdout": out, "stderr": err, "timed_out": timed_out, "spawner_rss_mib": spawner}


def _drain(proc: subprocess.Popen) -> tuple[str, str]:
    """Read both pipes to EOF without reaping the child (wait4 must get its rusage)."""
    import threading

    chunks: dict[str, str] = {}

    def read(name, stream):
        chunks[name] = stream.read()
        stream.close()

    threads = [threading.Thread(target=read, args=(n, s))
               for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return chunks["out"], chunks["err"]


def run_json(cmd: list[str], env: dict | None = None, timeout: float | None = None) -> dict:
    """Run a bench script that prints one JSON object as its last stdout line."""
    res = subprocess.run(cmd, env=env or child_env(), capture_output=True, text=True,
                         timeout=timeout)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode != 0 or not lines:
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {res.returncode}: " + " | ".join(tail)[-400:]}
    return json.loads(lines[-1])


def tail(text: str, n: int = 2) -> str:
    return " | ".join(text.strip().splitlines()[-n:])[-300:]


def sample_images(first: int = 0) -> list[str]:
    """The sample photos the fidelity figures are measured on, sorted; `first`: only that many
    (0: all)."""
    images = sorted(str(p) for p in SAMPLES.glob("*.jpg"))
    return images[:first] if first else images


def brief(text: str, limit: int = 300) -> str:
    """An error message on one line, at most about `limit` characters: its start and its end,
    since runtimes put the call site first and the reason last (onnxruntime: "... graph_utils.cc
    ... FAIL : graph.cc:4142 ... Attempt to replace the existing tensor")."""
    flat = " ".join(text.split())
    half = limit // 2
    return flat if len(flat) <= limit else f"{flat[:half]} … {flat[-half:]}"


def param_layer_count(param_file: str | Path) -> int:
    """Layer count of an ncnn .param: the first number of its second line."""
    with open(param_file) as f:
        f.readline()
        return int(f.readline().split()[0])


def machine() -> dict:
    """What the numbers were measured on: CPU, cores, RAM and the runtimes' versions."""
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = 0.0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                ram = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    code = ("import json, warnings; warnings.simplefilter('ignore'); import importlib.metadata "
            "as m\nv = {}\nfor p in ('mxnet', 'gluoncv', 'numpy', 'opencv-python', 'ncnn', "
            "'onnx', 'onnxruntime', 'openvino', 'ssdconv'):\n    try: v[p] = m.version(p)\n"
            "    except m.PackageNotFoundError: v[p] = 'not installed'\nprint(json.dumps(v))")
    versions = run_json([PY, "-c", code])
    pnnx_py = Path(pnnx_command()[0]).with_name("python")
    pnnx = run_json([str(pnnx_py), "-c", code.replace("'ssdconv'", "'pnnx', 'torch'")]) \
        if pnnx_py.exists() else {}
    if isinstance(versions, dict) and "error" not in versions:
        versions.update({k: pnnx.get(k, "not installed") for k in ("pnnx", "torch")})
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(ram, 1),
            "python": platform.python_version(), "kernel": platform.release(),
            "versions": versions}


def stage_start(script: str, model: str, workdir: Path, n_images: int, conversion) -> dict:
    """The start of a stage that converts its own files (bench/onnx_target.py,
    bench/plain_target.py): WORKDIR emptied, `conversion(model, workdir)`'s entry, then, if it
    converted, SCRIPT's `fidelity` of the model on the first N sample images in one child
    process."""
    import shutil

    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    out: dict = {"conversion": conversion(model, workdir)}
    if "error" not in out["conversion"]:
        out["fidelity"] = run_json([PY, script, "fidelity", model, str(workdir), "--images",
                                    str(n_images)], env=child_env())
    return out


def stage_main(doc: str, prepare, fidelity, images=None,
               options: tuple[tuple[str, dict], ...] = (), steps: dict | None = None) -> int:
    """Such a stage's command line: `prepare MODEL WORKDIR [OPTIONS]` or `fidelity MODEL
    WORKDIR [--images N]`, printing the step's JSON on one line. `images(N)`: the photos
    fidelity runs on (default `sample_images`); `options`: (flag, argparse keywords) of
    prepare's own options, passed to it by their names; `steps`: more steps called as
    fidelity is, by name."""
    import argparse

    steps = {"fidelity": fidelity, **(steps or {})}
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("what", choices=("prepare", *steps))
    ap.add_argument("model")
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--images", type=int, default=0, help="use the first N samples (0: all)")
    for flag, kw in options:
        ap.add_argument(flag, **kw)
    a = ap.parse_args()
    if a.what == "prepare":
        names = [flag.lstrip("-").replace("-", "_") for flag, _ in options]
        print(json.dumps(prepare(a.model, a.workdir, **{k: getattr(a, k) for k in names})))
    else:
        print(json.dumps(steps[a.what](a.model, a.workdir, (images or sample_images)(a.images))))
    return 0


def not_run_row(model: str, entry: dict | None, cells: int) -> str:
    """A table row for a model whose stage has no figures: its error (or "not run") in the
    first cell after the model's, then `cells` empty ones."""
    return f"| {model} | {(entry or {}).get('error', 'not run')} |" + " |" * cells
