"""ncnn's own examples/retinaface.cpp, built unmodified from Tencent/ncnn, runs ssdconv's ncnn
conversion of a RetinaFace (named `mnet.25-opt.param/.bin`, the file names it loads) on the
sample photos; the faces it prints (stderr: `score at x y width x height`, then it tries to open a
window, which fails headless) are compared with ssdconv's float64 model of that same decode
(`ssdconv.retinaface.decode.ncnn_example_faces`) on float64 MXNet's raw outputs: the same faces,
boxes within 0.5 px.

The example runs the model at the photo's own size (no resize), and ssdconv's ncnn files have
concrete shapes, so the model is converted at each photo's size. Opt-in (`make
retinaface-example-check`): the binary comes from ../shared/tools/build_runtimes.sh
($SSDCONV_RUNTIMES/bin/retinaface, default ${TMPDIR:-/tmp}/runtimes); without it the test says
"not run" (skipped), or fails under SSDCONV_REQUIRE_RETINAFACE=1.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import retinaface_models as rm

from ssdconv.convert import Options, convert
from ssdconv.models import load_model
from ssdconv.retinaface.decode import ncnn_example_faces
from ssdconv.verify.gluon_runner import GluonRunner
from ssdconv.verify.images import load_rgb

RUNTIMES = Path(os.environ.get("SSDCONV_RUNTIMES",
                               Path(os.environ.get("TMPDIR", "/tmp")) / "runtimes"))
BINARY = RUNTIMES / "bin" / "retinaface"
FACES = ("samples/astronaut.jpg", "samples/grace_hopper.jpg")
LINE = re.compile(r"^([0-9.]+) at ([-0-9.]+) ([-0-9.]+) ([-0-9.]+) x ([-0-9.]+)$")
BOX_PX = 0.5  # the bound; measured figures in the test's output
SCORE = 1e-3  # the example runs ncnn's default options (fp16 storage): measured below 2e-4
THRESHOLD = 0.8  # the example's prob_threshold


def _missing() -> str | None:
    if BINARY.is_file():
        return None
    return (f"not run: {BINARY} does not exist (build ncnn's examples with "
            "../shared/tools/build_runtimes.sh)")


if _missing() and not os.environ.get("SSDCONV_REQUIRE_RETINAFACE"):
    pytestmark = pytest.mark.skip(reason=str(_missing()))


def _printed(stderr: str) -> np.ndarray:
    """(N, 5) rows score, x0, y0, x1, y1 of the faces the example printed."""
    rows = []
    for line in stderr.splitlines():
        m = LINE.match(line.strip())
        if m:
            s, x, y, w, h = (float(v) for v in m.groups())
            rows.append([s, x, y, x + w, y + h])
    return np.asarray(rows, np.float64).reshape(-1, 5)


@pytest.mark.parametrize("photo", FACES)
def test_ncnn_example_finds_the_faces_of_its_decode(photo, tmp_path):
    assert BINARY.is_file(), _missing()
    h, w = cv2.imread(photo).shape[:2]
    symbol = rm.save_retinaface(tmp_path / "model", kind="mnet25", size=(h, w))
    model = load_model(str(symbol), input_size=(h, w))
    conversion = convert(model, tmp_path, Options(targets=("ncnn",)), name="mnet.25-opt")
    shutil.copy(photo, tmp_path / "photo.jpg")
    proc = subprocess.run([str(BINARY), "photo.jpg"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    printed = _printed(proc.stderr)
    g = GluonRunner.for_conversion(conversion).run(load_rgb(photo, h, w))
    head = conversion.head
    want = head.faces(head.levels_from(g["raw64"]), ncnn_example_faces)
    print(f"{photo}: example exit {proc.returncode}, {len(printed)} faces printed, "
          f"{len(want)} by ssdconv's float64 model of its decode")
    assert len(want) > 0, "the seeded model finds no face: nothing would be compared"
    worst_box, worst_score, pairs = 0.0, 0.0, 0
    taken = np.zeros(len(printed), bool)
    lost = []
    for i in np.argsort(-want.scores, kind="stable"):
        dist = np.abs(printed[:, 1:] - want.boxes[i]).max(axis=1) if len(printed) else []
        near = [j for j in np.argsort(dist) if not taken[j] and dist[j] <= BOX_PX
                and abs(printed[j, 0] - want.scores[i]) <= SCORE]
        if not near:
            lost.append(float(want.scores[i]))
            continue
        j = int(near[0])
        taken[j] = True
        pairs += 1
        worst_box = max(worst_box, float(dist[j]))
        worst_score = max(worst_score, abs(float(printed[j, 0]) - float(want.scores[i])))
    extra = [float(v) for v in printed[~taken, 0]]
    print(f"  {pairs} matched: largest corner difference {worst_box:.3f} px, score "
          f"{worst_score:.1e}; only in the model of the decode: {lost}; only printed: {extra}")
    # a face only one side has must sit at the 0.8 threshold, where the example's fp16
    # storage (ncnn's default options) may put its score on the other side
    assert all(abs(v - THRESHOLD) <= SCORE for v in lost + extra), (lost, extra)
    assert pairs >= 0.95 * len(want)
