"""Conversion cost: a whole `ssdconv convert` process against MXNet's own ONNX export.

Both sides are timed as separate processes from fork to exit (interpreter start-up and the
MXNet import included, as a user pays them), and peak RSS is the child's own ru_maxrss.

* ssdconv (zoo name): `ssdconv convert MODEL --seed 0 --target all`, which also builds the Gluon
  net, exports it and seeds its weights;
* ssdconv (symbol): `ssdconv convert PREFIX-symbol.json --target all` on exported files, the
  like-for-like comparison with the exporter;
* mx2onnx: a process that only calls `mx.onnx.export_model` on the same exported files.

The exported files come from `ssdconv.models.load_model(name, seed=0)`, so every runtime in the
bench sees exactly the weights the zoo-name conversion seeds. Usage (what run.py calls):

    python bench/conversion.py prepare MODEL WORKDIR    # writes WORKDIR/export/, untimed
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from common import PY, child_env, tail, timed_run

MX2ONNX = """\
import sys, warnings
warnings.simplefilter("ignore")
import numpy as np, mxnet as mx
sym, params, shape, out = sys.argv[1:5]
mx.onnx.export_model(sym, params, [tuple(int(s) for s in shape.split(","))], [np.float32], out)
"""


def export_prefix(workdir: Path, model: str) -> Path:
    return workdir / "export" / model


def prepare(model: str, workdir: Path) -> dict:
    """Write PREFIX-symbol.json + PREFIX-0000.params of the seeded zoo model (seed 0)."""
    from ssdconv.models import load_model
    from ssdconv.mxnet.load import save_exported

    loaded = load_model(model, seed=0)
    g = loaded.graph
    prefix = export_prefix(workdir, model)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    save_exported(g, str(prefix))
    info = {"model": model, "input_shape": list(g.input_shape), "prefix": str(prefix)}
    (workdir / "export.json").write_text(json.dumps(info, indent=1))
    return info


def ssdconv_cli() -> list[str]:
    """The ssdconv command of this interpreter's environment."""
    exe = Path(PY).with_name("ssdconv")
    return [str(exe)] if exe.exists() else [PY, "-m", "ssdconv"]


def _summary(runs: list[dict]) -> dict:
    ok = [r for r in runs if r["rc"] == 0]
    if not ok:
        return {"error": f"exit {runs[-1]['rc']}: {tail(runs[-1]['stderr'] or runs[-1]['stdout'])}"}
    return {"wall_s": statistics.median(r["wall_s"] for r in ok),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in ok), "runs": len(ok)}


def measure(model: str, workdir: Path, runs: int = 1) -> dict:
    """Time the three conversions `runs` times each; return medians, peak RSS and file paths."""
    prep = timed_run([PY, __file__, "prepare", model, str(workdir)], env=child_env())
    if prep["rc"] != 0:
        return {"error": "prepare failed: " + tail(prep["stderr"])}
    info = json.loads((workdir / "export.json").read_text())
    prefix = info["prefix"]
    shape = ",".join(str(s) for s in info["input_shape"])
    onnx_file = workdir / "mx2onnx" / f"{model}.onnx"
    onnx_file.parent.mkdir(parents=True, exist_ok=True)
    cmds = {
        "ssdconv_zoo": ssdconv_cli() + ["convert", model, "--seed", "0", "--target", "all",
                                     "-o", str(workdir / "ssdconv")],
        "ssdconv_symbol": ssdconv_cli() + ["convert", f"{prefix}-symbol.json", "--target", "all",
                                        "-o", str(workdir / "ssdconv_symbol")],
        "mx2onnx": [PY, "-c", MX2ONNX, f"{prefix}-symbol.json", f"{prefix}-0000.params", shape,
                    str(onnx_file)],
    }
    result: dict = {"input_shape": info["input_shape"], "prefix": prefix,
                    "ssdconv_dir": str(workdir / "ssdconv"), "onnx": str(onnx_file)}
    for key, cmd in cmds.items():
        result[key] = _summary([timed_run(cmd, env=child_env()) for _ in range(runs)])
    result["same_output"] = _same_files(workdir / "ssdconv", workdir / "ssdconv_symbol", model)
    return result


def _same_files(a: Path, b: Path, model: str) -> bool:
    """The zoo-name and symbol-file conversions wrote byte-identical weights and graphs (the
    manifests differ in name, source and weights note): both paths saw the same seeded model."""
    exts = ("prototxt", "caffemodel", "param", "bin")
    try:
        return all((a / f"{model}.{e}").read_bytes() == (b / f"{model}.{e}").read_bytes()
                   for e in exts)
    except OSError:
        return False


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "prepare":
        sys.exit("usage: conversion.py prepare MODEL WORKDIR")
    print(json.dumps(prepare(sys.argv[2], Path(sys.argv[3]))))
