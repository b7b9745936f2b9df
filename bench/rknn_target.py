"""ssdconv's headless detectors in Rockchip's RKNN simulator (rknn-toolkit2): fp16 and int8,
from the caffe and the ONNX conversion, against Gluon float32.

For one model (`demo_ssd`, `demo_yolo3`: the shipped demo detectors, trained weights; or a
GluonCV zoo name, seeded weights, `load_model(name, seed=0)`) this stage:

* converts it headless (`Options(targets=("caffe", "onnx"), headless=True)`): the network up to
  its raw prediction maps, the manifest and the generated C post-processing;
* writes the calibration list (dataset.txt): the demo's training images 0..N-1 (what
  `ssdconv eval` calibrates ncnn-int8 on: `make_sample("train", i)`, never scored) resized to
  the network size as PNG files, or the user's `--dataset FILE` (validated first: every line one
  existing jpg/png/bmp/npy file);
* runs, for each format (caffe, onnx) and precision (fp16: the toolkit without quantization;
  int8: w8a8 quantized with `normal`, and for the demo SSD's caffe conversion also `mmse` and
  `kl_divergence`),
  bench/rknn_runner.py under .venv-rknn on the held-out images: the demo's evaluation images
  (`make_sample("test", i)`, i < COUNT: the split `ssdconv eval` scores) and the sample photos,
  each resized to the network size and given in the manifest's channel order;
* compares the raw maps with Gluon float32's (`GluonRunner.for_conversion(conv).run(rgb)
  ["raw32"]`, by the head's roles): the largest |RKNN - Gluon| / max |Gluon| per map (relative
  to the map's range) and the smallest cosine; the detections of ssdconv's C tail on RKNN's maps
  against GluonCV's, row for row (`compare_rows`); and, for the demos, the VOC07 mAP@0.5 (the
  metric `ssdconv eval` computes, GluonCV's VOC07MApMetric, boxes clipped to the image) of
  Gluon and of each RKNN row through the C tail.

Usage: `python bench/rknn_target.py MODEL WORKDIR [--count N] [--target-platform P]
[--algorithms normal,mmse,kl_divergence] [--dataset FILE] [--calibration N]` (one JSON line;
bench/run.py --stage rknn calls it once per model).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RUNNER = BENCH / "rknn_runner.py"
MODELS = ("demo_ssd", "demo_yolo3", "ssd_300_mobilenet0.25_voc", "ssd_512_mobilenet1.0_voc")
FORMATS = ("caffe", "onnx")
ALGORITHMS = ("normal", "mmse", "kl_divergence")
# mmse and kl_divergence: the demo SSD's caffe conversion only (mmse builds for ~15 min on 100
# calibration images on 2 cores; one format is enough to compare the algorithms)
EXTRA_ALGORITHMS_FOR = ("demo_ssd",)
EXTRA_ALGORITHMS_FORMAT = "caffe"
PLATFORM = "rk3566"
COUNT = 500  # `ssdconv eval`'s default image count
CALIBRATION = 100  # ncnn-int8's calibration count in `ssdconv eval` (CALIBRATION_IMAGES)
DATASET_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".npy")
RUN_TIMEOUT = 3600.0


def rknn_python() -> Path:
    """The .venv-rknn interpreter (bench/setup_rknn.sh makes it); $RKNN_PYTHON overrides."""
    return Path(os.environ.get("RKNN_PYTHON") or ROOT / ".venv-rknn" / "bin" / "python")


class DatasetError(ValueError):
    """A malformed calibration list: its message is the one line the user sees."""


def validate_dataset(path: str | Path) -> list[str]:
    """The calibration list's files (absolute; relative lines are relative to the list's
    folder), or DatasetError naming the file, the line and what is wrong: every line must be
    one existing jpg/png/bmp/npy file (this model has one input, so one path a line)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: calibration list not found")
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: unreadable calibration list ({exc})") from None
    files = []
    for n, line in enumerate(lines, 1):
        where = f"{path}:{n}:"
        cells = line.split()
        if not cells:
            raise DatasetError(f"{where} empty line; each line must name one image file")
        if len(cells) > 1:
            raise DatasetError(f"{where} {len(cells)} paths on one line; the model has one "
                               "input, so one image file a line")
        name = Path(cells[0])
        name = name if name.is_absolute() else path.parent / name
        if name.suffix.lower() not in DATASET_EXTS:
            raise DatasetError(f"{where} {cells[0]} is not a jpg/png/bmp/npy file")
        if not name.is_file():
            raise DatasetError(f"{where} {cells[0]} does not exist")
        files.append(str(name.resolve()))
    if not files:
        raise DatasetError(f"{path}: calibration list is empty")
    return files


def refuse_bad_dataset(path: str | None) -> list[str] | None:
    """validate_dataset, or its one line on stderr and exit 2 (no traceback)."""
    if path is None:
        return None
    try:
        return validate_dataset(path)
    except DatasetError as exc:
        print(f"rknn: bad --dataset: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def load(model: str):
    """The demo detectors from their shipped checkpoints (the demo's classes), a zoo name with
    seeded weights (seed 0)."""
    from ssdconv.demo.shapes_dataset import CLASSES
    from ssdconv.models import load_model
    from ssdconv.shipped import DEMO_SYMBOL, DEMO_YOLO_SYMBOL

    demos = {"demo_ssd": DEMO_SYMBOL, "demo_yolo3": DEMO_YOLO_SYMBOL}
    if model in demos:
        return load_model(str(demos[model]), classes=list(CLASSES))
    return load_model(model, seed=0)


def held_out(model: str, count: int, h: int, w: int) -> list[tuple[str, np.ndarray, tuple]]:
    """(name, RGB uint8 at the network size, (boxes px at that size, labels) or None): the
    demo's evaluation images test_0..test_{count-1} for a demo model, then the sample photos."""
    import cv2

    from ssdconv.demo.shapes_dataset import make_sample
    from ssdconv.shipped import SAMPLES_DIR

    out = []
    if model.startswith("demo_"):
        for i in range(count):
            rgb, boxes, labels = make_sample("test", i)
            sy, sx = h / rgb.shape[0], w / rgb.shape[1]
            if rgb.shape[:2] != (h, w):
                rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
            gt = np.asarray(boxes, np.float64) * np.array([sx, sy, sx, sy])
            out.append((f"test_{i:05d}", rgb, (gt, np.asarray(labels))))
    for p in sorted(SAMPLES_DIR.glob("*.jpg")):
        rgb = cv2.imread(str(p))[:, :, ::-1]
        rgb = np.ascontiguousarray(cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR))
        out.append((f"photo_{p.stem}", rgb, None))
    return out


def write_calibration(directory: Path, count: int, h: int, w: int) -> Path:
    """dataset.txt over the demo's training images 0..count-1 (`ssdconv eval`'s calibration
    samples) resized to the network size, as PNG files (BGR on disk: ordinary picture files,
    which the toolkit reads as RGB)."""
    import cv2

    from ssdconv.demo.shapes_dataset import make_sample

    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        rgb = make_sample("train", i)[0]
        if rgb.shape[:2] != (h, w):
            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
        files.append(directory / f"calibration_{i:05d}.png")
        cv2.imwrite(str(files[-1]), rgb[:, :, ::-1])
    listing = directory / "dataset.txt"
    listing.write_text("".join(f"{f}\n" for f in files))
    return listing


def _voc(classes):
    from gluoncv.utils.metrics.voc_detection import VOC07MApMetric

    return VOC07MApMetric(iou_thresh=0.5, class_names=classes)


def _score(metric, det: dict, gt: tuple, w: int, h: int, normalised: bool) -> None:
    """One image into a VOC07 metric, as `ssdconv eval` scores it."""
    from ssdconv.verify.accuracy import score_image

    score_image(metric, det, gt[0], gt[1], w, h, normalised)


def _map(metric) -> float:
    return float(metric.get()[1][-1])


def variants(model: str, fmt: str,
             algorithms: tuple[str, ...]) -> list[tuple[str, str | None]]:
    """(precision label, quantized_algorithm or None for fp16) this model runs in FMT."""
    out: list[tuple[str, str | None]] = [("fp16", None)]
    extra = model in EXTRA_ALGORITHMS_FOR and fmt == EXTRA_ALGORITHMS_FORMAT
    for algo in algorithms:
        if algo == "normal" or extra:
            out.append((f"int8 {algo}" if algo != "normal" else "int8", algo))
    return out


def run_rknn(job: dict, workdir: Path) -> dict:
    """bench/rknn_runner.py on JOB in its own process under .venv-rknn: its result.json."""
    import subprocess

    out = Path(job["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "job.json").write_text(json.dumps(job, indent=1))
    t = time.perf_counter()
    try:
        res = subprocess.run(["nice", "-n", "10", str(rknn_python()), str(RUNNER),
                              str(out / "job.json")], capture_output=True, text=True,
                             timeout=RUN_TIMEOUT, cwd=workdir)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {RUN_TIMEOUT:.0f} s"}
    done = out / "result.json"
    result = json.loads(done.read_text()) if done.is_file() else \
        {"error": f"exit {res.returncode}: {(res.stderr or res.stdout).strip()[-300:]}"}
    result["wall_s"] = time.perf_counter() - t
    return result


CONFIDENT = 0.5  # the score above which detections are compared as a user sees them
LOOSE = 0.3  # a confident detection's partner may score this low on the other side
FOUND_IOU = 0.5


def _above(d: dict, score: float, scale) -> dict:
    keep = np.asarray(d["det_scores"]) >= score
    return {"det_labels": np.asarray(d["det_labels"])[keep],
            "det_scores": np.asarray(d["det_scores"])[keep],
            "det_boxes": np.asarray(d["det_boxes"], np.float64)[keep] * scale}


def _found(a: dict, b: dict) -> int:
    """How many of a's detections have one of b's with the same label at IoU >= FOUND_IOU."""
    from ssdconv.verify.compare import ious

    n = 0
    for label, box in zip(a["det_labels"], a["det_boxes"]):
        same = b["det_boxes"][b["det_labels"] == label]
        n += int(len(same) > 0 and float(ious(box, same).max()) >= FOUND_IOU)
    return n


def confident(det: dict, ref: dict, rt: dict, w: int, h: int) -> None:
    """The detections a user sees (score >= CONFIDENT): row for row (both sides cut at
    CONFIDENT), then by IoU whatever their order and score (a partner of the same label at
    IoU >= FOUND_IOU scoring >= LOOSE): Gluon's found, RKNN's without a partner (extra)."""
    from ssdconv.verify.compare import compare_rows

    scale = np.array([w, h, w, h], np.float64)
    g, r = _above(ref, CONFIDENT, 1.0), _above(rt, CONFIDENT, 1.0)
    res = compare_rows(g, r, w, h)
    det["confident_images_equal"] += int(res.ok)
    det["confident_gluon"] += res.compared_gluon
    det["confident_rknn"] += res.compared_runtime
    det["confident_matched"] += res.matched
    r_px = _above(rt, CONFIDENT, scale)
    det["confident_found"] += _found(g, _above(rt, LOOSE, scale))
    det["confident_extra"] += len(r_px["det_labels"]) - _found(r_px, _above(ref, LOOSE, 1.0))


def compare(result: dict, out_dir: Path, refs: dict, images: list, names: dict, tail,
            groups: list, nms: float | None, w: int, h: int, classes) -> dict:
    """RKNN's maps against Gluon float32's (per role: max relative error, min cosine), the C
    tail's rows on them (its arguments: `groups` of roles) against GluonCV's row for row, and
    the demo mAP through the tail."""
    from ssdconv.headless.runner import tail_detections
    from ssdconv.verify.compare import compare_rows

    index = {name: i for i, name in enumerate(result["names"])}
    rel: dict[str, float] = {}
    cos: dict[str, float] = {}
    det = {"images": 0, "images_equal": 0, "rows_gluon": 0, "rows_rknn": 0, "rows_matched": 0,
           "max_score_diff": 0.0, "max_box_diff_px": 0.0, "confident_images_equal": 0,
           "confident_gluon": 0, "confident_matched": 0, "confident_found": 0,
           "confident_rknn": 0, "confident_extra": 0}
    metric = _voc(classes) if any(gt is not None for _, _, gt in images) else None
    for name, _, gt in images:
        ref = refs[name]
        got = np.load(out_dir / f"{name}.npz")
        maps = {}
        for role, blob in names.items():
            a = got[f"out{index[blob]}"].reshape(-1).astype(np.float64)
            b = ref["raw32"][role].astype(np.float64)
            if a.shape != b.shape:
                raise ValueError(f"{role} ({blob}): RKNN {a.size} values, Gluon {b.size}")
            maps[role] = got[f"out{index[blob]}"]
            err = float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))
            c = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))
            rel[role] = max(rel.get(role, 0.0), err)
            cos[role] = min(cos.get(role, 1.0), c)
        rows = tail.run([[np.ascontiguousarray(maps[r], np.float32) for r in group]
                         for group in groups])
        rt = tail_detections(rows, w, h)
        res = compare_rows(ref, rt, w, h, nms)
        det["images"] += 1
        det["images_equal"] += int(res.ok)
        det["rows_gluon"] += res.compared_gluon
        det["rows_rknn"] += res.compared_runtime
        det["rows_matched"] += res.matched
        det["max_score_diff"] = max(det["max_score_diff"], res.max_score_diff)
        det["max_box_diff_px"] = max(det["max_box_diff_px"], res.max_box_diff_px)
        confident(det, ref, rt, w, h)
        if metric is not None and gt is not None:
            _score(metric, rt, gt, w, h, normalised=True)
    out = {"max_rel_err": rel, "min_cos": cos, "detections": det}
    if metric is not None:
        out["map"] = _map(metric)
    return out


def measure(model: str, workdir: Path, count: int = COUNT, platform: str = PLATFORM,
            algorithms: tuple[str, ...] = ALGORITHMS, dataset: list[str] | None = None,
            calibration: int = CALIBRATION, relu6: str = "compose",
            layout: str = "nchw") -> dict:
    """The whole stage for one model in WORKDIR (emptied first); `relu6`: how the caffe model
    writes ReLU6 (`--relu6`); `layout`: the headless maps' (`--headless-layout`)."""
    import cv2

    from ssdconv.convert import Options, convert
    from ssdconv.headless.runner import compiled_tail
    from ssdconv.verify.blobs import raw_blobs
    from ssdconv.verify.gluon_runner import GluonRunner

    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    t = time.perf_counter()
    loaded = load(model)
    out: dict = {"platform": platform, "relu6": relu6, "layout": layout}
    conv = convert(loaded, str(workdir / "model"),
                   Options(targets=("caffe", "onnx"), headless=True, relu6=relu6,
                           headless_layout=layout))
    out["convert_s"] = time.perf_counter() - t
    m = conv.manifest
    _, _, h, w = m["input_shape"]
    out.update(size=[h, w], channel_order=m["channel_order"], mean=m["mean"], scale=m["scale"])
    name = m["name"]
    cut = conv.head.cut
    roles = [r for g in cut.tail_inputs for r in g]
    names = raw_blobs(m)  # the maps by role (`loc.0`, `outputs.2`), as the tail reads them
    tail = compiled_tail(cut, conv.head.family.name)
    nms = conv.head.nms_threshold()

    images = held_out(model, count, h, w)
    inputs = workdir / "inputs"
    inputs.mkdir()
    bgr = m["channel_order"] == "BGR"
    paths = []
    for stem, rgb, _ in images:
        paths.append(str(inputs / f"{stem}.npy"))
        np.save(paths[-1], np.ascontiguousarray(rgb[:, :, ::-1] if bgr else rgb))
    probe = inputs / f"{images[0][0]}.png"  # accuracy_analysis's image: a picture file
    cv2.imwrite(str(probe), images[0][1][:, :, ::-1])
    out["images"] = {"eval": sum(gt is not None for *_, gt in images),
                     "photos": sum(gt is None for *_, gt in images)}

    t = time.perf_counter()
    gluon = GluonRunner.for_conversion(conv)
    refs = {stem: gluon.run(rgb) for stem, rgb, _ in images}
    out["gluon_s"] = time.perf_counter() - t
    classes = m.get("classes")
    if out["images"]["eval"]:
        metric = _voc(classes)
        for stem, _, gt in images:
            if gt is not None:
                _score(metric, refs[stem], gt, w, h, normalised=False)
        out["gluon_map"] = _map(metric)

    if dataset is None:
        listing = write_calibration(workdir / "calibration", calibration, h, w)
        out["calibration"] = f"demo train 0..{calibration - 1} ({calibration} PNG)"
    else:
        listing = workdir / "dataset.txt"
        listing.write_text("".join(f"{f}\n" for f in dataset))
        out["calibration"] = f"user list ({len(dataset)} files)"

    files = {"caffe": [str(workdir / "model" / f"{name}.prototxt"),
                       str(workdir / "model" / f"{name}.caffemodel")],
             "onnx": [str(workdir / "model" / f"{name}.onnx")]}
    out["runs"] = {}
    for fmt in FORMATS:
        for label, algo in variants(model, fmt, algorithms):
            key = f"{fmt} {label}"
            print(f"  {model}: {key}", file=sys.stderr, flush=True)
            job = {"model": fmt, "files": files[fmt],
                   "outputs": [names[r] for r in roles] if fmt == "onnx" else None,
                   "mean_values": list(m["mean"]),
                   "std_values": [1.0 / s for s in m["scale"]],
                   "quant_img_RGB2BGR": bgr, "target_platform": platform,
                   "quantize": algo is not None, "dataset": str(listing),
                   "quantized_algorithm": algo or "normal", "images": paths,
                   "accuracy_analysis": str(probe) if algo else None,
                   "out_dir": str(workdir / "rknn" / key.replace(" ", "_"))}
            result = run_rknn(job, workdir)
            entry = {k: result.get(k) for k in ("toolkit", "build_s", "init_s", "wall_s",
                                                 "worst_layers", "error") if k in result}
            if "inference_s" in result:
                entry["inference_ms_median"] = 1000 * float(np.median(result["inference_s"]))
            if "error" not in result:
                try:
                    entry.update(compare(result, Path(job["out_dir"]), refs, images, names,
                                         tail, cut.tail_inputs, nms, w, h,
                                         classes))
                except Exception as exc:  # a mismatch is a result, named
                    entry["error"] = f"compare: {type(exc).__name__}: {exc}"
            out["runs"][key] = entry
            out.setdefault("toolkit", result.get("toolkit"))
    return out


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--count", type=int, default=COUNT, help="demo evaluation images "
                    f"(default {COUNT}, as `ssdconv eval`)")
    ap.add_argument("--target-platform", default=PLATFORM, help=f"default {PLATFORM}")
    ap.add_argument("--algorithms", default=",".join(ALGORITHMS),
                    help="int8 quantized_algorithm values (default all three; mmse and "
                         "kl_divergence only on the demo SSD's caffe conversion)")
    ap.add_argument("--dataset", help="calibration list: one jpg/png/bmp/npy file a line "
                    "(default: the demo's training images)")
    ap.add_argument("--calibration", type=int, default=CALIBRATION,
                    help=f"training images calibrated on without --dataset (default "
                         f"{CALIBRATION})")
    ap.add_argument("--relu6", default="compose", choices=("compose", "relu6_layer"),
                    help="how the caffe model writes ReLU6 (ssdconv's --relu6; default compose)")
    ap.add_argument("--layout", default="nchw", choices=("nchw", "nhwc"),
                    help="the headless maps' layout (ssdconv's --headless-layout; default nchw)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = _args(argv)
    dataset = refuse_bad_dataset(a.dataset)  # before any work
    warnings.simplefilter("ignore")
    algos = tuple(x for x in a.algorithms.split(",") if x)
    bad = [x for x in algos if x not in ALGORITHMS]
    if bad:
        print(f"rknn: unknown --algorithms {','.join(bad)} (known: {', '.join(ALGORITHMS)})",
              file=sys.stderr)
        return 2
    print(json.dumps(measure(a.model, a.workdir, a.count, a.target_platform, algos, dataset,
                             a.calibration, a.relu6, a.layout)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
