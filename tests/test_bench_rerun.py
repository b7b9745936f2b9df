"""bench/run.py --rerun: one self-contained stage measured again into a saved run.

The re-measured rows replace only that stage's entries, under the run's own settings (a re-run
with other settings is refused), and the report's header says which rows were re-measured, with
what command and when, so BENCHMARKS.md never passes two runs off as one. The int8 stage runs
for real (bench/int8.py in its own process, quick settings) on yolo3_mobilenet0.25_voc.
"""

from __future__ import annotations

import json
import re

import pytest
from bench_modules import bench_module

MODEL = "yolo3_mobilenet0.25_voc"
QUICK = ["--quick", "--no-demo", "--threads", "1"]
SETTINGS = {"quick": True, "runs": 5, "warmup": 1, "threads": [1]}  # what QUICK gives


def saved_run(tmp_path, models):
    results = {m: {"conversion": {"seconds": 1.0}, "int8": {"old": True}} for m in models}
    meta = {"command": "bench/run.py", "date": "then", **SETTINGS}
    (tmp_path / "results.json").write_text(json.dumps({"meta": meta, "results": results}))


def test_rerun_replaces_one_stage_and_records_it(tmp_path):
    run = bench_module("run")
    saved_run(tmp_path, ["other", MODEL])
    command = f"bench/run.py --rerun int8 --models {MODEL}"
    a = run._args(["--rerun", "int8", "--models", MODEL, "--work", str(tmp_path), *QUICK])
    data = run.rerun(a, tmp_path / "results.json", command)
    assert data["results"]["other"]["int8"] == {"old": True}  # rows not named stay as measured
    assert data["results"][MODEL]["conversion"] == {"seconds": 1.0}  # other stages untouched
    int8 = data["results"][MODEL]["int8"]
    assert int8["int8_layers"]["convolutions"] == 50
    assert sorted(int8["int8_layers"]["float"]) == [
        f"yolov30_yolooutputv3{i}_conv0_fwd" for i in range(3)]
    assert {"fp32_1", "int8_1"} <= set(int8["latency"])
    assert 0 < max(int8["raw_error_vs_fp32"]["int8"].values()) < 3
    (record,) = data["meta"]["reruns"]
    assert record["stage"] == "int8" and record["models"] == [MODEL]
    assert json.loads((tmp_path / "results.json").read_text()) == data
    report = bench_module("report")
    (header,) = report._reruns(data["meta"])
    assert f"the int8 stage of {MODEL}, with `{command}`" in header
    (row,) = [x for x in report.int8_table(data["results"], [1]) if x.startswith(f"| {MODEL} ")]
    assert "| 47 of 50 |" in row and "| – |" in [x for x in report.int8_table(
        data["results"], [1]) if x.startswith("| other ")][0]


@pytest.mark.parametrize("extra, named", [(["--runs", "20"], "--runs 20"),
                                          (["--threads", "1,2"], "--threads .1, 2.")])
def test_rerun_under_other_settings_is_refused(tmp_path, capsys, extra, named):
    run = bench_module("run")
    saved_run(tmp_path, [MODEL])
    a = run._args(["--rerun", "int8", "--models", MODEL, "--work", str(tmp_path), *QUICK,
                   *extra])
    with pytest.raises(SystemExit) as exit_:
        run.rerun(a, tmp_path / "results.json", "cmd")
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert re.match(f"bench/run.py: --rerun: .*{named}", line), line
    assert "reruns" not in json.loads((tmp_path / "results.json").read_text())["meta"]
    assert not (tmp_path / MODEL).exists()  # nothing measured


def test_rerun_of_a_model_not_in_the_run_is_refused(tmp_path, capsys):
    run = bench_module("run")
    saved_run(tmp_path, ["a"])
    a = run._args(["--rerun", "int8", "--models", "b", "--work", str(tmp_path), *QUICK])
    with pytest.raises(SystemExit) as exit_:
        run.rerun(a, tmp_path / "results.json", "cmd")
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("bench/run.py: --rerun: b not in ")

