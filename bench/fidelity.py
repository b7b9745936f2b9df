"""Fidelity: every runtime against the float64 Gluon reference, on the same seeded weights.

ssdconv's outputs are checked with the project's own staged check (`run_check`): OpenCV DNN on
the caffe model (Winograd off, as `ssdconv verify` runs it), ncnn fp32 and ncnn with fp16
weights (`--ncnn-fp16`, arithmetic in fp32). The deployed settings the speed table uses, OpenCV
with Winograd on and ncnn with its default options (fp16 storage/arithmetic where the CPU has
them), come from the same `runners_for` as the check's runners; they and MXNet's own ONNX
export run by onnxruntime go through the same comparison functions (`raw_diff`,
`match_detections`, the head's `comparable_score` and `check_stages`) here.

The ONNX export gets the head's raw tensors (SSD: loc, conf) as extra outputs (the same internal
nodes the Gluon reference reads). It is exported twice: as stored, and with gamma := 1 in every
fix_gamma BatchNorm (what MXNet computes), so the table separates the exporter's fix_gamma
handling from its NMS; the γ:=1 export's detections are also matched against MXNet itself run
with class-agnostic NMS, which tells whether NMS's class handling explains what is left.
Usage: `python bench/fidelity.py MODEL WORKDIR [--images N]` (prints one JSON line).
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path

import numpy as np
from common import brief, sample_images

warnings.simplefilter("ignore")


def fix_gamma_params(symbol_json: str, params: dict) -> list[str]:
    """Gamma names of BatchNorms that MXNet runs with gamma := 1 (fix_gamma, default true)."""
    names = []
    nodes = json.loads(symbol_json)["nodes"]
    for n in nodes:
        if n["op"] != "BatchNorm":
            continue
        flag = str(n.get("attrs", {}).get("fix_gamma", "True")).lower()
        if flag in ("true", "1"):
            names.append(nodes[n["inputs"][1][0]]["name"])
    return [g for g in names if g in params]


def agnostic_nms_json(symbol_json: str) -> str:
    """The same symbol with class-agnostic NMS (force_suppress=True): what mx2onnx's
    NonMaxSuppression computes, so MXNet itself can show whether NMS explains a difference."""
    d = json.loads(symbol_json)
    for n in d["nodes"]:
        if n["op"] == "_contrib_box_nms":
            n.setdefault("attrs", {})["force_suppress"] = "True"
    return json.dumps(d)


def strip_initializer_inputs(path: Path) -> None:
    """Drop initializers from the graph inputs (mx2onnx lists them there), as onnxruntime
    advises: otherwise it may not constant-fold them. Lossless; done for every ONNX file run."""
    import onnx

    m = onnx.load(str(path))
    init = {i.name for i in m.graph.initializer}
    keep = [i for i in m.graph.input if i.name not in init]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    onnx.save(m, str(path))


def export_onnx(loaded, head, out: Path, gamma_one: bool, body_only: bool = False) -> dict:
    """mx2onnx export of the model with the head's raw tensors added as outputs after the
    model's own; with `body_only`, of the network up to the raw tensors alone (no decoding or
    NMS: what is left to convert when a converter cannot take the post-processing)."""
    import mxnet as mx

    from ssdconv.mxnet.run import output_key

    g = loaded.graph
    sym = mx.sym.load_json(g.symbol_json)
    internals = sym.get_internals()
    names = internals.list_outputs()
    raw = head.raw_outputs()
    extra = [internals[names.index(output_key(g, index, k))] for index, k in raw.values()]
    heads = [] if body_only else [sym[i] for i in range(len(sym.list_outputs()))]
    grouped = mx.sym.Group(heads + extra)
    args, aux = set(grouped.list_arguments()), set(grouped.list_auxiliary_states())
    fixed = fix_gamma_params(g.symbol_json, g.params)
    changed = [n for n in fixed if not np.all(g.params[n] == 1)]
    saved = {}
    for name, value in g.params.items():
        if gamma_one and name in fixed:
            value = np.ones_like(value)
        if name in args or name in aux:
            saved[("arg:" if name in args else "aux:") + name] = mx.nd.array(value)
    out.parent.mkdir(parents=True, exist_ok=True)
    sym_file, params_file = f"{out}-symbol.json", f"{out}-0000.params"
    grouped.save(sym_file)
    mx.nd.save(params_file, saved)
    onnx_file = Path(f"{out}.onnx")
    mx.onnx.export_model(sym_file, params_file, [tuple(g.input_shape)], [np.float32],
                         str(onnx_file))
    strip_initializer_inputs(onnx_file)
    # mx2onnx names each output after its node and orders them topologically: keep the names
    outputs = [] if body_only else [g.nodes[i].name for i, _ in g.heads]
    outputs += [g.nodes[i].name for i, _ in raw.values()]
    return {"file": str(onnx_file), "outputs": outputs, "raw": list(raw),
            "fix_gamma_bns": len(fixed), "stored_gamma_not_1": len(changed)}


class OnnxRunner:
    """onnxruntime on an mx2onnx export; takes Gluon's own preprocessed input."""

    def __init__(self, info: dict, gluon, height: int, width: int) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.log_severity_level = 3
        self.sess = ort.InferenceSession(info["file"], so, providers=["CPUExecutionProvider"])
        self.outputs = info["outputs"]
        self.raw = info["raw"]
        self.input = self.sess.get_inputs()[0].name
        self.gluon = gluon
        self.scale = np.array([width, height, width, height], np.float32)

    def run(self, rgb: np.ndarray) -> dict:
        feed = {self.input: self.gluon.input(rgb)}
        ids, scores, boxes, *raw = self.sess.run(self.outputs, feed)
        keep = ids[0, :, 0] >= 0
        return {**{k: v.reshape(-1) for k, v in zip(self.raw, raw)},
                "det_labels": ids[0, keep, 0].astype(int), "det_scores": scores[0, keep, 0],
                "det_boxes": boxes[0, keep] / self.scale}


def deployed_runners(conversion) -> dict:
    """OpenCV with Winograd on and ncnn with its default options (one thread), as the speed
    table runs them, by row name; made by `runners_for` like the check's own runners."""
    from ssdconv.verify.runners import runners_for

    (opencv,) = runners_for(conversion, ("opencv",), winograd=True)
    (ncnn,) = runners_for(conversion, ("ncnn",), deployed=True)
    return {"opencv_winograd": opencv, "ncnn_default": ncnn}


def _summarise(rows: list[dict]) -> dict:
    errs = [k for k in rows[0] if k.endswith("_err") and k != "prior_err"]
    return {
        **{k: max(r[k] for r in rows) for k in errs},
        "matched": sum(r["matched"] for r in rows), "compared": sum(r["compared"] for r in rows),
        "unmatched_gluon": sum(r["unmatched_gluon"] for r in rows),
        "unmatched_runtime": sum(r["unmatched_runtime"] for r in rows),
        "explained_ties": sum(r["explained_ties"] for r in rows),
        "prior_err": max((r["prior_err"] for r in rows if r["prior_err"] is not None),
                         default=None),
        "max_score_diff": max(r["max_score_diff"] for r in rows),
    }


def _row(raw, det, prior_err=None) -> dict:
    """One runtime on one image: `ROLE_err` per raw tensor (SSD: loc_err, conf_err), ..."""
    return {**{f"{k}_err": t.err for k, t in raw.tensors.items()}, "matched": det.matched,
            "compared": det.compared_gluon, "unmatched_gluon": len(det.unmatched_gluon),
            "unmatched_runtime": len(det.unmatched_runtime),
            "explained_ties": len(det.explained_gluon) + len(det.explained_runtime),
            "prior_err": prior_err,
            "max_score_diff": det.max_score_diff}


def measure(model: str, workdir: Path, images: list[str]) -> dict:
    from ssdconv.convert import Options, convert
    from ssdconv.models import load_model
    from ssdconv.mxnet.run import run_outputs
    from ssdconv.verify.check import run_check
    from ssdconv.verify.compare import match_detections, raw_diff
    from ssdconv.verify.gluon_runner import GluonRunner
    from ssdconv.verify.images import load_rgb

    loaded = load_model(model, seed=0)
    fdir = workdir / "fidelity"
    conv = convert(loaded, fdir / "fp32", Options(targets=("caffe", "ncnn")))
    conv16 = convert(loaded, fdir / "fp16", Options(targets=("ncnn",), ncnn_fp16=True))
    rows: dict[str, list[dict]] = {}
    checks = (("fp32", run_check(conv, images)),
              ("fp16", run_check(conv16, images, runtimes=("ncnn",))))
    for label, rep in checks:
        for r in rep.results:
            key = "opencv" if r.runtime == "opencv" else f"ncnn_{label}"
            rows.setdefault(key, []).append(_row(r.raw, r.det, r.figures.get("prior_err")))
    head, man = conv.head, conv.manifest
    gluon = GluonRunner.for_conversion(conv)
    _, _, h, w = man["input_shape"]
    onnx_info = {}
    extra = deployed_runners(conv)  # row name -> runner
    for key, gamma_one in (("onnx", False), ("onnx_gamma1", True)):
        try:
            onnx_info[key] = export_onnx(loaded, head, fdir / "onnx" / key, gamma_one)
            extra[key] = OnnxRunner(onnx_info[key], gluon, h, w)
        except Exception as exc:  # an exporter failure is a result, not a crash
            onnx_info[key] = {"error": f"{type(exc).__name__}: {brief(str(exc))}"}
    agnostic = agnostic_nms_json(loaded.graph.symbol_json)
    g_err = []
    failed: dict[str, dict] = {}
    for path in images:
        rgb = load_rgb(path, h, w)
        g = gluon.run(rgb)
        g_err.append({f"{k}_err": float(np.abs(g["raw32"][k] - g["raw64"][k]).max())
                      for k in g["raw64"]})
        cut = head.comparable_score(g["raw32"], g["det_scores"])
        for name, runner in list(extra.items()):
            try:
                rt = runner.run(rgb)
            except Exception as exc:  # a runtime that cannot run the model is a result too
                failed[name] = {"error": f"{type(exc).__name__}: {brief(str(exc))}"}
                del extra[name]
                continue
            # the family's own stages need the converted model's blobs, which ONNX lacks
            figures = {} if isinstance(runner, OnnxRunner) else {
                k: v for s in head.check_stages(rt) for k, v in s.figures.items()}
            perr = figures.get("prior_err")
            raw = raw_diff(rt, g)
            det = match_detections(g, rt, w, h, cut, head.nms_threshold())
            rows.setdefault(name, []).append(_row(raw, det, perr))
            if name == "onnx_gamma1":
                outs, _ = run_outputs(loaded.graph, list(loaded.graph.heads), gluon.input(rgb),
                                      symbol_json=agnostic)
                ids, scores, boxes = (o[0] for o in outs[:3])
                keep = ids[:, 0] >= 0
                ga = {"det_labels": ids[keep, 0].astype(int), "det_scores": scores[keep, 0],
                      "det_boxes": boxes[keep]}
                cut_a = head.comparable_score(g["raw32"], ga["det_scores"])
                rows.setdefault("onnx_vs_agnostic", []).append(
                    _row(raw, match_detections(ga, rt, w, h, cut_a)))
    out = {name: _summarise(r) for name, r in rows.items()}
    out.update(failed)
    out["gluon_fp32"] = {k: max(e[k] for e in g_err) for k in g_err[0]}
    out["onnx_export"] = onnx_info
    out["images"] = [os.path.basename(p) for p in images]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--images", type=int, default=0, help="use the first N samples (0: all)")
    args = ap.parse_args()
    images = sample_images(args.images)
    print(json.dumps(measure(args.model, args.workdir, images)))


if __name__ == "__main__":
    main()
