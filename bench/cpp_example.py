"""Build the C++ example that `ssdconv convert --ncnn-example` writes and show that its
detections equal the Python ncnn runner's (ssdconv.verify.runners) on the sample images.

    make cpp-example-check                       # builds libncnn first (bench/build_ncnn_lib.sh)
    python bench/cpp_example.py --ncnn-dir PREFIX [-o DIR]

An opt-in check, not part of `make test`: on a fresh machine it needs ncnn's C++ library built
from the registry's sdist (10-25 minutes on 2 cores). tests/test_ncnn_example.py runs the same
comparison (these functions) when SSDCONV_NCNN_DIR names an ncnn install.

For each model it converts with --ncnn-example into its own folder, builds the program with
CMake (-Dncnn_DIR=PREFIX/lib/cmake/ncnn), runs `./NAME_example IMAGE` in that folder on every
sample image (ssdconv/samples/*.jpg and scenes/*.png), parses its lines and compares them row
by row with the runner's detections scaled to the image's pixels: same count and labels, and the
largest score and box differences, which must stay within SCORE_TOL / BOX_TOL_PX. The program
prints scores with 6 decimals and boxes with 3, so up to 5e-7 and 5e-4 px of each difference
is the printing's rounding; the runner's rows are therefore also printed the program's way (the
box scaled in float32, as the C++ does) and the identical lines counted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: the repository's ssdconv
    sys.path.insert(0, str(ROOT))

from ssdconv import shipped  # noqa: E402

SCORE_TOL = 1e-5
BOX_TOL_PX = 0.01


@dataclass
class ModelCase:
    """One conversion to check: how to load the model and which options to convert with."""

    label: str
    model: str
    load: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)


def cases() -> list[ModelCase]:
    """The demo model as converted by default (BGR input: the RGB->BGR swap is folded into the
    first convolution), the demo with that fold skipped (RGB input, mean and 1/std scale: the
    PIXEL_BGR2RGB path), one zoo SSD with seeded weights, and the demo YOLOv3 with its exact
    head and with ncnn's own Yolov3DetectionOutput (the same row format, so the same program)."""
    from ssdconv.demo.shapes_dataset import CLASSES

    demo = {"classes": list(CLASSES)}
    return [
        ModelCase("demo shapes_ssd (BGR input)", str(shipped.DEMO_SYMBOL), demo),
        ModelCase("demo shapes_ssd, fold_input_scale skipped (RGB input)",
                  str(shipped.DEMO_SYMBOL), demo, {"skip_passes": ("fold_input_scale",)}),
        ModelCase("ssd_300_mobilenet0.25_voc --seed 0", "ssd_300_mobilenet0.25_voc",
                  {"seed": 0}),
        ModelCase("demo shapes_yolo3 (exact head)", str(shipped.DEMO_YOLO_SYMBOL), demo),
        ModelCase("demo shapes_yolo3, --yolo-head native", str(shipped.DEMO_YOLO_SYMBOL), demo,
                  {"yolo_head": "native"}),
    ]


def sample_images() -> list[Path]:
    return shipped.photos() + sorted(shipped.SCENES_DIR.glob("*.png"))


def convert_case(case: ModelCase, out: Path):
    """The case converted to ncnn with --ncnn-example into `out`; returns the Conversion."""
    from ssdconv.convert import Options, convert
    from ssdconv.models import load_model

    model = load_model(case.model, **case.load)
    return convert(model, out, Options(targets=("ncnn",), ncnn_example=True, **case.options))


def build_example(folder: Path, ncnn_dir: Path, jobs: int = 2) -> Path:
    """Configure and build the generated CMakeLists.txt in `folder`; returns the program."""
    build = folder / "build"
    cmake_dir = ncnn_dir / "lib" / "cmake" / "ncnn"
    for cmd in (["cmake", "-S", str(folder), "-B", str(build), f"-Dncnn_DIR={cmake_dir}"],
                ["cmake", "--build", str(build), "-j", str(jobs)]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n"
                               f"{proc.stderr[-3000:]}")
    programs = [p for p in folder.glob("*_example") if os.access(p, os.X_OK)]
    if len(programs) != 1:
        raise RuntimeError(f"expected one *_example program in {folder}, found {programs}")
    return programs[0]


def run_example(program: Path, image: Path) -> tuple[list[str], list[str], np.ndarray,
                                                     np.ndarray, Path]:
    """`./PROGRAM IMAGE` in the program's folder: (its lines, class names, scores, boxes in
    pixels, the image it drew). A line is "class score x1 y1 x2 y2"; a name may hold spaces."""
    proc = subprocess.run([f"./{program.name}", str(image)], cwd=program.parent,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{program.name} {image} exited {proc.returncode}: {proc.stderr}")
    names, scores, boxes = [], [], []
    for line in proc.stdout.splitlines():
        name, *numbers = line.rsplit(" ", 5)
        names.append(name)
        scores.append(float(numbers[0]))
        boxes.append([float(v) for v in numbers[1:]])
    drawn = program.parent / f"{image.stem}_detections.png"
    return (proc.stdout.splitlines(), names, np.array(scores), np.array(boxes).reshape(-1, 4),
            drawn)


def python_detections(conversion, image: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The Python ncnn runner's detections on `image`: names, scores, boxes in pixels (float32,
    scaled as the C++ program scales them)."""
    import cv2

    from ssdconv.verify.images import load_rgb
    from ssdconv.verify.runners import runners_for

    manifest = conversion.manifest
    _, _, h, w = manifest["input_shape"]
    (runner,) = runners_for(conversion, ("ncnn",))
    res = runner.run(load_rgb(str(image), h, w))
    height, width = cv2.imread(str(image), cv2.IMREAD_COLOR).shape[:2]
    classes = manifest["classes"]
    names = [classes[i] if 0 <= i < len(classes) else f"label{i + manifest['label_offset']}"
             for i in res["det_labels"]]
    size = np.array([width, height, width, height], np.float32)
    boxes = np.asarray(res["det_boxes"], np.float32).reshape(-1, 4) * size
    return names, np.asarray(res["det_scores"], np.float32), boxes


def printed(name: str, score: float, box) -> str:
    """A detection line as the C++ program prints it (printf "%s %.6f %.3f %.3f %.3f %.3f")."""
    return f"{name} {float(score):.6f} " + " ".join(f"{float(v):.3f}" for v in box)


@dataclass
class ImageResult:
    image: str
    detections: int
    same_labels: bool
    identical_lines: int
    max_score_diff: float
    max_box_diff_px: float
    drawn: bool

    @property
    def ok(self) -> bool:
        return (self.same_labels and self.drawn and self.max_score_diff <= SCORE_TOL
                and self.max_box_diff_px <= BOX_TOL_PX)


def compare_image(conversion, program: Path, image: Path) -> ImageResult:
    """The program's and the runner's detections on one image, row by row."""
    import cv2

    c_lines, c_names, c_scores, c_boxes, drawn = run_example(program, image)
    p_names, p_scores, p_boxes = python_detections(conversion, image)
    same = c_names == p_names
    p_lines = [printed(*row) for row in zip(p_names, p_scores, p_boxes)]
    identical = sum(a == b for a, b in zip(c_lines, p_lines))
    n = min(len(c_names), len(p_names))
    score_diff = float(np.abs(c_scores[:n] - p_scores[:n]).max()) if n else 0.0
    box_diff = float(np.abs(c_boxes[:n] - p_boxes[:n]).max()) if n else 0.0
    img = cv2.imread(str(drawn)) if drawn.is_file() else None
    original = cv2.imread(str(image), cv2.IMREAD_COLOR)
    drawn_ok = img is not None and img.shape == original.shape
    return ImageResult(image.name, len(p_names), same, identical, score_diff, box_diff,
                       drawn_ok)


def check_case(case: ModelCase, folder: Path, ncnn_dir: Path,
               images: list[Path]) -> tuple[Path, list[ImageResult], float]:
    """Convert, build and compare one case; returns (program, per-image results, build s)."""
    conversion = convert_case(case, folder)
    start = time.time()
    program = build_example(folder, ncnn_dir)
    built = time.time() - start
    return program, [compare_image(conversion, program, img) for img in images], built


def find_ncnn_dir(given: str | None) -> Path:
    """--ncnn-dir, else $SSDCONV_NCNN_DIR, else bench/build_ncnn_lib.sh's prefix (which
    returns at once when the library is already built, and builds it otherwise)."""
    path = given or os.environ.get("SSDCONV_NCNN_DIR")
    if not path:
        proc = subprocess.run(["bash", str(ROOT / "bench" / "build_ncnn_lib.sh")],
                              stdout=subprocess.PIPE, text=True, check=True)
        path = proc.stdout.strip().splitlines()[-1]
    prefix = Path(path)
    if not (prefix / "lib" / "cmake" / "ncnn" / "ncnnConfig.cmake").is_file():
        raise SystemExit(f"{prefix} is not an ncnn install prefix (no lib/cmake/ncnn/"
                         "ncnnConfig.cmake); run bench/build_ncnn_lib.sh")
    return prefix


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ncnn-dir", help="ncnn install prefix (default $SSDCONV_NCNN_DIR, else "
                                       "bench/build_ncnn_lib.sh's)")
    ap.add_argument("-o", "--out", help="keep the conversions and programs here (default: a "
                                        "temporary folder, removed afterwards)")
    args = ap.parse_args(argv)
    ncnn_dir = find_ncnn_dir(args.ncnn_dir)
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found; bench/build_ncnn_lib.sh installs it")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="ssdconv-cpp-"))
    images = sample_images()
    print(f"ncnn C++ library: {ncnn_dir}")
    print(f"tolerances: score {SCORE_TOL:g}, box {BOX_TOL_PX:g} px; {len(images)} images")
    failed = 0
    worst_score = worst_box = 0.0
    try:
        for i, case in enumerate(cases()):
            program, results, built = check_case(case, out / f"case{i}", ncnn_dir, images)
            print(f"\n{case.label}: built {program.name} in {built:.1f}s")
            print(f"  {'image':20} {'dets':>5} {'labels':>7} {'identical lines':>16} "
                  f"{'max |dscore|':>13} {'max |dbox| px':>14} drawn")
            for r in results:
                lines = f"{r.identical_lines}/{r.detections}"
                print(f"  {r.image:20} {r.detections:5d} {'same' if r.same_labels else 'DIFF':>7}"
                      f" {lines:>16} {r.max_score_diff:13.2e} {r.max_box_diff_px:14.2e} "
                      f"{'yes' if r.drawn else 'NO'}{'' if r.ok else '  FAIL'}")
                failed += not r.ok
                worst_score = max(worst_score, r.max_score_diff)
                worst_box = max(worst_box, r.max_box_diff_px)
    finally:
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)
    print(f"\nlargest differences: score {worst_score:.2e}, box {worst_box:.2e} px; "
          f"{'all equal within tolerance' if not failed else f'{failed} image(s) FAILED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
