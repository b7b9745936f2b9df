"""bench/retinaface_target.py: the RetinaFace stage converts a seeded insightface RetinaFace
saved as a checkpoint, proves it with the package's own check (raw outputs and faces) in the four
runtimes, runs ncnn's own mxnet2ncnn on the same checkpoint through the same check, times
everything through the package runners' `timed` hook, and bench/retinaface_report.py renders
what it measured.

On mnet.25 at 160x160 (the stage's size option; the bench runs 640x640), one photo, one timed run
at one thread: the figures are real measurements in the real runtimes. mxnet2ncnn's column is
measured only when its binary exists ($MXNET2NCNN, else ncnn's build tree under
$SSDCONV_RUNTIMES, default ${TMPDIR:-/tmp}/runtimes, as ../shared/tools/build_runtimes.sh
builds it); without it those tests say so and skip, and the "not run" cell is checked instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from bench_modules import bench_module
from test_bench_plain import _meta as _plain_meta

RUNTIMES = ("opencv", "ncnn", "onnxruntime", "openvino")
LATENCY = ("opencv_1", "ncnn_1", "ort_1", "openvino_1")
SIZE = (160, 160)
_RUNTIMES_DIR = Path(os.environ.get("SSDCONV_RUNTIMES",
                                    Path(os.environ.get("TMPDIR", "/tmp")) / "runtimes"))
MXNET2NCNN = next((p for p in (os.environ.get("MXNET2NCNN"),
                               _RUNTIMES_DIR / "ncnn-build" / "tools" / "mxnet" / "mxnet2ncnn",
                               _RUNTIMES_DIR / "bin" / "mxnet2ncnn")
                   if p and Path(p).is_file()), None)
needs_mxnet2ncnn = pytest.mark.skipif(
    MXNET2NCNN is None, reason=f"no mxnet2ncnn: neither $MXNET2NCNN nor {_RUNTIMES_DIR}/ncnn-build/"
    "tools/mxnet/mxnet2ncnn exists (build ncnn's tools with ../shared/tools/build_runtimes.sh)")


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    target = bench_module("retinaface_target")
    workdir = tmp_path_factory.mktemp("retinaface") / "mnet25"
    binary = str(MXNET2NCNN) if MXNET2NCNN else None
    return target.measure("mnet25", workdir, 1, [1], 1, 0, SIZE, binary), workdir


def test_the_stage_converts_the_saved_checkpoint_to_every_target(stage):
    out, workdir = stage
    c = out["conversion"]
    assert c["wall_s"] > 0 and c["peak_rss_mib"] > 0, c
    assert out["size"] == list(SIZE)
    source = json.loads((workdir / "source.json").read_text())
    assert source["cli"][1:] == ["--input-size", "160,160"]
    assert source["cli"][0].endswith("checkpoint/mnet25-symbol.json")
    for ext in ("prototxt", "caffemodel", "param", "bin", "onnx"):
        assert (workdir / "ssdconv" / f"mnet25.{ext}").is_file()


def test_the_outputs_and_faces_are_proven_in_every_runtime(stage):
    f = stage[0]["fidelity"]
    assert f["images"] == ["astronaut.jpg"]
    for runtime in RUNTIMES:
        r = f[runtime]
        assert r["ok"] and r["images"] == 1 and r["first_divergence"] is None, (runtime, r)
        assert 0 < r["ratio"] <= 1 and 0 < r["err"] <= r["bound"], (runtime, r)
        assert r["worst"].split("_stride")[0] in ("cls", "bbox", "landmark"), r
        (faces,) = r["faces"]
        assert faces["image"] == "astronaut.jpg" and faces["runtime"] == faces["reference"] > 0
        assert r["unmatched"] == 0 and r["max_box_diff_px"] < 0.1, (runtime, r)
        assert r["max_landmark_diff_px"] < 0.1, (runtime, r)


def test_every_latency_is_measured(stage):
    lat = stage[0]["latency"]
    for key in LATENCY:
        assert lat[key]["median_ms"] > 0 and lat[key]["runs"] == 1, (key, lat[key])


@needs_mxnet2ncnn
def test_mxnet2ncnn_converts_the_same_checkpoint(stage):
    out, workdir = stage
    m = out["conversion"]["mxnet2ncnn"]
    assert m["wall_s"] > 0 and m["layers"] > 0 and m["missing_blobs"] == [], m
    manifest = json.loads((workdir / "mxnet2ncnn" / "mnet25.json").read_text())
    assert manifest["mean"] == [0.0, 0.0, 0.0] and manifest["scale"] == [1.0, 1.0, 1.0]
    assert manifest["channel_order"] == "RGB"


@needs_mxnet2ncnn
def test_mxnet2ncnn_goes_through_the_same_check_and_is_timed(stage):
    """Its model, in the package's ncnn runner (exact float32), is judged by the same raw bounds
    and the same faces stage as ssdconv's: what it gets is measured, not assumed."""
    out, _ = stage
    r = out["fidelity"]["mxnet2ncnn"]
    assert "error" not in r and r["images"] == 1, r
    assert set(r) >= {"ratio", "faces", "unmatched", "max_box_diff_px", "max_landmark_diff_px",
                      "ok"}, r
    (faces,) = r["faces"]
    assert faces["reference"] == out["fidelity"]["ncnn"]["faces"][0]["reference"]
    print("mxnet2ncnn on mnet.25 160x160:", json.dumps(r))
    assert out["latency"]["mxnet2ncnn_1"]["median_ms"] > 0


def test_without_mxnet2ncnn_its_column_says_not_run(tmp_path):
    target = bench_module("retinaface_target")
    report = bench_module("retinaface_report")
    c = target.mxnet2ncnn_conversion("mnet25", tmp_path, None)
    assert c["not_run"].startswith("no mxnet2ncnn")
    r = target.fidelity_mxnet2ncnn("mnet25", tmp_path, [])
    assert r["not_run"].startswith("no mxnet2ncnn")
    row = report.fidelity_row("mnet25", "mxnet2ncnn, ncnn", r)
    assert row.startswith("| mnet25 | mxnet2ncnn, ncnn | not run: no mxnet2ncnn")
    assert report._run(c, layers=True).startswith("not run: no mxnet2ncnn")


def _meta() -> dict:
    return _plain_meta("retinaface", size=list(SIZE),
                       mxnet2ncnn=str(MXNET2NCNN) if MXNET2NCNN else None)


def test_the_report_shows_the_measured_rows(stage):
    out, _ = stage
    report = bench_module("retinaface_report")
    lines = report.section({"meta": _meta(), "results": {"mnet25": {"retinaface": out}}})
    text = "\n".join(lines)
    assert lines[0] == "## RetinaFace"
    assert "- command: `bench/run.py --stage retinaface`" in text
    c = out["conversion"]
    assert f"| mnet25 (mnet.25, 160×160) | {c['wall_s']:.2f} s / {c['peak_rss_mib']:.0f} MiB |" \
        in text
    ncnn = out["fidelity"]["ncnn"]
    faces = ncnn["faces"][0]
    assert f"| mnet25 | ssdconv, ncnn | {ncnn['ratio']:.2f} ({ncnn['worst']}: " \
        f"{ncnn['err']:.1e} / {ncnn['bound']:.1e}) | {faces['runtime']}/{faces['reference']} " \
        f"| 0 | {ncnn['max_box_diff_px']:.1e} | {ncnn['max_landmark_diff_px']:.1e} | PASS |" \
        in text
    routes = [ln.split(" | ")[1] for ln in lines if ln.startswith("| mnet25 | ")
              and ln.count("|") == 9]
    assert routes == ["ssdconv, OpenCV", "ssdconv, ncnn", "ssdconv, onnxruntime",
                      "ssdconv, OpenVINO", "mxnet2ncnn, ncnn"]
    lat = out["latency"]
    row = next(ln for ln in lines if ln.startswith("| mnet25 | ") and ln.count("|") == 7)
    cells = [f"{lat[k]['median_ms']:.1f}" for k in LATENCY]
    cells.append(f"{lat['mxnet2ncnn_1']['median_ms']:.1f}" if MXNET2NCNN else "–")
    assert row == "| mnet25 | " + " | ".join(cells) + " |"
    if not MXNET2NCNN:
        assert "| mnet25 | mxnet2ncnn, ncnn | not run: no mxnet2ncnn" in text


def test_the_stage_runs_both_detectors_at_640_by_default():
    run = bench_module("run")
    a = run._args(["--stage", "retinaface"])
    assert a.models == ["mnet25", "r50"] and a.size == [640, 640]
    assert run._args(["--stage", "retinaface", "--quick"]).models == ["mnet25"]
    assert run._args(["--stage", "retinaface", "--size", "160,160"]).size == [160, 160]
    assert run._args([]).models[0] == "ssd_300_mobilenet0.25_voc"  # the whole run: unchanged
    assert run.OWN_RUN_ONLY["retinaface"] == "## RetinaFace"
    target = bench_module("retinaface_target")
    assert target.MODELS["r50"] == {"kind": "r50", "units": (3, 4, 6, 3), "width": 1.0}


def test_a_stage_run_replaces_only_its_section(stage, tmp_path):
    """`run.py --stage retinaface` writes its section from WORK/retinaface-results.json (here
    re-rendered with --report-only), leaving the file's other sections as they are."""
    run = bench_module("run")
    out, _ = stage
    (tmp_path / "retinaface-results.json").write_text(json.dumps(
        {"meta": _meta(), "results": {"mnet25": {"retinaface": out}}}))
    output = tmp_path / "B.md"
    output.write_text("# Benchmarks\n\n## Plain networks\n\nkept\n\n## Failures\n\n- x\n")
    assert run.main(["--stage", "retinaface", "--report-only", "--work", str(tmp_path),
                     "--output", str(output)]) == 0
    text = output.read_text()
    assert text.startswith("# Benchmarks\n\n## Plain networks\n\nkept\n\n## RetinaFace\n")
    assert text.endswith("\n## Failures\n\n- x\n")
    with pytest.raises(SystemExit):  # a re-run at another size than the run's is refused
        run.main(["--rerun", "retinaface", "--models", "mnet25", "--runs", "1", "--warmup", "0",
                  "--images", "1", "--threads", "1", "--size", "320,320", "--work",
                  str(tmp_path), "--output", str(output)])
    assert output.read_text() == text
