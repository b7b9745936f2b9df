"""bench/plain_target.py: the plain-network stage converts a network no detector family
recognises, proves it with the package's own check in the four runtimes, times it through the
package runners' `timed` hook, and bench/plain_report.py renders what it measured.

On MobileFaceNet (112 px, seeded weights, built by tests/insightface_models.py and converted
from its saved checkpoint as the stage does), one image, one timed run at one thread: the
figures are real measurements in the real runtimes (OpenCV, ncnn, onnxruntime, OpenVINO).
"""

from __future__ import annotations

import json

import pytest
from bench_modules import bench_module

RUNTIMES = ("opencv", "ncnn", "onnxruntime", "openvino")
LATENCY = ("opencv_1", "ncnn_1", "ort_1", "openvino_1")


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    plain_target = bench_module("plain_target")
    workdir = tmp_path_factory.mktemp("plain") / "mobilefacenet"
    return plain_target.measure("mobilefacenet", workdir, 1, [1], 1, 0), workdir


def test_the_stage_converts_the_saved_checkpoint_to_every_target(stage):
    out, workdir = stage
    c = out["conversion"]
    assert c["wall_s"] > 0 and c["peak_rss_mib"] > 0, c
    source = json.loads((workdir / "source.json").read_text())
    assert source["cli"][1:] == ["--input-size", "112,112"]
    assert source["cli"][0].endswith("checkpoint/mobilefacenet-symbol.json")
    for ext in ("prototxt", "caffemodel", "param", "bin", "onnx"):
        assert (workdir / "ssdconv" / f"mobilefacenet.{ext}").is_file()


def test_fc1_is_proven_in_every_runtime(stage):
    f = stage[0]["fidelity"]
    assert f["images"] == ["astronaut.jpg"]
    for runtime in RUNTIMES:
        r = f[runtime]
        assert r["ok"] and r["images"] == 1, (runtime, r)
        fc1 = r["outputs"]["fc1"]
        assert 0 < fc1["err"] <= fc1["bound"] and fc1["ratio"] <= 1, (runtime, fc1)
        assert fc1["gluon32_err"] > 0 and fc1["top1_same"] == 1, (runtime, fc1)
        assert fc1["cosine"] >= 1 - 1e-6, (runtime, fc1)


def test_every_latency_is_measured(stage):
    lat = stage[0]["latency"]
    for key in LATENCY:
        assert lat[key]["median_ms"] > 0 and lat[key]["runs"] == 1, (key, lat[key])


def _meta(stage: str = "plain", **more) -> dict:
    """A `--stage STAGE` run's meta as run.py records it, for one image, one thread, one timed
    run; `more`: the stage's own entries."""
    return {"threads": [1], "runs": 1, "warmup": 0, "quick": False,
            "image": "samples/astronaut.jpg", "command": f"bench/run.py --stage {stage}",
            "date": "today", "elapsed_min": 0.1, "load_before": "0.00", "load_after": "0.00",
            "machine": {"cpu": "cpu", "cores": 2, "ram_gib": 1, "kernel": "k", "python": "3",
                        "versions": {}}, **more}


def test_the_report_shows_the_measured_rows(stage):
    out, _ = stage
    report = bench_module("plain_report")
    meta = _meta()
    lines = report.section({"meta": meta, "results": {"mobilefacenet": {"plain": out}}})
    text = "\n".join(lines)
    assert lines[0] == "## Plain networks"
    assert "- command: `bench/run.py --stage plain`" in text
    assert "pnnx" not in text  # the stage does not run it
    c = out["conversion"]
    assert f"| mobilefacenet | checkpoint (`mobilefacenet_symbol`), `--input-size 112,112` | " \
        f"{c['wall_s']:.1f} s / {c['peak_rss_mib']:.0f} MiB |" in text
    ncnn = out["fidelity"]["ncnn"]["outputs"]["fc1"]
    assert f"| mobilefacenet | ncnn | fc1 | {ncnn['err']:.1e} | {ncnn['bound']:.1e} | " \
        f"{ncnn['gluon32_err']:.1e} | {ncnn['ratio']:.2f} | 1/1 |" in text
    row = next(ln for ln in lines if ln.startswith("| mobilefacenet | ") and "ms" not in ln
               and ln.count("|") == 6)
    assert row == "| mobilefacenet | " + " | ".join(
        f"{out['latency'][k]['median_ms']:.1f}" for k in LATENCY) + " |"


def test_the_caffe_and_ncnn_timed_hooks_fetch_what_run_reads(tmp_path, sample_images):
    """OpenCVRunner.timed and NcnnRunner.timed (what the stage times) fetch the blobs `run`
    reads, detections first for a detector (the demo SSD), with the input prepared once."""
    import numpy as np

    from ssdconv import shipped
    from ssdconv.convert import Options, convert
    from ssdconv.demo.shapes_dataset import CLASSES
    from ssdconv.models import load_model
    from ssdconv.verify.blobs import output_blobs, raw_blobs
    from ssdconv.verify.images import load_rgb
    from ssdconv.verify.runners import runners_for

    conv = convert(load_model(str(shipped.DEMO_SYMBOL), classes=list(CLASSES)), tmp_path,
                   Options(targets=("caffe", "ncnn")))
    names = output_blobs(conv.manifest)
    raw = raw_blobs(conv.manifest)  # loc, conf, the priors
    assert names == [conv.manifest["blobs"]["detections"], *raw.values()]
    _, _, h, w = conv.manifest["input_shape"]
    rgb = load_rgb(sample_images[0], h, w)
    for runner in runners_for(conv, ("opencv", "ncnn")):
        ran, timed = runner.run(rgb), runner.timed(rgb)
        fetched = timed()
        got = dict(zip(names, fetched)) if isinstance(fetched, (list, tuple)) else fetched
        assert list(got) == names, runner.name
        for role, blob in raw.items():
            assert np.array_equal(np.asarray(got[blob]).reshape(-1), ran[role].reshape(-1)), \
                (runner.name, role)
        assert timed() is not None  # runs again on the prepared input


def test_the_stage_runs_the_plain_models_by_default():
    run = bench_module("run")
    assert run._args(["--stage", "plain"]).models == ["resnet50_v2", "mobilenetv2_1.0",
                                                      "mobilefacenet"]
    assert run._args(["--stage", "plain", "--quick"]).models == ["resnet50_v2"]
    assert run._args(["--stage", "plain", "--models", "squeezenet1.1"]).models == \
        ["squeezenet1.1"]
    assert run._args([]).models[0] == "ssd_300_mobilenet0.25_voc"  # the whole run: unchanged
    assert run.OWN_RUN_ONLY["plain"] == "## Plain networks"


def test_a_whole_run_carries_the_plain_section_over():
    """The whole run's report has no plain section of its own: run.py keeps the one a
    `--stage plain` run wrote (`section_of` + `replace_section`), before Failures."""
    report = bench_module("report")
    old = "# B\n\n## ONNX\n\nold onnx\n\n## Plain networks\n\n| p |\n\n## Failures\n\n- x\n"
    kept = report.section_of(old, "## Plain networks")
    assert kept == ["## Plain networks", "", "| p |"]
    fresh = "# B\n\n## ONNX\n\nnew onnx\n\n## Failures\n\n- y\n"
    assert report.replace_section(fresh, kept) == (
        "# B\n\n## ONNX\n\nnew onnx\n\n## Plain networks\n\n| p |\n\n## Failures\n\n- y\n")
    assert report.section_of(fresh, "## Plain networks") is None


def test_a_rerun_remeasures_rows_of_the_stage_run_and_says_so(stage, tmp_path):
    """`run.py --rerun plain` re-measures a model of the last `--stage plain` run into
    WORK/plain-results.json and the section's header names it; the file's other sections stay."""
    run = bench_module("run")
    out, _ = stage
    saved = tmp_path / "plain-results.json"
    saved.write_text(json.dumps({"meta": _meta(), "results": {"mobilefacenet": {"plain": out}}}))
    output = tmp_path / "B.md"
    output.write_text("# Benchmarks\n\n## ONNX\n\nkept\n")
    args = ["--rerun", "plain", "--models", "mobilefacenet", "--runs", "1", "--warmup", "0",
            "--images", "1", "--threads", "1", "--work", str(tmp_path), "--output", str(output)]
    assert run.main(args) == 0
    data = json.loads(saved.read_text())
    (record,) = data["meta"]["reruns"]
    assert record["stage"] == "plain" and record["models"] == ["mobilefacenet"]
    again = data["results"]["mobilefacenet"]["plain"]
    assert again["latency"]["ncnn_1"]["median_ms"] > 0
    text = output.read_text()
    assert text.startswith("# Benchmarks\n\n## ONNX\n\nkept\n\n## Plain networks\n")
    assert "- re-measured after it: the plain stage of mobilefacenet, with `" in text
    with pytest.raises(SystemExit):  # settings unlike the run's are refused
        run.main([*args[:4], "--runs", "2", "--work", str(tmp_path)])
