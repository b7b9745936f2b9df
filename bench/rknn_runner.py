"""Run one converted model in Rockchip's RKNN simulator (rknn-toolkit2, x86): build it fp16 or
int8, run images through it, and save its raw outputs. Runs under .venv-rknn (the toolkit's
numpy cannot live beside MXNet's), so it imports neither ssdconv nor MXNet: bench/rknn_target.py
writes a JSON job and reads what this writes.

    .venv-rknn/bin/python bench/rknn_runner.py JOB.json

The job (every key but `model`, `files` and `out_dir` optional):

    {"model": "caffe" | "onnx", "files": [prototxt, caffemodel] | [model.onnx],
     "outputs": [names]           # onnx: the output tensors, in this order (caffe: the
                                  # prototxt's unconsumed tops, in layer order),
     "mean_values": [b, g, r], "std_values": [..], "quant_img_RGB2BGR": false,
     "target_platform": "rk3566", "quantize": false,
     "dataset": "dataset.txt", "quantized_algorithm": "normal" | "mmse" | "kl_divergence",
     "images": ["x.npy", ...],    # uint8 HWC at the network's size, in the model's channel order
     "accuracy_analysis": "x.npy" | null, "out_dir": "DIR"}

It writes OUT_DIR/NAME.npz per image (`NAME` = the image file's stem; arrays `out0`, `out1`, ...
in the order of `names`, float32, NCHW as the model declares them) and OUT_DIR/result.json:
toolkit version, output names and shapes, build / init / per-image inference times, and when
asked the accuracy analysis's five worst layers (by entire cosine: the error accumulated from
the input; single cosine: the layer alone fed float inputs). The toolkit's own printing goes to
OUT_DIR/rknn.log; on failure result.json has `error` (the step and the toolkit's last words).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from pathlib import Path

WORST = 5


def caffe_outputs(prototxt: str) -> list[str]:
    """The tops no layer consumes, in layer order: the network's outputs as the toolkit orders
    them (measured: in the prototxt's layer order, whatever else; ssdconv writes a headless
    model's output layers last, in the manifest's order)."""
    text = Path(prototxt).read_text()
    tops: list[str] = []
    bottoms: set[str] = set()
    for layer in re.findall(r"layer\s*\{(.*?)\n\}", text, flags=re.S):
        ins = re.findall(r'^\s*bottom:\s*"([^"]+)"', layer, flags=re.M)
        outs = re.findall(r'^\s*top:\s*"([^"]+)"', layer, flags=re.M)
        bottoms.update(ins)
        tops += [t for t in outs if t not in ins and t not in tops]
    return [t for t in tops if t not in bottoms]


ROW = re.compile(r"^\[(?P<op>[^\]]+)\]\s+(?P<layer>\S+)\s+(?P<ec>[-\d.e+]+)\s*\|\s*"
                 r"(?P<ee>[-\d.e+]+)\s+(?P<sc>[-\d.e+]+)\s*\|\s*(?P<se>[-\d.e+]+)")


def error_analysis(path: Path, worst: int = WORST) -> list[dict]:
    """The accuracy analysis's table (error_analysis.txt, rows `[Op] layer  entire cos | euc
    single cos | euc`; ops the toolkit split, e.g. Relu6's Add, have no figures): the `worst`
    layers by entire cosine (the error accumulated from the input), then single cosine (the
    layer alone on float inputs)."""
    rows = []
    for line in path.read_text().splitlines():
        m = ROW.match(line.strip())
        if m:
            rows.append({"op": m["op"], "layer": m["layer"], "entire_cos": float(m["ec"]),
                         "entire_euc": float(m["ee"]), "single_cos": float(m["sc"]),
                         "single_euc": float(m["se"])})
    return sorted(rows, key=lambda r: (r["entire_cos"], r["single_cos"]))[:worst]


@contextlib.contextmanager
def _captured(log: Path):
    """The toolkit's printing (stdout and stderr, C-level too) into `log`."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "a") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _last_words(log: Path, n: int = 3) -> str:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines()
             if re.search(r"\bE\b|rror", ln)]
    return " | ".join(lines[-n:])[:400]


def _load(path: str):
    import cv2
    import numpy as np

    if path.endswith(".npy"):
        return np.load(path)
    return cv2.imread(path)[:, :, ::-1]  # a picture file: RGB, as the toolkit reads one


def run(job: dict) -> dict:
    import importlib.metadata as md

    import numpy as np

    out_dir = Path(job["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / "rknn.log"
    log.write_text("")
    result: dict = {"toolkit": md.version("rknn-toolkit2"),
                    "target_platform": job.get("target_platform", "rk3566"),
                    "quantize": bool(job.get("quantize")),
                    "quantized_algorithm": job.get("quantized_algorithm", "normal")
                    if job.get("quantize") else None}
    if job["model"] == "caffe":
        names = caffe_outputs(job["files"][0])
    else:
        names = list(job.get("outputs") or [])
    result["names"] = names
    step = "import"
    with _captured(log):
        try:
            from rknn.api import RKNN

            rknn = RKNN(verbose=False)
            step = "config"
            config = {"mean_values": [job.get("mean_values", [0.0, 0.0, 0.0])],
                      "std_values": [job.get("std_values", [1.0, 1.0, 1.0])],
                      "quant_img_RGB2BGR": bool(job.get("quant_img_RGB2BGR")),
                      "target_platform": result["target_platform"]}
            if job.get("quantize"):
                config["quantized_algorithm"] = result["quantized_algorithm"]
            rc = rknn.config(**config)
            step = f"load_{job['model']}"
            if job["model"] == "caffe":
                rc = rknn.load_caffe(model=job["files"][0], blobs=job["files"][1])
            else:
                rc = rknn.load_onnx(model=job["files"][0], outputs=names or None)
            if rc != 0:
                raise RuntimeError(f"returned {rc}")
            step = "build"
            t = time.perf_counter()
            rc = rknn.build(do_quantization=bool(job.get("quantize")),
                            dataset=job.get("dataset") if job.get("quantize") else None)
            result["build_s"] = time.perf_counter() - t
            if rc != 0:
                raise RuntimeError(f"returned {rc}")
            step = "init_runtime"
            t = time.perf_counter()
            rc = rknn.init_runtime()
            result["init_s"] = time.perf_counter() - t
            if rc != 0:
                raise RuntimeError(f"returned {rc}")
            step = "inference"
            times = []
            for path in job.get("images", []):
                img = _load(path)
                t = time.perf_counter()
                outs = rknn.inference(inputs=[img[None]], data_format=["nhwc"])
                times.append(time.perf_counter() - t)
                if outs is None:
                    raise RuntimeError(f"no outputs for {path}")
                arrays = {f"out{i}": np.asarray(o, np.float32) for i, o in enumerate(outs)}
                np.savez(out_dir / f"{Path(path).stem}.npz", **arrays)
                result.setdefault("shapes", [list(a.shape) for a in arrays.values()])
            result["inference_s"] = times
            if job.get("accuracy_analysis"):
                step = "accuracy_analysis"
                snap = out_dir / "snapshot"
                rc = rknn.accuracy_analysis(inputs=[job["accuracy_analysis"]],
                                            output_dir=str(snap))
                if rc != 0:
                    raise RuntimeError(f"returned {rc}")
                result["worst_layers"] = error_analysis(snap / "error_analysis.txt")
            rknn.release()
        except Exception as exc:  # a step that fails is a result: named, with the log's words
            result["error"] = f"{step}: {exc}; {_last_words(log)}".strip("; ")
    (out_dir / "result.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: rknn_runner.py JOB.json", file=sys.stderr)
        return 2
    result = run(json.loads(Path(argv[0]).read_text()))
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
