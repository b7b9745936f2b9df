"""ssdconv's ncnn output fused (the default) and unfused, against ncnnoptimize run on it.

The claim under test: ssdconv's ncnn writer already does what ncnn's own optimizer
(`tools/ncnnoptimize.cpp`) would, so running that tool on ssdconv's output rewrites nothing.

* fused: ssdconv's ncnn model as the conversion table wrote it (`WORKDIR/ssdconv`);
* unfused: `ssdconv convert PREFIX-symbol.json --target ncnn --config unfused.yaml`, the preset
  naming every ncnn rewrite in `skip_passes` (`ssdconv.backend.ncnn.fuse.REWRITE_NAMES`; the IR
  passes, which Caffe shares, still run);
* ncnnoptimize: the tool (path from the environment variable NCNNOPTIMIZE; ncnn's C++ tools are
  in neither its wheel nor its sdist, so they are built from ncnn's source outside the repo) run
  on the fused model, and, for scale, on the unfused one. What it printed is counted: one
  `fuse_*` / `eliminate_*` / `replace_*` line per rewrite it made. Without NCNNOPTIMIZE those
  columns are "not run".

Layer counts are the `.param` header's; latency is speed.py's ncnn timing (default options,
detections fetched) of each model in its own process. Usage (what run.py calls):
`python bench/fusion.py MODEL WORKDIR --threads 1,2 --runs N --warmup K` (one JSON line).
Standalone it makes the seeded export and ssdconv's ncnn model first if WORKDIR lacks them;
`--runs 0` skips the latency (layer counts and ncnnoptimize's findings only).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

import conversion
import speed
from common import PY, child_env, param_layer_count, tail, timed_run
from conversion import ssdconv_cli

REWRITE_LINE = re.compile(r"^\s*((?:fuse|eliminate|replace)_\w+)", re.M)
TOOL_ENV = "NCNNOPTIMIZE"


def ncnnoptimize_path() -> str | None:
    """The ncnnoptimize binary the environment names, if it is there and runs."""
    path = os.environ.get(TOOL_ENV)
    return path if path and os.access(path, os.X_OK) else None


def rewrite_lines(output: str) -> dict[str, int]:
    """{rewrite name: lines printed} from ncnnoptimize's output (one line per rewrite)."""
    return dict(Counter(REWRITE_LINE.findall(output)))


def convert_unfused(workdir: Path, model: str, prefix: str) -> dict:
    """ssdconv with every ncnn rewrite skipped, through the CLI and a preset as a user would."""
    from ssdconv.backend.ncnn.fuse import REWRITE_NAMES

    fdir = workdir / "fusion"
    fdir.mkdir(parents=True, exist_ok=True)
    preset = fdir / "unfused.yaml"
    preset.write_text("skip_passes: [" + ", ".join(REWRITE_NAMES) + "]\n")
    out = fdir / "unfused"
    run = timed_run(ssdconv_cli() + ["convert", f"{prefix}-symbol.json", "--target", "ncnn",
                                     "--config", str(preset), "-o", str(out)], env=child_env())
    if run["rc"] != 0:
        return {"error": f"exit {run['rc']}: {tail(run['stderr'] or run['stdout'])}"}
    return {"dir": str(out), "skip_passes": list(REWRITE_NAMES),
            "layers": param_layer_count(out / f"{model}.param")}


def optimize(tool: str, src: Path, dst: Path, model: str) -> dict:
    """ncnnoptimize SRC/MODEL.param,.bin -> DST (fp32 weights, flag 0); the manifest is copied
    beside the result so speed.py runs it with the same input and blob names."""
    dst.mkdir(parents=True, exist_ok=True)
    run = timed_run([tool, str(src / f"{model}.param"), str(src / f"{model}.bin"),
                     str(dst / f"{model}.param"), str(dst / f"{model}.bin"), "0"])
    if run["rc"] != 0:
        return {"error": f"exit {run['rc']}: {tail(run['stderr'] or run['stdout'])}"}
    shutil.copy(src / f"{model}.json", dst / f"{model}.json")
    lines = rewrite_lines(run["stdout"] + "\n" + run["stderr"])
    return {"dir": str(dst), "rewrites": lines, "rewrite_lines": sum(lines.values()),
            "layers": param_layer_count(dst / f"{model}.param"), "wall_s": run["wall_s"]}


def _prerequisites(model: str, workdir: Path) -> str | None:
    """Run standalone, make what run.py's conversion stage leaves: the seeded export and
    ssdconv's (fused) ncnn model of it. None when they are there, else what failed."""
    if not (workdir / "export.json").exists():
        prep = timed_run([PY, str(Path(conversion.__file__)), "prepare", model, str(workdir)])
        if prep["rc"] != 0:
            return "prepare failed: " + tail(prep["stderr"])
    if not (workdir / "ssdconv" / f"{model}.param").exists():
        prefix = json.loads((workdir / "export.json").read_text())["prefix"]
        run = timed_run(ssdconv_cli() + ["convert", f"{prefix}-symbol.json", "--target", "ncnn",
                                         "-o", str(workdir / "ssdconv")])
        if run["rc"] != 0:
            return "ssdconv convert failed: " + tail(run["stderr"] or run["stdout"])
    return None


def measure(model: str, workdir: Path, threads: list[int], runs: int, warmup: int) -> dict:
    """The three models' layer counts and ncnnoptimize's findings; with runs > 0, latency."""
    missing = _prerequisites(model, workdir)
    if missing:
        return {"error": missing}
    export = json.loads((workdir / "export.json").read_text())
    fused = workdir / "ssdconv"
    out: dict = {
        "fused": {"dir": str(fused), "layers": param_layer_count(fused / f"{model}.param")},
        "unfused": convert_unfused(workdir, model, export["prefix"]),
    }
    tool = ncnnoptimize_path()
    for key, src in (("ncnnoptimize", fused), ("ncnnoptimize_unfused", out["unfused"].get("dir"))):
        if tool is None:
            out[key] = {"not_run": f"{TOOL_ENV} not set to an executable ncnnoptimize"}
        elif src is None:
            out[key] = {"error": "no unfused model"}
        else:
            out[key] = optimize(tool, Path(src), workdir / "fusion" / key, model)
    out["tool"] = tool
    for key in ("fused", "unfused", "ncnnoptimize"):
        if "dir" not in out[key] or runs <= 0:
            continue
        for n in threads:
            out[key][f"ncnn_{n}"] = speed.measure_one("ncnn", n, workdir, runs, warmup,
                                                      ncnn_dir=Path(out[key]["dir"]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=20, help="timed runs (0: no latency)")
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    print(json.dumps(measure(a.model, a.workdir, threads, a.runs, a.warmup)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
