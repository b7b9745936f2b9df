"""The ONNX target measured: ssdconv's ONNX against MXNet's own export (mx2onnx), in one stage.

For one model (a zoo name with seeded weights, seed 0, or a shipped demo: `shapes_ssd`,
`shapes_yolo3`, trained weights) this stage converts its own files in WORKDIR (so it can be
re-run alone, `run.py --rerun onnx`) and measures:

* conversion: `ssdconv convert SOURCE --target onnx` and mx2onnx (`mx.onnx.export_model` on the
  same exported files) as whole processes (wall time, peak RSS), and the files' sizes;
* fidelity, on the sample photos: ssdconv's ONNX in onnxruntime and OpenVINO through the package's
  own staged check (`run_check`: raw tensors against float64 Gluon, detections row for row with
  GluonCV's, ties listed); mx2onnx's export (the head's raw tensors added as outputs, as
  bench/fidelity.py does) in onnxruntime, compared by the same functions: row for row
  (`compare_rows`) and as matched sets (`match_detections`), or why it does not load;
* pnnx given ssdconv's ONNX body (the model up to the head's raw tensors, cut out of ssdconv's
  file with `onnx.utils.extract_model`): does the mx2onnx -> pnnx -> ncnn route work once the
  export is right? Its raw tensors against float64 Gluon, its detections through GluonCV's own
  decoding and NMS (bench/pnnx_route.py's `gluon_tail`);
* latency at each thread count, each in its own process (bench/speed.py), of ssdconv's ONNX in
  the package's onnxruntime and OpenVINO runners, beside OpenCV (caffe) and ncnn on the same
  conversion and mx2onnx's export in onnxruntime, so the ONNX table's latencies come from one
  run.

Usage: `python bench/onnx_target.py fidelity MODEL WORKDIR [--images N]` (one JSON line; run.py
calls `measure`, which runs the conversions and latencies around it).
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import speed
from common import (
    PY,
    brief,
    child_env,
    pnnx_command,
    stage_main,
    stage_start,
    tail,
    timed_run,
)
from conversion import MX2ONNX, ssdconv_cli
from fidelity import OnnxRunner, _row, _summarise, export_onnx
from pnnx_route import PnnxNcnnRunner, _roles, gluon_tail, onnx_valid, run_pnnx

warnings.simplefilter("ignore")

# the shipped demos by the name the bench gives them (their files' stem): trained weights
DEMOS = ("shapes_ssd", "shapes_yolo3")
# (speed.py runtime, the table's key): ssdconv's ONNX in both runtimes, then the columns beside
LATENCY = (("ssdconv_onnxruntime", "ort"), ("ssdconv_openvino", "openvino"),
           ("onnxruntime", "mx2onnx_ort"), ("ncnn", "ncnn"), ("opencv", "opencv"))


def _demo_config(model: str) -> Path:
    from ssdconv.shipped import DEMO_DIR

    return DEMO_DIR / f"{model}.yaml"


def load(model: str):
    """The model as every column sees it: a demo's trained weights, or the zoo net seeded."""
    from ssdconv.config import load_config
    from ssdconv.models import load_model

    if model in DEMOS:
        cfg = load_config(str(_demo_config(model)))
        # load_config resolves the preset's paths against the preset's folder
        return load_model(str(cfg["model"]), classes=list(cfg["classes"]),
                          input_size=tuple(cfg["input_size"]))
    return load_model(model, seed=0)


def source_args(model: str) -> list[str]:
    """What `ssdconv convert` is given for the model."""
    if model in DEMOS:
        return ["--config", str(_demo_config(model))]
    return [model, "--seed", "0"]


def prepare(model: str, workdir: Path) -> dict:
    """PREFIX-symbol.json + PREFIX-0000.params of the model (what mx2onnx and MXNet run) and
    WORKDIR/export.json, which bench/speed.py reads."""
    from ssdconv.mxnet.load import save_exported

    loaded = load(model)
    g = loaded.graph
    prefix = workdir / "export" / model
    prefix.parent.mkdir(parents=True, exist_ok=True)
    save_exported(g, str(prefix))
    info = {"model": model, "input_shape": list(g.input_shape), "prefix": str(prefix)}
    (workdir / "export.json").write_text(json.dumps(info, indent=1))
    return info


def _timed(cmd: list[str]) -> dict:
    run = timed_run(cmd, env=child_env())
    if run["rc"] != 0:
        return {"error": f"exit {run['rc']}: {tail(run['stderr'] or run['stdout'])}"}
    return {"wall_s": run["wall_s"], "peak_rss_mib": run["peak_rss_mib"]}


def _mib(path: Path) -> float | None:
    return path.stat().st_size / 2**20 if path.exists() else None


def conversions(model: str, workdir: Path) -> dict:
    """The timed conversions: ssdconv --target onnx, mx2onnx; then (untimed) ssdconv --target
    all, whose caffe and ncnn files the latency columns beside ONNX run."""
    prep = timed_run([PY, __file__, "prepare", model, str(workdir)], env=child_env())
    if prep["rc"] != 0:
        return {"error": "prepare failed: " + tail(prep["stderr"])}
    info = json.loads((workdir / "export.json").read_text())
    prefix, shape = info["prefix"], ",".join(str(s) for s in info["input_shape"])
    mx_file = workdir / "mx2onnx" / f"{model}.onnx"
    mx_file.parent.mkdir(parents=True, exist_ok=True)
    ours = workdir / "ssdconv_onnx"
    out = {"ssdconv": _timed(ssdconv_cli() + ["convert", *source_args(model), "--target",
                                              "onnx", "--name", model, "-o", str(ours)]),
           "mx2onnx": _timed([PY, "-c", MX2ONNX, f"{prefix}-symbol.json",
                              f"{prefix}-0000.params", shape, str(mx_file)])}
    out["ssdconv"]["size_mib"] = _mib(ours / f"{model}.onnx")
    out["mx2onnx"]["size_mib"] = _mib(mx_file)
    every = _timed(ssdconv_cli() + ["convert", *source_args(model), "--target", "all",
                                    "--name", model, "-o", str(workdir / "ssdconv")])
    if "error" in every:
        out["target_all"] = every
    return out


def _runtime_rows(report) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for r in report.results:
        rows.setdefault(r.runtime, []).append(_row(r.raw, r.det))
    return rows


def _summary(rows: list[dict]) -> dict:
    out = _summarise(rows)
    out["rows_exact"] = (out["unmatched_gluon"] == 0 and out["unmatched_runtime"] == 0
                         and out["explained_ties"] == 0)
    return out


def _error(exc: Exception) -> dict:
    return {"error": f"{type(exc).__name__}: {brief(str(exc))}"}


def ssdconv_fidelity(loaded, workdir: Path, images: list[str]) -> tuple[dict, object]:
    """ssdconv's ONNX through the package's staged check in both runtimes, by runtime; and the
    conversion (its manifest names the raw tensors the body ends with)."""
    from ssdconv.convert import Options, convert
    from ssdconv.verify.check import run_check

    conv = convert(loaded, workdir / "fidelity" / "ssdconv", Options(targets=("onnx",)))
    out = {}
    for runtime in ("onnxruntime", "openvino"):
        try:
            rows = _runtime_rows(run_check(conv, images, runtimes=(runtime,)))
            out[runtime] = _summary(rows[runtime])
        except Exception as exc:  # a runtime that cannot run the model is a result
            out[runtime] = _error(exc)
    return out, conv


def mx2onnx_fidelity(loaded, head, gluon, workdir: Path, images: list[str]) -> dict:
    """mx2onnx's export in onnxruntime: row for row and as matched sets against GluonCV, or
    why it does not export or load."""
    from ssdconv.verify.compare import compare_rows, match_detections, raw_diff
    from ssdconv.verify.images import load_rgb

    _, _, h, w = loaded.graph.input_shape
    try:
        info = export_onnx(loaded, head, workdir / "fidelity" / "mx2onnx" / "export", False)
    except Exception as exc:
        return {"loads": False, "stage": "mx2onnx", **_error(exc)}
    try:
        runner = OnnxRunner(info, gluon, h, w)
    except Exception as exc:
        return {"loads": False, "stage": "onnxruntime", **_error(exc)}
    rows, sets = [], []
    for path in images:
        rgb = load_rgb(path, h, w)
        g = gluon.run(rgb)
        try:
            rt = runner.run(rgb)
        except Exception as exc:
            return {"loads": True, "stage": "run", **_error(exc)}
        raw = raw_diff(rt, g)
        rows.append(_row(raw, compare_rows(g, rt, w, h, head.nms_threshold())))
        cut = head.comparable_score(g["raw32"], g["det_scores"])
        sets.append(_row(raw, match_detections(g, rt, w, h, cut, head.nms_threshold())))
    return {"loads": True, "rows": _summary(rows), "sets": _summary(sets)}


class _NetworkInput:
    """What PnnxNcnnRunner asks of Gluon for its input, answered with ssdconv's preprocessing
    (the manifest's: the input ssdconv's ONNX body takes), and the head."""

    def __init__(self, manifest: dict, head) -> None:
        self.manifest, self.head = manifest, head

    def input(self, rgb: np.ndarray) -> np.ndarray:
        from ssdconv.verify.images import network_input

        return network_input(rgb, self.manifest).astype(np.float32)


def pnnx_body(loaded, conv, gluon, workdir: Path, images: list[str]) -> dict:
    """pnnx on ssdconv's ONNX body (cut at the head's raw tensors): whether it converts and
    loads in ncnn, and its fidelity as bench/pnnx_route.py measures mx2onnx's body."""
    import onnx.utils

    from ssdconv.verify.blobs import blobs_by_role
    from ssdconv.verify.compare import match_detections, raw_diff
    from ssdconv.verify.images import load_rgb

    if not Path(pnnx_command()[0]).exists():
        return {"not_run": f"no {pnnx_command()[0]} (bench/setup.sh installs it)"}
    head, man = conv.head, conv.manifest
    blobs = blobs_by_role({"blobs": man["onnx"]["blobs"]})
    raw_roles = list(head.raw_outputs())
    vdir = workdir / "pnnx_body"
    shutil.rmtree(vdir, ignore_errors=True)
    vdir.mkdir(parents=True)
    body = vdir / "body.onnx"
    outputs = [blobs[r] for r in raw_roles]
    onnx.utils.extract_model(conv.files["onnx"], str(body), [blobs["input"]], outputs)
    result = run_pnnx(body, vdir, list(loaded.graph.input_shape))
    result["onnx_nodes"] = len(onnx.load(str(body)).graph.node)
    if not result["converted"]:
        result["onnx_valid"] = onnx_valid(body)
        return result
    _, _, h, w = loaded.graph.input_shape
    try:
        roles = _roles(body, {"outputs": outputs, "raw": raw_roles}, result["outputs"])
        runner = PnnxNcnnRunner(result, roles, _NetworkInput(man, head), gluon_tail(loaded, head),
                                w, h)
        rows = []
        for path in images:
            rgb = load_rgb(path, h, w)
            g = gluon.run(rgb)
            rt = runner.run(rgb)
            cut = head.comparable_score(g["raw32"], g["det_scores"])
            rows.append(_row(raw_diff(rt, g),
                             match_detections(g, rt, w, h, cut, head.nms_threshold())))
        result["fidelity"] = _summary(rows)
    except Exception as exc:  # a model that loads but cannot run is a result too
        result["fidelity"] = _error(exc)
    return result


def fidelity(model: str, workdir: Path, images: list[str]) -> dict:
    from ssdconv.verify.gluon_runner import GluonRunner

    loaded = load(model)
    out, conv = ssdconv_fidelity(loaded, workdir, images)
    gluon = GluonRunner.for_conversion(conv)
    out["mx2onnx"] = mx2onnx_fidelity(loaded, conv.head, gluon, workdir, images)
    out["pnnx_body"] = pnnx_body(loaded, conv, gluon, workdir, images)
    out["raw_roles"] = list(conv.head.raw_outputs())
    out["images"] = [Path(p).name for p in images]
    return out


def measure(model: str, workdir: Path, n_images: int, threads: list[int], runs: int,
            warmup: int) -> dict:
    """The whole stage for one model in WORKDIR (emptied first): conversions, fidelity in one
    child process, then every latency in its own."""
    out = stage_start(__file__, model, workdir, n_images, conversions)
    if "error" in out["conversion"]:
        return out
    latency: dict = {}
    for runtime, key in LATENCY:
        for n in threads:
            latency[f"{key}_{n}"] = speed.measure_one(runtime, n, workdir, runs, warmup)
    route = workdir / "pnnx_body"
    if (route / "route.json").exists():
        for n in threads:
            latency[f"pnnx_body_{n}"] = speed.measure_one("pnnx", n, workdir, runs, warmup,
                                                          ncnn_dir=route)
    out["latency"] = latency
    return out


if __name__ == "__main__":
    sys.exit(stage_main(__doc__, prepare, fidelity))
