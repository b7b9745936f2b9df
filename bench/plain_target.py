"""Plain networks measured: conversion, fidelity and latency of networks no detector family
recognises (ssdconv/plain), in one stage.

For one model (a GluonCV classifier by zoo name with seeded weights, seed 0; or `mobilefacenet`,
tests/insightface_models.py's MobileFaceNet with seeded weights, seed 0, saved as a checkpoint in
WORKDIR and converted from its exported symbol with `--input-size 112,112`) this stage converts
its own files in WORKDIR and measures:

* conversion: `ssdconv convert SOURCE --target all` as a whole process (wall time, peak RSS);
* fidelity, on the sample photos, through the package's own staged check (`run_check` on the
  conversion loaded from its manifest) in OpenCV, ncnn, onnxruntime and OpenVINO: per output,
  the largest raw error against float64 MXNet beside its bound and Gluon float32's own error,
  the images whose top-1 class equals Gluon float32's, and the smallest cosine with float64;
* latency at each thread count, each in its own process (bench/speed.py), of the four models in
  the package's runners (`Runner.timed`: the input prepared beforehand).

Usage: `python bench/plain_target.py prepare|fidelity MODEL WORKDIR [--images N]` (one JSON
line; run.py calls `measure`, which runs the conversion and latencies around it).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import speed
from common import PLAIN_MODELS, PY, ROOT, child_env, run_json, stage_main, stage_start
from conversion import ssdconv_cli
from onnx_target import _error, _timed

warnings.simplefilter("ignore")

MODELS = PLAIN_MODELS  # two GluonCV classifiers and insightface's MobileFaceNet
# models built by tests/insightface_models.py (by the name the bench gives them): the builder's
# name and the input size the exported symbol is converted at
BUILT = {"mobilefacenet": ("mobilefacenet_symbol", (112, 112))}
RUNTIMES = ("opencv", "ncnn", "onnxruntime", "openvino")
# (speed.py runtime, the table's key)
LATENCY = (("ssdconv_opencv", "opencv"), ("ssdconv_ncnn", "ncnn"),
           ("ssdconv_onnxruntime", "ort"), ("ssdconv_openvino", "openvino"))


def _builders():
    """tests/insightface_models.py, the one copy of the builders the tests use too."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests import insightface_models

    return insightface_models


def prepare(model: str, workdir: Path) -> dict:
    """What `ssdconv convert` and `load_model` are given for the model; a built model's
    checkpoint (PREFIX-symbol.json, PREFIX-0000.params, seed 0) is saved in WORKDIR first.
    Written to WORKDIR/source.json."""
    if model in BUILT:
        im = _builders()
        builder, size = BUILT[model]
        sym = getattr(im, builder)()
        arg, aux = im.seeded_params(sym, (4, 3, *size), seed=0)  # as the tests
        prefix = workdir / "checkpoint" / model
        prefix.parent.mkdir(parents=True, exist_ok=True)
        im.save_checkpoint(sym, arg, aux, prefix)
        symbol = f"{prefix}-symbol.json"
        info = {"cli": [symbol, "--input-size", ",".join(map(str, size))],
                "load": {"source": symbol, "input_size": list(size)}, "prefix": str(prefix)}
    else:
        info = {"cli": [model, "--seed", "0"], "load": {"source": model, "seed": 0},
                "prefix": None}
    (workdir / "source.json").write_text(json.dumps(info, indent=1))
    return info


def conversion(model: str, workdir: Path, script: str = __file__,
               prepare_args: tuple[str, ...] = ()) -> dict:
    """The timed `ssdconv convert ... --target all` (after an untimed `SCRIPT prepare MODEL
    WORKDIR PREPARE_ARGS`, which writes WORKDIR/source.json), and WORKDIR/export.json for
    bench/speed.py (the model, its input shape)."""
    prep = run_json([PY, script, "prepare", model, str(workdir), *prepare_args],
                    env=child_env())
    if "error" in prep:
        return {"error": f"prepare failed: {prep['error']}"}
    out = workdir / "ssdconv"
    result = _timed(ssdconv_cli() + ["convert", *prep["cli"], "--target", "all", "--name",
                                     model, "-o", str(out)])
    if "error" not in result:
        manifest = json.loads((out / f"{model}.json").read_text())
        (workdir / "export.json").write_text(json.dumps(
            {"model": model, "input_shape": manifest["input_shape"], "prefix": prep["prefix"]}))
    return result


def _summary(results: list) -> dict:
    """One runtime's check over the images: per output role, the largest raw error with the
    bound and Gluon float32's error on that image, the largest error/bound ratio, the images
    whose top-1 equals Gluon float32's and the smallest cosine with float64."""
    out: dict = {"images": len(results), "ok": all(r.ok for r in results), "outputs": {}}
    for r in results:
        figures = r.outputs[0].figures if r.outputs else {}
        for role, t in r.raw.tensors.items():
            o = out["outputs"].setdefault(role, {"err": -1.0, "top1_same": 0, "cosine": None,
                                                 "ratio": 0.0})
            if t.err > o["err"]:
                o.update(err=t.err, bound=t.bound, gluon32_err=t.gluon32_err)
            o["ratio"] = max(o["ratio"], t.err / t.bound)
            v = figures.get(role)
            if v:
                o["top1_same"] += bool(v["top1_same"])
                o["cosine"] = v["cosine"] if o["cosine"] is None else min(o["cosine"],
                                                                          v["cosine"])
    return out


def converted(model: str, workdir: Path):
    """The conversion in WORKDIR/ssdconv, loaded from its manifest on the source prepare
    recorded (WORKDIR/source.json)."""
    from ssdconv.convert import load_conversion
    from ssdconv.models import load_model

    load = json.loads((workdir / "source.json").read_text())["load"]
    kw = {"seed": load["seed"]} if "seed" in load else {"input_size": tuple(load["input_size"])}
    return load_conversion(load_model(load["source"], **kw),
                           workdir / "ssdconv" / f"{model}.json")


def check_runtimes(conv, images: list[str], summary) -> dict:
    """The package's staged check of `conv` on the images, one runtime at a time: each
    runtime's `summary(results)`, or the error it raised."""
    from ssdconv.verify.check import run_check

    out: dict = {}
    for runtime in RUNTIMES:
        try:
            out[runtime] = summary(run_check(conv, images, runtimes=(runtime,)).results)
        except Exception as exc:  # a runtime that cannot run the model is a result
            out[runtime] = _error(exc)
    return out


def fidelity(model: str, workdir: Path, images: list[str]) -> dict:
    """The package's staged check of the model's conversion in WORKDIR/ssdconv, per
    runtime."""
    return {"images": [Path(p).name for p in images],
            **check_runtimes(converted(model, workdir), images, _summary)}


def package_latency(workdir: Path, threads: list[int], runs: int, warmup: int) -> dict:
    """Every ssdconv model of WORKDIR in the package's runner (`LATENCY`) at each thread
    count, each in its own process, by `KEY_T`."""
    return {f"{key}_{n}": speed.measure_one(runtime, n, workdir, runs, warmup)
            for runtime, key in LATENCY for n in threads}


def measure(model: str, workdir: Path, n_images: int, threads: list[int], runs: int,
            warmup: int) -> dict:
    """The whole stage for one model in WORKDIR (emptied first): the conversion, fidelity in one
    child process, then every latency in its own."""
    out = stage_start(__file__, model, workdir, n_images, conversion)
    if "error" not in out["conversion"]:
        out["latency"] = package_latency(workdir, threads, runs, warmup)
    return out


if __name__ == "__main__":
    sys.exit(stage_main(__doc__, prepare, fidelity))
