"""bench/onnx_target.py: the ONNX stage measures ssdconv's ONNX and mx2onnx's with the
package's own runners and comparison, and bench/onnx_report.py renders what it measured.

On the shipped demo SSD (256 px, trained weights), one image, one timed run: the stage's
figures are real measurements in the real runtimes (onnxruntime, OpenVINO, MXNet's exporter);
pnnx is not in the test venv, so its column says "not run", never a made-up result.
"""

from __future__ import annotations

import pytest
from bench_modules import bench_module


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    onnx_target = bench_module("onnx_target")
    return onnx_target.measure("shapes_ssd", tmp_path_factory.mktemp("onnx") / "shapes_ssd",
                               1, [1], 1, 0)


def test_the_stage_converts_both_ways_and_sizes_the_files(stage):
    c = stage["conversion"]
    for side in ("ssdconv", "mx2onnx"):
        assert c[side]["wall_s"] > 0 and c[side]["peak_rss_mib"] > 0
        assert 1.0 < c[side]["size_mib"] < 20.0  # the demo's weights are ~5 MiB


def test_ssdconvs_onnx_equals_gluoncv_row_for_row_in_both_runtimes(stage):
    f = stage["fidelity"]
    for runtime in ("onnxruntime", "openvino"):
        r = f[runtime]
        assert r["compared"] > 0 and r["matched"] == r["compared"], r
        assert r["rows_exact"], r
        assert max(r["loc_err"], r["conf_err"]) < 1e-4, r


def test_mx2onnx_is_compared_by_the_same_functions(stage):
    m = stage["fidelity"]["mx2onnx"]
    assert m["loads"] is True  # the demo SSD's export loads; the YOLOv3 exports do not
    assert m["rows"]["compared"] > 0 and m["sets"]["compared"] > 0
    assert stage["fidelity"]["pnnx_body"].get("not_run") or \
        "converted" in stage["fidelity"]["pnnx_body"]


def test_every_latency_is_measured(stage):
    lat = stage["latency"]
    for key in ("ort_1", "openvino_1", "mx2onnx_ort_1", "ncnn_1", "opencv_1"):
        assert lat[key]["median_ms"] > 0, (key, lat[key])


def test_the_report_shows_the_measured_rows(stage):
    report = bench_module("onnx_report")
    meta = {"threads": [1], "runs": 1, "warmup": 0, "image": "samples/astronaut.jpg"}
    text = "\n".join(report.section({}, {"shapes_ssd": stage}, meta))
    f = stage["fidelity"]["onnxruntime"]
    assert "| shapes_ssd (demo) |" in text
    assert f"{f['matched']}/{f['compared']}" in text
    assert "every row equal for 1 of 1 models" in text
    assert f"{stage['latency']['ort_1']['median_ms']:.1f}" in text


def test_a_stage_run_replaces_its_own_section_only():
    """`run.py --stage onnx` rewrites the ONNX section and leaves every other table as it was:
    inserted before Failures the first time, replaced in place after."""
    report = bench_module("report")
    md = "# Benchmarks\n\n## Conversion\n\n| a |\n\n## Failures\n\n- x\n"
    once = report.replace_section(md, ["## ONNX", "", "first"])
    assert once == ("# Benchmarks\n\n## Conversion\n\n| a |\n\n## ONNX\n\nfirst\n\n"
                    "## Failures\n\n- x\n")
    twice = report.replace_section(once, ["## ONNX", "", "second"])
    assert twice == once.replace("first", "second")
    last = report.replace_section("# B\n\n## ONNX\n\nold\n", ["## ONNX", "", "new"])
    assert last == "# B\n\n## ONNX\n\nnew\n"
