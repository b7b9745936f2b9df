"""ncnn int8 against fp32: latency, accuracy, and ncnn's own int8 tools on the same model.

For each model (`demo`: the shipped demo SSD; otherwise a zoo name with seeded weights) this
converts the fp32 ncnn model and the `--ncnn-int8` one, both calibrated on the demo's generated
training split, then measures:

* latency: one forward pass (input, extract the detections) with ncnn's default options
  (`use_int8_inference` on, light mode, Winograd/sgemm), median over --runs after --warmup, at
  each thread count, every (model, variant, threads) in its own process. On a busy machine wall
  times wander; the 1-thread CPU time of the calling thread (ncnn runs there at 1 thread) is
  printed beside them as the steadier figure.
* accuracy: the demo's VOC07 mAP on --test held-out images (test split); for every model the
  error of each of the head's raw tensors (SSD loc/conf, YOLOv3 outputs.0, ...) against the fp32
  model (rms / std of the fp32 values) on the sample images.
* with NCNN_TOOLS (a folder holding ncnn's ncnn2table and ncnn2int8, built from Tencent/ncnn):
  ncnn2table (method=kl) on the fp32 model and the same images (resized to the input first:
  ncnn's own resize differs from OpenCV's), ncnn2int8 with its table: its
  model gets the same columns, its table is compared with ssdconv's NAME.table, and ncnn2int8
  given ssdconv's table is checked to write ssdconv's .bin byte for byte. Without it those
  columns say "not run".

Usage: python bench/int8.py [MODEL ...] [--seed 0] [--calibration 100] [--test 300]
       [--threads 1,2] [--runs 30] [--warmup 5] [--workdir DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import (
    PY,
    SAMPLES,
    by_manifest_role,
    child_env,
    machine,
    param_layer_count,
    run_json,
    sample_images,
)

DEFAULT_MODELS = ("demo", "ssd_512_resnet50_v1_voc")
VARIANTS = ("fp32", "int8", "ncnn-tools-int8")


# ----------------------------------------------------------------------------- child: timing


def child(param: str, binfile: str, manifest: str, threads: int, runs: int, warmup: int) -> dict:
    import ncnn
    import numpy as np

    from ssdconv.verify.images import load_rgb, network_input

    man = json.loads(Path(manifest).read_text())
    _, _, h, w = man["input_shape"]
    x = np.ascontiguousarray(network_input(load_rgb(str(SAMPLES / "astronaut.jpg"), h, w),
                                           man)[0])
    net = ncnn.Net()
    net.opt.num_threads = threads
    if net.load_param(param) != 0 or net.load_model(binfile) != 0:
        raise RuntimeError("ncnn cannot load the model")
    blobs = man["blobs"]
    walls, cpus = [], []
    for i in range(warmup + runs):
        start, cpu = time.perf_counter(), time.thread_time()
        ex = net.create_extractor()
        ex.input(blobs["input"], ncnn.Mat(x))
        rc, _ = ex.extract(blobs["detections"])
        if rc != 0:
            raise RuntimeError(f"extract returned {rc}")
        if i >= warmup:
            walls.append((time.perf_counter() - start) * 1000)
            cpus.append((time.thread_time() - cpu) * 1000)
    return {"median_ms": statistics.median(walls), "min_ms": min(walls),
            "cpu_median_ms": statistics.median(cpus), "runs": runs, "warmup": warmup}


def measure(files: dict, threads: int, runs: int, warmup: int) -> dict:
    cmd = [PY, __file__, "--child", files["param"], files["bin"], files["json"], str(threads),
           str(runs), str(warmup)]
    return run_json(cmd, env=child_env(threads))


# ----------------------------------------------------------------------------- conversions


def _load(name: str, seed: int):
    from ssdconv.demo.shapes_dataset import CLASSES
    from ssdconv.models import load_model
    from ssdconv.shipped import DEMO_SYMBOL

    if name == "demo":
        return load_model(str(DEMO_SYMBOL), classes=list(CLASSES))
    return load_model(name, seed=seed)


def sized_images(source: Path, out: Path, h: int, w: int) -> Path:
    """The calibration images resized (as the manifest's preprocessing does) to the input, so
    ncnn2table, whose ncnn resize differs from OpenCV's, sees the very pixels ssdconv sees."""
    import cv2

    from ssdconv.verify.images import load_rgb

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for path in sorted(source.glob("*.png")):
        cv2.imwrite(str(out / path.name), load_rgb(str(path), h, w)[:, :, ::-1])
    return out


def convert_pair(name: str, seed: int, calib: Path, out: Path) -> dict:
    """fp32 and int8 ncnn conversions of one model: {variant: {files, seconds}, "calibration":
    the folder of input-sized calibration images, "raw_roles": the head's raw tensors,
    "int8_layers": the manifest's count of int8 convolutions and the ones kept float}."""
    from ssdconv.backend.ncnn.int8 import QUANTIZABLE_TYPES
    from ssdconv.convert import Options, convert

    model = _load(name, seed)
    done: dict = {}
    start = time.perf_counter()
    conv = convert(model, out / "fp32", Options(targets=("ncnn",)), name="model")
    done["fp32"] = {"files": dict(conv.files), "seconds": time.perf_counter() - start}
    done["raw_roles"] = list(conv.head.raw_outputs())
    _, _, h, w = conv.manifest["input_shape"]
    done["calibration"] = sized_images(calib, out / "calibration", h, w)
    start = time.perf_counter()
    conv = convert(model, out / "int8", Options(targets=("ncnn",),
                                                ncnn_int8=(str(done["calibration"]),)),
                   name="model")
    done["int8"] = {"files": dict(conv.files), "seconds": time.perf_counter() - start}
    (approx,) = conv.manifest["approximations"]
    param = Path(conv.files["param"]).read_text().splitlines()[2:]
    convs = sum(line.split()[0] in QUANTIZABLE_TYPES for line in param)
    done["int8_layers"] = {"convolutions": convs, "float": approx["float_layers"]}
    return done


def demo_fp16(out: Path) -> dict:
    """The demo's ncnn model with fp16 weights (`--ncnn-fp16`): its files, for the mAP table
    (fp32, fp16 and int8 side by side)."""
    from ssdconv.convert import Options, convert

    conv = convert(_load("demo", 0), out / "fp16", Options(targets=("ncnn",), ncnn_fp16=True),
                   name="model")
    return dict(conv.files)


def ncnn_tools(tools: Path, fp32: dict, ours: dict, calib: Path, out: Path) -> dict:
    """ncnn2table + ncnn2int8 on the fp32 model; compares the table and the .bin with ours."""
    out.mkdir(parents=True, exist_ok=True)
    man = json.loads(Path(fp32["json"]).read_text())
    _, _, h, w = man["input_shape"]
    listing = out / "images.txt"
    listing.write_text("\n".join(sorted(str(p) for p in calib.glob("*.png"))) + "\n")
    table = out / "model.table"
    start = time.perf_counter()
    subprocess.run([str(tools / "ncnn2table"), fp32["param"], fp32["bin"], str(listing),
                    str(table), f"mean=[{','.join(map(str, man['mean']))}]",
                    f"norm=[{','.join(map(str, man['scale']))}]", f"shape=[{w},{h},3]",
                    f"pixel={man['channel_order']}", "thread=1", "method=kl"],
                   check=True, capture_output=True)
    table_s = time.perf_counter() - start
    files = {"param": str(out / "model.param"), "bin": str(out / "model.bin"),
             "json": fp32["json"]}
    subprocess.run([str(tools / "ncnn2int8"), fp32["param"], fp32["bin"], files["param"],
                    files["bin"], str(table)], check=True, capture_output=True)
    mine = out / "ours_via_ncnn2int8"
    subprocess.run([str(tools / "ncnn2int8"), fp32["param"], fp32["bin"], f"{mine}.param",
                    f"{mine}.bin", ours["table"]], check=True, capture_output=True)
    same_bin = Path(f"{mine}.bin").read_bytes() == Path(ours["bin"]).read_bytes()
    return {"files": files, "ncnn2table_seconds": table_s,
            "table": compare_tables(Path(ours["table"]), table),
            "ncnn2int8_with_our_table_writes_our_bin": same_bin}


def _read_table(path: Path) -> dict[str, list[float]]:
    rows = (line.split() for line in path.read_text().splitlines() if line.strip())
    return {r[0]: [float(v) for v in r[1:]] for r in rows}


def compare_tables(ours: Path, theirs: Path) -> dict:
    """Largest relative difference of input and of weight scales (theirs print 6 decimals)."""
    a, b = _read_table(ours), _read_table(theirs)
    worst = {"input": 0.0, "weight": 0.0}
    for key in set(a) & set(b):
        kind = "weight" if key.endswith("_param_0") else "input"
        for x, y in zip(a[key], b[key], strict=True):
            worst[kind] = max(worst[kind], abs(x - y) / max(abs(y), 1e-12))
    return {"keys_ours": len(a), "keys_theirs": len(b), "same_keys": set(a) == set(b),
            "max_rel_diff_input_scales": worst["input"],
            "max_rel_diff_weight_scales": worst["weight"]}


# ----------------------------------------------------------------------------- accuracy


def raw_errors(models: dict[str, dict], roles: list[str]) -> dict:
    """rms(raw - fp32's) / std(fp32's) of each raw tensor (by role: SSD loc, conf; YOLOv3
    outputs.0, ...), mean over the sample photos, per variant."""
    import ncnn
    import numpy as np

    from ssdconv.verify.images import load_rgb, network_input
    from ssdconv.verify.runners import blobs_by_role

    man = json.loads(Path(models["fp32"]["json"]).read_text())
    _, _, h, w = man["input_shape"]
    blobs = blobs_by_role(man)
    nets = {}
    for v, f in models.items():
        net = ncnn.Net()
        net.opt.num_threads = 1
        net.load_param(f["param"])
        net.load_model(f["bin"])
        nets[v] = net
    errs: dict[str, dict[str, list[float]]] = {v: {k: [] for k in roles} for v in nets}
    for path in sample_images():
        x = np.ascontiguousarray(network_input(load_rgb(path, h, w), man)[0])
        outs = {}
        for v, net in nets.items():
            ex = net.create_extractor()
            ex.input(blobs["input"], ncnn.Mat(x))
            outs[v] = {k: np.array(ex.extract(blobs[k])[1]).ravel() for k in roles}
        for v in nets:
            for k in roles:
                ref = outs["fp32"][k]
                errs[v][k].append(float(np.sqrt(np.mean((outs[v][k] - ref) ** 2)) / np.std(ref)))
    return {v: {k: statistics.mean(e[k]) for k in e} for v, e in errs.items() if v != "fp32"}


def demo_maps(models: dict[str, dict], count: int) -> dict[str, float]:
    """VOC07 mAP@0.5 of each ncnn variant (ncnn's default options) on held-out test images."""
    import numpy as np
    from gluoncv.utils.metrics.voc_detection import VOC07MApMetric

    from ssdconv.backend.ncnn.runner import NcnnRunner
    from ssdconv.demo.shapes_dataset import CLASSES, make_sample

    man = json.loads(Path(models["fp32"]["json"]).read_text())
    _, _, h, w = man["input_shape"]
    runners = {v: NcnnRunner(f["param"], f["bin"], man, 1, exact=False)
               for v, f in models.items()}
    metrics = {v: VOC07MApMetric(iou_thresh=0.5, class_names=CLASSES) for v in runners}
    scale = np.array([w, h, w, h], np.float64)
    for i in range(count):
        rgb, gt_boxes, gt_labels = make_sample("test", i)
        for v, r in runners.items():
            det = r.run(rgb)
            boxes = np.clip(np.asarray(det["det_boxes"], np.float64) * scale, 0, [w, h, w, h])
            metrics[v].update(boxes[None], np.asarray(det["det_labels"])[None, :, None],
                              np.asarray(det["det_scores"])[None, :, None],
                              np.asarray(gt_boxes, np.float64)[None],
                              np.asarray(gt_labels)[None, :, None])
    return {v: float(m.get()[1][-1]) for v, m in metrics.items()}


# ----------------------------------------------------------------------------- report


def _ms(r: dict | None, key: str = "median_ms") -> str:
    """A median, with the fastest run beside it: far apart, the machine was busy."""
    if r is None:
        return "not run"
    if key not in r:
        return "error"
    return f"{r[key]:.1f} ({r['min_ms']:.1f})" if key == "median_ms" else f"{r[key]:.1f}"


def _ratio(a: dict | None, b: dict | None, key: str = "median_ms") -> str:
    if not a or not b or key not in a or key not in b:
        return "-"
    return f"{a[key] / b[key]:.2f}x"


def _errs(raw: dict | None) -> str:
    """One variant's raw errors, one per manifest role (SSD loc/conf; YOLOv3 outputs)."""
    if raw is None:
        return "not run"
    return "/".join(f"{e:.4f}" for e in by_manifest_role(raw).values())


def print_report(results: dict, threads: list[int]) -> None:
    print(f"machine: {results['machine']['cpu']}, {results['machine']['cores']} cores; "
          f"ncnn {results['machine']['versions'].get('ncnn')}; default ncnn options")
    head = (f"{'model':26s} {'thr':>3s} {'fp32 ms (min)':>16s} {'int8 ms (min)':>16s} "
            f"{'speed-up':>8s} {'ncnn-tools int8 ms (min)':>25s} {'speed-up':>8s}")
    print(head)
    for name, r in results["models"].items():
        lat = r["latency"]
        for n in threads:
            f, q, t = (lat.get(f"{v}_{n}") for v in VARIANTS)
            print(f"{name:26s} {n:3d} {_ms(f):>16s} {_ms(q):>16s} {_ratio(f, q):>8s} "
                  f"{_ms(t):>25s} {_ratio(f, t):>8s}")
        f, q, t = (lat.get(f"{v}_1") for v in VARIANTS)
        if f and q:
            print(f"{'':26s} cpu {_ms(f, 'cpu_median_ms'):>16s} {_ms(q, 'cpu_median_ms'):>16s} "
                  f"{_ratio(f, q, 'cpu_median_ms'):>8s} {_ms(t, 'cpu_median_ms'):>25s} "
                  f"{_ratio(f, t, 'cpu_median_ms'):>8s}   (1-thread CPU time)")
    print()
    print(f"{'model':26s} {'layers':>6s} {'int8 conv s':>11s} {'raw err int8 loc/conf':>22s} "
          f"{'raw err ncnn-tools loc/conf':>28s}   (YOLOv3: the largest of its outputs)")
    for name, r in results["models"].items():
        raw = r["raw_error_vs_fp32"]
        ours, theirs = (_errs(raw.get(v)) for v in VARIANTS[1:])
        print(f"{name:26s} {r['layers']:6d} {r['int8_convert_seconds']:11.1f} "
              f"{ours:>22s} {theirs:>28s}")
    for name, r in results["models"].items():
        if "map" in r:
            maps = ", ".join(f"{v} {m:.4f}" for v, m in r["map"].items())
            print(f"{name}: VOC07 mAP on {r['map_images']} held-out test images: {maps}")
        tools = r.get("ncnn_tools")
        if tools:
            t = tools["table"]
            print(f"{name}: table vs ncnn2table: {t['keys_ours']} / {t['keys_theirs']} keys, "
                  f"same keys {t['same_keys']}, max rel diff input scales "
                  f"{t['max_rel_diff_input_scales']:.1e}, weight scales "
                  f"{t['max_rel_diff_weight_scales']:.1e}; ncnn2int8 with our table writes our "
                  f".bin byte for byte: {tools['ncnn2int8_with_our_table_writes_our_bin']}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        param, binfile, manifest, threads, runs, warmup = sys.argv[2:8]
        print(json.dumps(child(param, binfile, manifest, int(threads), int(runs), int(warmup))))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*", default=list(DEFAULT_MODELS))
    ap.add_argument("--seed", type=int, default=0, help="seeded weights of zoo models")
    ap.add_argument("--calibration", type=int, default=100, help="training images to calibrate")
    ap.add_argument("--test", type=int, default=300, help="demo test images for the mAP")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=Path("build/bench-int8"))
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    tools = Path(os.environ["NCNN_TOOLS"]) if os.environ.get("NCNN_TOOLS") else None
    import warnings

    warnings.simplefilter("ignore")
    from ssdconv.demo.shapes_dataset import write_split

    calib = args.workdir / "calibration"
    shutil.rmtree(calib, ignore_errors=True)
    write_split("train", args.calibration, str(calib))
    results: dict = {"machine": machine(), "calibration_images": args.calibration,
                     "ncnn_tools": str(tools) if tools else None, "models": {}}
    for name in args.models:
        out = args.workdir / name
        pair = convert_pair(name, args.seed, calib, out)
        models = {v: pair[v]["files"] for v in ("fp32", "int8")}
        r: dict = {"layers": param_layer_count(models["fp32"]["param"]),
                   "int8_convert_seconds": pair["int8"]["seconds"],
                   "int8_layers": pair["int8_layers"], "latency": {}}
        if tools:
            r["ncnn_tools"] = ncnn_tools(tools, models["fp32"], models["int8"],
                                         pair["calibration"], out / "ncnn-tools")
            models["ncnn-tools-int8"] = r["ncnn_tools"]["files"]
        for n in threads:
            for v, files in models.items():
                r["latency"][f"{v}_{n}"] = measure(files, n, args.runs, args.warmup)
        r["raw_error_vs_fp32"] = raw_errors(models, pair["raw_roles"])
        if name == "demo":  # its mAP in fp32, int8 and, beside them, fp16 weights
            maps_of = {**models, "fp16": demo_fp16(out)}
            r["map"], r["map_images"] = demo_maps(maps_of, args.test), args.test
        results["models"][name] = r
    print_report(results, threads)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
