"""The bench measures a YOLOv3's raw tensors by the head's roles, as it does an SSD's loc/conf.

bench/speed.py's ncnn_raw fetches the blobs `Head.raw_outputs()` names (a YOLOv3's three
prediction outputs, through the manifest's `blobs.outputs` list), bench/fidelity.py's rows carry
one error per role, and bench/report.py folds them to one cell per manifest role (`outputs`: the
largest of the three). On the shipped demo YOLOv3 (256 px, small), run by ncnn and MXNet.
"""

from __future__ import annotations

import numpy as np
import pytest
from bench_modules import bench_module

from ssdconv import shipped
from ssdconv.convert import Options, convert
from ssdconv.demo.shapes_dataset import CLASSES
from ssdconv.models import load_model
from ssdconv.verify.compare import match_detections, raw_diff
from ssdconv.verify.gluon_runner import GluonRunner
from ssdconv.verify.images import load_rgb
from ssdconv.verify.runners import runners_for

RAW_TOL = 1e-4  # ncnn fp32 against float64 Gluon, raw prediction outputs (the check's order)


@pytest.fixture(scope="module")
def demo_yolo(tmp_path_factory):
    model = load_model(str(shipped.DEMO_YOLO_SYMBOL), classes=list(CLASSES))
    return convert(model, tmp_path_factory.mktemp("yolo"), Options(targets=("ncnn",)))


def test_ncnn_raw_fetches_the_heads_raw_tensors(demo_yolo, sample_images):
    """The tensors speed.py times for the pnnx comparison are the ones the check compares."""
    speed = bench_module("speed")
    roles = list(demo_yolo.head.raw_outputs())
    assert roles == ["outputs.0", "outputs.1", "outputs.2"]
    _, _, h, w = demo_yolo.manifest["input_shape"]
    rgb = load_rgb(sample_images[0], h, w)
    files = {"manifest": demo_yolo.manifest, "param": demo_yolo.files["param"],
             "bin": demo_yolo.files["bin"]}
    fetched = speed._ncnn(files, rgb, 1, fetch=tuple(roles))()
    (runner,) = runners_for(demo_yolo, ("ncnn",), deployed=True)  # as speed.py runs ncnn
    expected = runner.run(rgb)
    gluon = GluonRunner.for_conversion(demo_yolo).run(rgb)
    for role, got in zip(roles, fetched):
        assert got.size == gluon["raw32"][role].size
        assert np.abs(got.reshape(-1) - expected[role].reshape(-1)).max() <= 1e-6, role


def test_fidelity_row_and_report_cell_fold_the_outputs(demo_yolo, sample_images):
    """One `ROLE_err` per prediction output in fidelity's row; the report's cell is their max."""
    fidelity, report = bench_module("fidelity"), bench_module("report")
    head = demo_yolo.head
    _, _, h, w = demo_yolo.manifest["input_shape"]
    gluon = GluonRunner.for_conversion(demo_yolo)
    (runner,) = runners_for(demo_yolo, ("ncnn",))
    rows = []
    for path in sample_images[:2]:
        rgb = load_rgb(path, h, w)
        g, rt = gluon.run(rgb), runner.run(rgb)
        det = match_detections(g, rt, w, h, head.comparable_score(g["raw32"], g["det_scores"]),
                               head.nms_threshold())
        rows.append(fidelity._row(raw_diff(rt, g), det))
    summary = fidelity._summarise(rows)
    errs = [summary[f"outputs.{i}_err"] for i in range(3)]
    assert 0 < max(errs) <= RAW_TOL, errs
    assert summary["matched"] == summary["compared"]
    results = {"demo_yolo": {"fidelity": {"ncnn_fp32": summary, "gluon_fp32": {
        f"{k}_err": 0.0 for k in head.raw_outputs()}}}}
    assert report._raw_cell(summary) == f"{max(errs):.1e}"
    assert report.raw_label(results) == "outputs"
    (note,) = report.raw_note(results)
    assert "*outputs* is the largest over outputs.0, outputs.1, outputs.2" in note
