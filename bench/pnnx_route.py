"""The ncnn route without ssdconv: MXNet's ONNX export -> pnnx -> ncnn, measured like ssdconv's.

An ncnn user without ssdconv exports the Gluon model with `mx.onnx.export_model` and converts the
ONNX file with `pnnx` (PyPI; its own venv, see bench/setup.sh), which writes an ncnn
.param/.bin. Three exports of the same seeded weights (seed 0) go through it; "raw tensors"
are the head's (`Head.raw_outputs()`: SSD loc/conf, YOLOv3 its three prediction outputs):

* whole: the whole model, as mx2onnx exports it, with the raw tensors added as more outputs (the
  internal nodes the Gluon reference reads; the graph is otherwise the user's). Every export is
  fidelity.export_onnx's, initializers moved out of the graph inputs as for onnxruntime (pnnx
  wrote byte-identical ncnn files from the file as exported, checked on the body of
  ssd_300_mobilenet0.25_voc);
* body: only the network up to the raw tensors, no box decoding or NMS: what is left to convert
  when the whole model does not (the user then writes decoding and NMS themselves);
* body, γ:=1: the same with the stored γ of every fix_gamma BatchNorm set to 1, what MXNet
  computes (mx2onnx ignores fix_gamma; the fidelity table's γ:=1 column), which separates the
  exporter's error from pnnx's.

pnnx runs with its defaults except `fp16=0` (its default stores fp16 weights; fp32 is what
ssdconv writes by default, so the comparison measures the converter, not weight rounding). A
conversion counts when pnnx exits 0 and the ncnn package loads the .param and .bin; otherwise
the first line it printed that says what failed, and the pass it was in, are the result.

Fidelity is measured as bench/fidelity.py does: the same sample images, Gluon's own
preprocessed input, ncnn in fp32 (no fp16 packing/storage/arithmetic), and the same comparison
functions against the float64 Gluon reference. pnnx names the ncnn outputs out0, out1, ... in
the ONNX graph's output order, which is how they are mapped back to the raw tensors' roles (and
checked by size). The body's detections are GluonCV's own decoding and NMS (the Gluon graph run
in MXNet from the raw tensors on) applied to the ncnn ones: they show what the raw differences
do to detections, not a post-processing the route ships.

Usage: `python bench/pnnx_route.py MODEL WORKDIR [--images N] [--convert-only]` (one JSON
line); run.py calls `measure`, which adds the latency of each converted model (speed.py).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import sys
import warnings
from pathlib import Path

import numpy as np
from common import PY, brief, child_env, pnnx_command, run_json, sample_images, timed_run

warnings.simplefilter("ignore")

VARIANTS = (("whole", False, False), ("body", True, False), ("body_gamma1", True, True))
TIMED = ("whole", "body")  # body_gamma1 is the body's graph with other weights: same speed
PNNX_TIMEOUT_S = 900
ERROR_WORDS = re.compile(r"(?i)\b(error|failed|fail|unsupported|not supported|"
                         r"not implemented|abort(ed)?|exception|invalid|segmentation fault)\b")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
STEP = re.compile(r"^(\w+) \.\.\.")
# crash signals the `pnnx` wrapper turns into exit 256 - N (it exits with the binary's -N)
_SIGNALS = {int(s): s.name for s in (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS,
                                     signal.SIGFPE, signal.SIGILL, signal.SIGKILL)}


def param_layers(param: Path) -> list[tuple[str, str, list[str], list[str]]]:
    """(type, name, input blobs, output blobs) of every layer of an ncnn .param."""
    layers = []
    for line in param.read_text().splitlines()[2:]:
        parts = line.split()
        if len(parts) < 4:
            continue
        n_in, n_out = int(parts[2]), int(parts[3])
        layers.append((parts[0], parts[1], parts[4:4 + n_in],
                       parts[4 + n_in:4 + n_in + n_out]))
    return layers


def param_io(param: Path) -> tuple[list[str], list[str]]:
    """The input blobs (Input layers' outputs) and output blobs (produced, never read) of a
    .param, outputs in pnnx's out0, out1, ... order when it named them so."""
    layers = param_layers(param)
    read = {b for _, _, ins, _ in layers for b in ins}
    inputs = [b for t, _, _, outs in layers if t == "Input" for b in outs]
    outputs = [b for t, _, _, outs in layers if t != "Input" for b in outs if b not in read]
    if all(re.fullmatch(r"out\d+", b) for b in outputs):
        outputs.sort(key=lambda b: int(b[3:]))
    return inputs, outputs


def failure(run: dict) -> dict:
    """What pnnx's output says failed, and where: the first line naming a failure, the
    `pass_level` it was in and the step that printed last before it."""
    lines = [ANSI.sub("", ln).rstrip() for ln in (run["stdout"] + run["stderr"]).splitlines()]
    stage = step = None
    first = None
    for ln in lines:
        if ln.startswith("#####"):
            stage = ln.strip("# ").strip()
        elif STEP.match(ln):
            step = STEP.match(ln).group(1)
        if first is None and ERROR_WORDS.search(ln) and "LogEarlyWarning" not in ln:
            first = ln.strip()
            break
    rc = run["rc"]
    exit_how = f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exit {rc}"
    if 256 - rc in _SIGNALS:
        exit_how += f" (the pnnx binary died of {_SIGNALS[256 - rc]})"
    if run.get("timed_out"):
        exit_how = f"timed out after {PNNX_TIMEOUT_S} s"
    tail = next((ln for ln in reversed(lines) if ln.strip()), "")
    return {"rc": rc, "exit": exit_how, "first_error": brief(first or tail),
            "stage": stage, "step": step}


def run_pnnx(onnx_file: Path, outdir: Path, shape: list[int]) -> dict:
    """pnnx ONNX -> ncnn with every file it writes in `outdir`; the verdict and, when it
    converted, the ncnn model's files and blob names (also written to outdir/route.json)."""
    stem = outdir / "model"
    cmd = pnnx_command() + [str(onnx_file), f"inputshape=[{','.join(map(str, shape))}]",
                            "fp16=0", f"pnnxparam={stem}.pnnx.param",
                            f"pnnxbin={stem}.pnnx.bin", f"pnnxpy={stem}_pnnx.py",
                            f"pnnxonnx={stem}.pnnx.onnx", f"ncnnparam={stem}.ncnn.param",
                            f"ncnnbin={stem}.ncnn.bin", f"ncnnpy={stem}_ncnn.py"]
    run = timed_run(cmd, env=child_env(), cwd=outdir, timeout=PNNX_TIMEOUT_S)
    (outdir / "pnnx.log").write_text(run["stdout"] + run["stderr"])
    result = {"wall_s": run["wall_s"], "peak_rss_mib": run["peak_rss_mib"]}
    param, binfile = Path(f"{stem}.ncnn.param"), Path(f"{stem}.ncnn.bin")
    if run["rc"] != 0 or not param.exists():
        return {**result, "converted": False, **failure(run)}
    import ncnn

    types = sorted({t for t, _, _, _ in param_layers(param)})
    unknown = [t for t in types if ncnn.layer_to_index(t) < 0]
    net = ncnn.Net()
    if unknown or net.load_param(str(param)) != 0 or net.load_model(str(binfile)) != 0:
        todo = sorted({ln.strip() for ln in (run["stdout"] + run["stderr"]).splitlines()
                       if ln.startswith("todo ")})
        why = (f"ncnn has no layer type(s) {', '.join(unknown)} in the .param pnnx wrote"
               + (f" (pnnx printed: {'; '.join(todo)})" if todo else "")) if unknown else \
            "the ncnn package cannot load the .param/.bin pnnx wrote"
        return {**result, "converted": False, "rc": 0, "exit": "exit 0",
                "first_error": why, "stage": "ncnn load", "step": None}
    inputs, outputs = param_io(param)
    route = {"param": str(param), "bin": str(binfile), "input": inputs[0], "outputs": outputs}
    (outdir / "route.json").write_text(json.dumps(route, indent=1))
    return {**result, "converted": True, "layers": len(param_layers(param)), **route}


class PnnxNcnnRunner:
    """ncnn (fp32: no fp16 packing, storage or arithmetic, as the check runs ssdconv's model)
    on a pnnx model; Gluon's preprocessed input; outputs by role through the ONNX order."""

    def __init__(self, route: dict, roles: dict[str, str], gluon, tail, width: int,
                 height: int) -> None:
        import ncnn

        self.ncnn = ncnn
        self.net = ncnn.Net()
        self.net.opt.num_threads = 1
        self.net.opt.use_fp16_packed = False
        self.net.opt.use_fp16_storage = False
        self.net.opt.use_fp16_arithmetic = False
        self.net.load_param(route["param"])
        self.net.load_model(route["bin"])
        self.input, self.roles, self.gluon, self.tail = route["input"], roles, gluon, tail
        self.raw_roles = list(gluon.head.raw_outputs())
        self.scale = np.array([width, height, width, height], np.float32)

    def run(self, rgb: np.ndarray) -> dict:
        x = np.ascontiguousarray(self.gluon.input(rgb)[0])
        ex = self.net.create_extractor()
        ex.set_light_mode(False)
        ex.input(self.input, self.ncnn.Mat(x))
        outs = {}
        for role, blob in self.roles.items():
            rc, mat = ex.extract(blob)
            if rc != 0:
                raise RuntimeError(f"ncnn extract({blob}) returned {rc}")
            outs[role] = np.array(mat).reshape(-1)
        res = {role: outs[role] for role in self.raw_roles}
        if "ids" in outs:
            ids, scores, boxes = outs["ids"], outs["scores"], outs["boxes"].reshape(-1, 4)
        else:  # the body: GluonCV's own decoding and NMS on these raw tensors
            ids, scores, boxes = self.tail(x[None], res)
        keep = ids >= 0
        res.update(det_labels=ids[keep].astype(int), det_scores=scores[keep],
                   det_boxes=boxes[keep] / self.scale)
        return res


def gluon_tail(loaded, head):
    """f(input, raw) -> (ids, scores, boxes): the Gluon graph from the head's raw tensors on
    (box decoding, per-class NMS) run in MXNet on given raw tensors (by role). The input still
    feeds the anchor generator, which GluonCV slices by the feature maps' shapes."""
    from ssdconv.mxnet.run import output_key, output_shapes, run_outputs

    g = loaded.graph
    d = json.loads(g.symbol_json)
    raw = head.raw_outputs()
    names = {index: f"route_{role}" for role, (index, _) in raw.items()}
    shapes = output_shapes(g.symbol_json, g.input_name, g.input_shape, g.params)
    shape = {f"route_{role}": shapes[output_key(g, idx, k)] for role, (idx, k) in raw.items()}
    for idx, name in names.items():
        d["nodes"][idx] = {"op": "null", "name": name, "inputs": []}
    d["arg_nodes"] = sorted(set(d["arg_nodes"]) | set(names))
    tail_json = json.dumps(d)

    def run(x: np.ndarray, tensors: dict[str, np.ndarray]):
        params = dict(g.params, **{f"route_{role}": t.reshape(shape[f"route_{role}"])
                                   for role, t in tensors.items()})
        outs, _ = run_outputs(g, list(g.heads), x, symbol_json=tail_json, params=params)
        ids, scores, boxes = (o[0] for o in outs[:3])
        return ids[:, 0], scores[:, 0], boxes
    return run


def _roles(onnx_file: Path, info: dict, outputs: list[str]) -> dict[str, str]:
    """Role (ids, scores, boxes, then the head's raw tensors) -> ncnn blob, through the ONNX
    output order."""
    import onnx

    order = [o.name for o in onnx.load(str(onnx_file), load_external_data=False).graph.output]
    names = info["outputs"]
    roles = ["ids", "scores", "boxes", *info["raw"]][-len(names):]
    if len(outputs) != len(order):
        raise RuntimeError(f"pnnx's model has {len(outputs)} outputs, the ONNX file "
                           f"{len(order)}")
    return {role: outputs[order.index(name)] for role, name in zip(roles, names)}


def onnx_valid(path: Path) -> str:
    """Whether the file pnnx failed on is itself sound: onnx's full checker (with shape
    inference) and an onnxruntime session; "ok" or what refused it."""
    import onnx
    import onnxruntime as ort

    try:
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    except Exception as exc:
        return f"onnx.checker: {brief(str(exc), 200)}"
    try:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as exc:
        return f"onnxruntime: {brief(str(exc), 200)}"
    return "ok"


def convert_all(model: str, workdir: Path) -> tuple[dict, object, object]:
    """Export every variant and run pnnx on it; (results by variant, the model, its head)."""
    from fidelity import export_onnx

    from ssdconv.family import recognise
    from ssdconv.models import load_model

    loaded = load_model(model, seed=0)
    head = recognise(loaded.graph)
    shape = list(loaded.graph.input_shape)
    out: dict = {}
    for key, body_only, gamma_one in VARIANTS:
        vdir = workdir / "pnnx" / key
        shutil.rmtree(vdir, ignore_errors=True)  # nothing of an earlier run can pass as this one
        vdir.mkdir(parents=True)
        try:
            info = export_onnx(loaded, head, vdir / "export", gamma_one, body_only=body_only)
        except Exception as exc:  # an exporter failure is a result, not a crash
            out[key] = {"converted": False, "exit": "mx2onnx failed", "stage": "mx2onnx",
                        "first_error": f"{type(exc).__name__}: {brief(str(exc))}"}
            continue
        out[key] = {"onnx": info["file"], "onnx_outputs": info["outputs"],
                    **run_pnnx(Path(info["file"]), vdir, shape)}
        if not out[key]["converted"]:
            out[key]["onnx_valid"] = onnx_valid(Path(info["file"]))
    return out, loaded, head


def fidelity(loaded, head, variants: dict, images: list[str]) -> None:
    """Add raw-tensor and detection fidelity to every variant that converted (in place)."""
    from fidelity import _row, _summarise

    from ssdconv.convert import Options
    from ssdconv.verify.compare import match_detections, raw_diff
    from ssdconv.verify.gluon_runner import GluonRunner
    from ssdconv.verify.images import load_rgb

    opts = Options()
    gluon = GluonRunner(loaded.graph, head, opts.source_mean, opts.source_std)
    _, _, h, w = loaded.graph.input_shape
    runners = {}
    tail = gluon_tail(loaded, head)
    for key, v in variants.items():
        if not v.get("converted"):
            continue
        try:
            roles = _roles(Path(v["onnx"]), {"outputs": v["onnx_outputs"],
                                             "raw": list(head.raw_outputs())}, v["outputs"])
            runners[key] = PnnxNcnnRunner(v, roles, gluon, tail, w, h)
        except Exception as exc:
            v["fidelity"] = {"error": f"{type(exc).__name__}: {brief(str(exc))}"}
    rows: dict[str, list] = {k: [] for k in runners}
    for path in images:
        rgb = load_rgb(path, h, w)
        g = gluon.run(rgb)
        cut = head.comparable_score(g["raw32"], g["det_scores"])
        for key, runner in list(runners.items()):
            try:
                rt = runner.run(rgb)
                raw = raw_diff(rt, g)
            except Exception as exc:  # a model that loads but cannot run is a result too
                variants[key]["fidelity"] = {"error": f"{type(exc).__name__}: {brief(str(exc))}"}
                del runners[key]
                continue
            rows[key].append(_row(raw, match_detections(g, rt, w, h, cut, head.nms_threshold())))
    for key in runners:
        variants[key]["fidelity"] = _summarise(rows[key])


def child(model: str, workdir: Path, images: list[str], convert_only: bool) -> dict:
    """Every variant's result by its key, and `raw_roles`: the head's raw tensors by role (SSD
    loc, conf; YOLOv3 outputs.0, ...), which the body ends with and ncnn_raw fetches."""
    variants, loaded, head = convert_all(model, workdir)
    if not convert_only:
        fidelity(loaded, head, variants, images)
    return {**variants, "raw_roles": list(head.raw_outputs())}


def measure(model: str, workdir: Path, n_images: int, threads: list[int], runs: int,
            warmup: int) -> dict:
    """The route's conversions and fidelity in one child process, then the latency of each
    converted model and of ssdconv's model fetching the same raw tensors (SSD: loc/conf), each
    in its own."""
    import speed

    out = run_json([PY, __file__, model, str(workdir), "--images", str(n_images)],
                   env=child_env())
    if "error" in out:
        return out
    converted = [key for key, _, _ in VARIANTS if out.get(key, {}).get("converted")]
    if converted and (workdir / "ssdconv").exists():
        out["ssdconv_raw"] = {f"ncnn_{n}": speed.measure_one("ncnn_raw", n, workdir, runs, warmup,
                                                             fetch=out["raw_roles"])
                              for n in threads}
    for key in converted:
        v = out[key]
        if key in TIMED:
            for n in threads:
                v[f"ncnn_{n}"] = speed.measure_one("pnnx", n, workdir, runs, warmup,
                                                   ncnn_dir=workdir / "pnnx" / key)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--images", type=int, default=0, help="use the first N samples (0: all)")
    ap.add_argument("--convert-only", action="store_true", help="conversions only: no "
                    "fidelity (latency is measure()'s, never this command's)")
    a = ap.parse_args()
    images = sample_images(a.images)
    print(json.dumps(child(a.model, a.workdir, images, a.convert_only)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
