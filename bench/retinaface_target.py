"""insightface's RetinaFace measured: conversion, fidelity and latency of ssdconv's models, with
ncnn's own MXNet converter (tools/mxnet/mxnet2ncnn) beside them, in one stage.

For one model (`mnet25`, or `r50`: the real R50, units (3, 4, 6, 3) and width 1; both built by
tests/retinaface_models.py with seeded weights, seed 0, saved as a checkpoint in WORKDIR,
untimed, at the stage's input size, 640x640 by default: insightface's bound size) this stage
measures:

* conversion: `ssdconv convert SYMBOL --input-size H,W --target all` as a whole process (wall
  time, peak RSS); mxnet2ncnn on the same checkpoint, timed the same way, when its binary is
  named (`mxnet2ncnn SYMBOL PARAMS OUT.param OUT.bin`);
* fidelity, on the two face photos (samples/astronaut.jpg, samples/grace_hopper.jpg), through
  the package's own staged check (`run_check` on the conversion loaded from its manifest) in
  OpenCV, ncnn, onnxruntime and OpenVINO: the worst raw error / bound over the nine outputs, the
  faces insightface's decode finds against float64 MXNet's, unmatched faces, the largest box
  and landmark differences, the verdict. mxnet2ncnn's model goes through the same check, in a
  child of its own (a model that crashes ncnn is a result): the package's ncnn runner on its
  files (exact float32, as ssdconv's model is checked), fed the same RGB pixels (no mean, no
  scale: what MXNet takes), the nine outputs extracted by their MXNet names;
* latency at each thread count, each in its own process (bench/speed.py), of ssdconv's four
  models in the package's runners (`Runner.timed`) and of mxnet2ncnn's model in the package's
  ncnn runner, as deployed.

Usage: `python bench/retinaface_target.py prepare MODEL WORKDIR [--size H,W]` or
`fidelity|fidelity-mxnet2ncnn MODEL WORKDIR [--images N]` (one JSON line; run.py calls
`measure`, which runs the conversions and latencies around them).
"""

from __future__ import annotations

import json
import sys
import warnings
from functools import partial
from pathlib import Path

import speed
from common import (
    PY,
    ROOT,
    SAMPLES,
    brief,
    child_env,
    param_layer_count,
    run_json,
    stage_main,
    stage_start,
    timed_run,
)
from onnx_target import _error
from plain_target import check_runtimes, conversion, converted, package_latency

warnings.simplefilter("ignore")

# the stage's models: tests/retinaface_models.save_retinaface's keywords
MODELS = {"mnet25": {"kind": "mnet25"},
          "r50": {"kind": "r50", "units": (3, 4, 6, 3), "width": 1.0}}
SIZE = (640, 640)  # insightface's bound size (H, W)
FACES = ("astronaut.jpg", "grace_hopper.jpg")  # the photos with faces
MXNET2NCNN = "mxnet2ncnn"  # WORKDIR/mxnet2ncnn: its model, a manifest for it, what it printed
NO_BINARY = "no mxnet2ncnn: set MXNET2NCNN or pass --mxnet2ncnn PATH"


def face_photos(first: int = 0) -> list[str]:
    """The face photos fidelity runs on; `first`: only that many (0: both)."""
    photos = [str(SAMPLES / name) for name in FACES]
    return photos[:first] if first else photos


def prepare(model: str, workdir: Path, size: str | None = None) -> dict:
    """The model's seeded checkpoint (PREFIX-symbol.json, PREFIX-0000.params, seed 0) saved in
    WORKDIR at SIZE ("H,W", default 640,640), and what `ssdconv convert` and `load_model` are
    given for it; written to WORKDIR/source.json."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests import retinaface_models

    hw = tuple(int(s) for s in size.split(",")) if size else SIZE
    prefix = workdir / "checkpoint" / model
    prefix.parent.mkdir(parents=True, exist_ok=True)
    symbol = retinaface_models.save_retinaface(str(prefix), seed=0, size=hw, **MODELS[model])
    info = {"cli": [str(symbol), "--input-size", ",".join(map(str, hw))],
            "load": {"source": str(symbol), "input_size": list(hw)}, "prefix": str(prefix),
            "size": list(hw)}
    (workdir / "source.json").write_text(json.dumps(info, indent=1))
    return info


def mxnet2ncnn_conversion(model: str, workdir: Path, binary: str | None) -> dict:
    """mxnet2ncnn on the checkpoint prepare saved, timed as a whole process, into
    WORKDIR/mxnet2ncnn/MODEL.param/.bin, with MODEL.json: ssdconv's manifest with the same
    blobs (the source's names, which mxnet2ncnn keeps) and the input as MXNet takes it (RGB,
    no mean, no scale), so the package's ncnn runner and bench/speed.py run its model."""
    if not binary:
        return {"not_run": NO_BINARY}
    if not Path(binary).is_file():
        return {"not_run": f"no mxnet2ncnn at {binary}"}
    prefix = json.loads((workdir / "source.json").read_text())["prefix"]
    out = workdir / MXNET2NCNN
    out.mkdir(parents=True, exist_ok=True)
    param, binfile = out / f"{model}.param", out / f"{model}.bin"
    run = timed_run([binary, f"{prefix}-symbol.json", f"{prefix}-0000.params", str(param),
                     str(binfile)])
    said = [ln.strip() for ln in (run["stderr"] + run["stdout"]).splitlines() if ln.strip()]
    result = {"wall_s": run["wall_s"], "peak_rss_mib": run["peak_rss_mib"],
              "spawner_rss_mib": run["spawner_rss_mib"], "said": list(dict.fromkeys(said))[:20]}
    if run["rc"] != 0 or not param.is_file() or not binfile.is_file():
        result["error"] = f"exit {run['rc']}: {brief(' | '.join(said[-3:]))}"
    else:
        result["layers"] = param_layer_count(param)
        manifest = json.loads((workdir / "ssdconv" / f"{model}.json").read_text())
        manifest.update(name=model, channel_order="RGB", mean=[0.0, 0.0, 0.0],
                        scale=[1.0, 1.0, 1.0], ncnn={}, written_by=binary)
        names = set(param.read_text().split())
        result["missing_blobs"] = [b for b in manifest["blobs"].values() if b not in names]
        (out / f"{model}.json").write_text(json.dumps(manifest, indent=1))
    (out / "result.json").write_text(json.dumps(result, indent=1))
    return result


def conversions(model: str, workdir: Path, size: tuple[int, int], binary: str | None) -> dict:
    """ssdconv's timed conversion (bench/plain_target.py's, after this script's prepare at
    SIZE), then mxnet2ncnn's (its entry `mxnet2ncnn`)."""
    out = conversion(model, workdir, __file__, ("--size", ",".join(map(str, size))))
    if "error" not in out:
        out[MXNET2NCNN] = mxnet2ncnn_conversion(model, workdir, binary)
    return out


def _summary(results: list) -> dict:
    """One runtime's check over the images: the worst raw error / bound over the outputs (its
    output, error and bound), per image the faces insightface's decode finds on the runtime's
    outputs and on float64 MXNet's, and over the images the unmatched faces, faces at the
    score threshold, the largest box, score and landmark differences, the first divergence
    the check named, and its verdict."""
    out: dict = {"images": len(results), "ok": all(r.ok for r in results), "ratio": 0.0,
                 "faces": [], "unmatched": 0, "threshold_ties": 0, "max_box_diff_px": 0.0,
                 "max_score_diff": 0.0, "max_landmark_diff_px": 0.0, "first_divergence": None}
    for r in results:
        for role, t in r.raw.tensors.items():
            ratio = t.err / t.bound if t.bound else float("inf")
            if ratio >= out["ratio"]:
                out.update(ratio=ratio, worst=role, err=t.err, bound=t.bound)
        faces = next((s.figures for s in r.outputs if s.title == "faces"), None)
        if faces:
            out["faces"].append({"image": r.image, "runtime": faces["faces_runtime"],
                                 "reference": faces["faces_reference"]})
            out["unmatched"] += faces["unmatched"]
            out["threshold_ties"] += faces["threshold_ties"]
            for k in ("max_box_diff_px", "max_score_diff", "max_landmark_diff_px"):
                out[k] = max(out[k], faces[k])
        out["first_divergence"] = out["first_divergence"] or r.first_divergence
    if out["ratio"] == float("inf"):
        out["ratio"] = None  # a shape mismatch: no error to show (json has no infinity)
    return out


def fidelity(model: str, workdir: Path, images: list[str]) -> dict:
    """The package's staged check of ssdconv's conversion in WORKDIR/ssdconv, per runtime."""
    return {"images": [Path(p).name for p in images],
            **check_runtimes(converted(model, workdir), images, _summary)}


def fidelity_mxnet2ncnn(model: str, workdir: Path, images: list[str]) -> dict:
    """mxnet2ncnn's model through the same staged check: the package's ncnn runner (exact
    float32, light mode off) on its files, against the same float64 MXNet and bounds, the same
    faces stage; or why it was not run, or the error that stopped it."""
    from ssdconv.backend.ncnn.runner import NcnnRunner
    from ssdconv.verify.check import run_check

    out = workdir / MXNET2NCNN
    done = out / "result.json"
    if not done.is_file():
        return {"not_run": NO_BINARY}
    made = json.loads(done.read_text())
    if "error" in made or "not_run" in made:
        return {k: made[k] for k in ("error", "not_run") if k in made}
    try:
        manifest = json.loads((out / f"{model}.json").read_text())
        runner = NcnnRunner(str(out / f"{model}.param"), str(out / f"{model}.bin"), manifest)
        runner.name = runner.title = MXNET2NCNN
        return _summary(run_check(converted(model, workdir), images, runners=[runner]).results)
    except Exception as exc:  # a model that does not load or run is a result
        return _error(exc)


def measure(model: str, workdir: Path, n_images: int, threads: list[int], runs: int,
            warmup: int, size: tuple[int, int] = SIZE, mxnet2ncnn: str | None = None) -> dict:
    """The whole stage for one model in WORKDIR (emptied first): the conversions, fidelity in
    one child process and mxnet2ncnn's in another, then every latency in its own."""
    out = {"size": list(size), **stage_start(__file__, model, workdir, n_images,
                                             partial(conversions, size=tuple(size),
                                                     binary=mxnet2ncnn))}
    if "error" in out["conversion"]:
        return out
    out["fidelity"][MXNET2NCNN] = run_json(
        [PY, __file__, "fidelity-mxnet2ncnn", model, str(workdir), "--images", str(n_images)],
        env=child_env())
    out["latency"] = package_latency(workdir, threads, runs, warmup)
    if "error" not in out["fidelity"][MXNET2NCNN] and \
            "not_run" not in out["fidelity"][MXNET2NCNN]:
        for n in threads:
            out["latency"][f"{MXNET2NCNN}_{n}"] = speed.measure_one(
                "ssdconv_ncnn", n, workdir, runs, warmup, ncnn_dir=workdir / MXNET2NCNN)
    return out


if __name__ == "__main__":
    sys.exit(stage_main(__doc__, prepare, fidelity, face_photos,
                        (("--size", {"help": "H,W (default 640,640)"}),),
                        {"fidelity-mxnet2ncnn": fidelity_mxnet2ncnn}))
