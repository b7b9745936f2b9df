"""Deployed speed: median latency of one forward pass, per runtime and thread count.

Each (runtime, threads) pair runs in its own process with OMP_NUM_THREADS and the runtime's own
thread knob set before anything is imported, so no thread pool outlives its setting. All four
get the same image, preprocessed once outside the timed region into the input each model takes
(Gluon's normalised RGB for MXNet and onnxruntime; BGR minus mean, scale folded, for the
converted models). One timed run = feed the input, forward, and fetch the detections.

* MXNet: the exported symbol bound by `Symbol.bind` (the executor), MXNET_SUBGRAPH_BACKEND left
  as the user has it (unset: MXNet 1.9.1 activates its MKLDNN fusion backend; the backend MXNet
  reports is recorded). ssdconv's own reference runs use MXNet's CachedOp, which applies no
  subgraph backend whatever the variable says.
* OpenCV DNN on the caffe model: default backend and target, Winograd on (the default).
* ncnn on the ncnn model: default options (light mode, packing, Winograd/sgemm, fp16 where the
  CPU has it), `opt.num_threads`.
* onnxruntime on MXNet's ONNX export: CPU provider, all graph optimisations (the default),
  `intra_op_num_threads`, with the initializers moved out of the graph inputs.

The other tables time ncnn models the same way (`measure_one` with `ncnn_dir`): the fusion
table's unfused and ncnnoptimize'd models (runtime ncnn), ssdconv's model fetching the head's raw
tensors (ncnn_raw, `--fetch` naming their roles: SSD loc,conf; YOLOv3 outputs.0,outputs.1,...)
and the pnnx route's model on Gluon's input (pnnx). The ONNX table times ssdconv's ONNX model
in the package's own onnxruntime and OpenVINO runners (ssdconv_onnxruntime, ssdconv_openvino);
the plain-network table all four of ssdconv's models in the package's runners (also
ssdconv_opencv, ssdconv_ncnn: `Runner.timed`, preprocessing outside the timed region).

Usage (what run.py calls): `python bench/speed.py RUNTIME THREADS WORKDIR --runs N --warmup K
[--fetch ROLE,...]`.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
from common import PY, SAMPLES, brief, child_env

RUNTIMES = ("mxnet", "opencv", "ncnn", "onnxruntime")  # the speed table's columns
# timed for other tables: ssdconv's ncnn model fetching the head's raw tensors instead of the
# detections (what the pnnx route's graph ends with), and an ncnn model pnnx wrote (`--ncnn-dir`
# holds its route.json: param, bin, input and output blob names)
# ssdconv's ONNX model in onnxruntime and OpenVINO (the ONNX table, bench/onnx_target.py)
# and the plain-network table times every ssdconv model in the package's runners
# (bench/plain_target.py)
OTHER_RUNTIMES = ("ncnn_raw", "pnnx", "ssdconv_onnxruntime", "ssdconv_openvino",
                  "ssdconv_opencv", "ssdconv_ncnn")
IMAGE = SAMPLES / "astronaut.jpg"


def _files(workdir: Path, ncnn_dir: Path | None = None) -> dict:
    """The files every runtime runs; `ncnn_dir` swaps in another MODEL.param/.bin/.json (the
    fusion table's unfused and ncnnoptimize'd models) for ssdconv's caffe + ncnn output."""
    export = json.loads((workdir / "export.json").read_text())
    model = export["model"]
    conv = ncnn_dir or workdir / "ssdconv"
    manifest = conv / f"{model}.json"
    return {"model": model, "prefix": export["prefix"], "shape": export["input_shape"],
            "ncnn_dir": conv,
            "manifest": json.loads(manifest.read_text()) if manifest.exists() else None,
            "prototxt": conv / f"{model}.prototxt", "caffemodel": conv / f"{model}.caffemodel",
            "param": conv / f"{model}.param", "bin": conv / f"{model}.bin",
            "onnx": workdir / "mx2onnx" / f"{model}.onnx",
            "ssdconv_onnx": conv / f"{model}.onnx"}


def _gluon_input(rgb: np.ndarray) -> np.ndarray:
    """GluonCV's preprocessing ((pixel/255 - mean)/std, RGB, NCHW), as the reference uses."""
    # from the light module: ssdconv.convert would import MXNet into every child
    from ssdconv.ir.preprocess import IMAGENET_MEAN, IMAGENET_STD

    x = (rgb.astype(np.float64) - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None].astype(np.float32))


def _mxnet(f: dict, rgb: np.ndarray, threads: int):
    import warnings

    warnings.simplefilter("ignore")
    import mxnet as mx

    sym = mx.sym.load(f"{f['prefix']}-symbol.json")
    saved = mx.nd.load(f"{f['prefix']}-0000.params")
    args = {k[4:]: v for k, v in saved.items() if k.startswith("arg:")}
    aux = {k[4:]: v for k, v in saved.items() if k.startswith("aux:")}
    x = mx.nd.array(_gluon_input(rgb))
    args["data"] = x.copy()
    exe = sym.bind(mx.cpu(), args=args, aux_states=aux, grad_req="null")

    def run():
        exe.forward(is_train=False, data=x)
        return [o.asnumpy() for o in exe.outputs]
    return run


def _opencv(f: dict, rgb: np.ndarray, threads: int):
    import cv2

    from ssdconv.verify.images import network_input

    cv2.setNumThreads(threads)
    net = cv2.dnn.readNetFromCaffe(str(f["prototxt"]), str(f["caffemodel"]))
    man = f["manifest"]
    x = network_input(rgb, man)
    out = net.getUnconnectedOutLayersNames()

    def run():
        net.setInput(x, man["blobs"]["input"])
        return net.forward(out)
    return run


def _ncnn(f: dict, rgb: np.ndarray, threads: int, fetch: tuple[str, ...] = ("detections",)):
    """ssdconv's ncnn model; `fetch` names the blobs a run extracts by role, as the runners
    name them (`blobs_by_role`: a list role's blobs are ROLE.0, ROLE.1, ...)."""
    from ssdconv.verify.images import network_input
    from ssdconv.verify.runners import blobs_by_role

    man = f["manifest"]
    x = np.ascontiguousarray(network_input(rgb, man)[0])
    blobs = blobs_by_role(man)
    return _extract_all(_ncnn_net(f["param"], f["bin"], threads), man["blobs"]["input"], x,
                        [blobs[k] for k in fetch])


def _ncnn_net(param: str | Path, binfile: str | Path, threads: int):
    import ncnn

    net = ncnn.Net()
    net.opt.num_threads = threads
    if net.load_param(str(param)) != 0 or net.load_model(str(binfile)) != 0:
        raise RuntimeError(f"ncnn cannot load {param}")
    return net


def _extract_all(net, input_blob: str, x: np.ndarray, outputs: list[str]):
    import ncnn

    def run():
        ex = net.create_extractor()
        ex.input(input_blob, ncnn.Mat(x))
        return [np.array(ex.extract(b)[1]) for b in outputs]
    return run


def _pnnx(f: dict, rgb: np.ndarray, threads: int):
    route = json.loads((f["ncnn_dir"] / "route.json").read_text())
    x = np.ascontiguousarray(_gluon_input(rgb)[0])
    return _extract_all(_ncnn_net(route["param"], route["bin"], threads), route["input"], x,
                        route["outputs"])


def _onnxruntime(f: dict, rgb: np.ndarray, threads: int):
    import onnxruntime as ort
    from fidelity import strip_initializer_inputs

    clean = f["onnx"].with_name(f["onnx"].stem + "-ort.onnx")
    if not clean.exists():
        clean.write_bytes(f["onnx"].read_bytes())
        strip_initializer_inputs(clean)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(clean), so, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: _gluon_input(rgb)}

    def run():
        return sess.run(None, feed)
    return run


# the package's runners timed by their `timed` hook (speed.py runtime -> backend, runtime)
PACKAGE_RUNNERS = {"ssdconv_onnxruntime": ("onnx", "onnxruntime"),
                   "ssdconv_openvino": ("onnx", "openvino"),
                   "ssdconv_opencv": ("caffe", "opencv"), "ssdconv_ncnn": ("ncnn", "ncnn")}


def _package_runner(f: dict, rgb: np.ndarray, threads: int, runtime: str):
    """ssdconv's model in the package's own runner for `runtime`, as deployed (OpenCV's
    Winograd on, ncnn's default fp16 options; ONNX in float32), timed by its `timed` hook: the
    input prepared beforehand, the forward and fetching the manifest's outputs timed (an ONNX
    detector: GluonCV's three outputs and the raw tensors)."""
    from ssdconv.backend import backend
    from ssdconv.backend.interface import RunSettings

    target, name = PACKAGE_RUNNERS[runtime]
    if name == "opencv":
        import cv2

        cv2.setNumThreads(threads)
    files = {"prototxt": str(f["prototxt"]), "caffemodel": str(f["caffemodel"]),
             "param": str(f["param"]), "bin": str(f["bin"]), "onnx": str(f["ssdconv_onnx"])}
    settings = RunSettings(winograd=True, threads=threads, deployed=True)
    (runner,) = backend(target).runners(files, f["manifest"], settings, (name,))
    return runner.timed(rgb)


def child(runtime: str, threads: int, workdir: Path, runs: int, warmup: int,
          ncnn_dir: Path | None = None, fetch: tuple[str, ...] = ()) -> dict:
    """Build the runtime, warm it up, and time `runs` forward passes (milliseconds); `fetch`:
    the raw roles ncnn_raw extracts."""
    from ssdconv.verify.images import load_rgb

    if runtime == "ncnn_raw" and not fetch:
        raise SystemExit("ncnn_raw needs --fetch: the head's raw roles (SSD: loc,conf)")
    f = _files(workdir, ncnn_dir)
    _, _, h, w = f["shape"]
    rgb = load_rgb(str(IMAGE), h, w)
    run = {"mxnet": _mxnet, "opencv": _opencv, "ncnn": _ncnn, "onnxruntime": _onnxruntime,
           "ncnn_raw": partial(_ncnn, fetch=fetch), "pnnx": _pnnx,
           **{k: partial(_package_runner, runtime=k) for k in PACKAGE_RUNNERS},
           }[runtime](f, rgb, threads)
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000.0)
    return {"median_ms": statistics.median(times), "min_ms": min(times),
            "max_ms": max(times), "runs": runs, "warmup": warmup}


def measure_one(runtime: str, threads: int, workdir: Path, runs: int, warmup: int,
                extra_env: dict | None = None, ncnn_dir: Path | None = None,
                fetch: list[str] | tuple[str, ...] = ()) -> dict:
    """One (runtime, threads) timing in its own process; {"error": ...} if it fails. `fetch`:
    the raw roles ncnn_raw extracts (the head's `raw_outputs()` keys)."""
    env = child_env(threads, MXNET_SUBGRAPH_VERBOSE="1", **(extra_env or {}))
    cmd = [PY, __file__, runtime, str(threads), str(workdir), "--runs", str(runs),
           "--warmup", str(warmup)] + (["--ncnn-dir", str(ncnn_dir)] if ncnn_dir else []) \
        + (["--fetch", ",".join(fetch)] if fetch else [])
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode != 0 or not lines:
        last = (res.stderr or res.stdout).strip().splitlines()[-1:] or [""]
        return {"error": f"exit {res.returncode}: {brief(last[0])}"}
    out = json.loads(lines[-1])
    if runtime == "mxnet":
        found = re.search(r"Subgraph backend (\S+) is activated", res.stderr)
        none = "MXNET_SUBGRAPH_BACKEND=NONE" in res.stderr
        out["subgraph_backend"] = found.group(1) if found else ("NONE" if none else "none")
    return out


def measure(workdir: Path, threads: list[int], runs: int, warmup: int) -> dict:
    """Every runtime at every thread count; MXNet falls back to no subgraph backend if its
    default one fails on this graph (recorded, not hidden)."""
    result: dict = {"layers": None}
    param = _files(workdir)["param"]
    if param.exists():
        from common import param_layer_count

        result["layers"] = param_layer_count(param)
    for runtime in RUNTIMES:
        for n in threads:
            r = measure_one(runtime, n, workdir, runs, warmup)
            if runtime == "mxnet" and "error" in r:
                r = measure_one(runtime, n, workdir, runs, warmup,
                                 {"MXNET_SUBGRAPH_BACKEND": "NONE"})
                r["fallback"] = "default subgraph backend failed; ran with NONE"
            result[f"{runtime}_{n}"] = r
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runtime", choices=RUNTIMES + OTHER_RUNTIMES)
    ap.add_argument("threads", type=int)
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--ncnn-dir", type=Path, help="run MODEL.param/.bin/.json from here")
    ap.add_argument("--fetch", default="", help="ncnn_raw: the raw roles to extract, "
                    "comma-separated (SSD: loc,conf)")
    a = ap.parse_args()
    fetch = tuple(r for r in a.fetch.split(",") if r)
    print(json.dumps(child(a.runtime, a.threads, a.workdir, a.runs, a.warmup, a.ncnn_dir,
                           fetch)))


if __name__ == "__main__":
    sys.exit(main())
