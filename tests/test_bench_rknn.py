"""bench/rknn_target.py: a malformed calibration list is refused in one line naming the file,
the line and what is wrong, before any work (no rknn-toolkit2 needed); and, when .venv-rknn
exists (bench/setup_rknn.sh; $RKNN_PYTHON overrides), the demo SSD's headless caffe and ONNX
conversions run fp16 in Rockchip's simulator and agree with Gluon float32.

Measured (rknn-toolkit2 2.5.0, rk3566, 20 evaluation images and the six photos): fp16's largest
|RKNN - Gluon| relative to a map's largest |Gluon| is 3.7e-3 (caffe and ONNX alike), its
smallest cosine 0.999997; the bound below is 1e-2.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bench_modules import BENCH, bench_module

ROOT = Path(BENCH).parent
FP16_REL_ERR = 1e-2  # measured 3.7e-3 (fp16 has ~1e-3 relative precision per op)
FP16_MIN_COS = 0.9999  # measured 0.999997


def _rknn_python() -> Path:
    return Path(os.environ.get("RKNN_PYTHON") or ROOT / ".venv-rknn" / "bin" / "python")


def _bad_lists(tmp: Path) -> dict[str, tuple[str, int, str]]:
    """name -> (the list's text, the bad line's number, words the refusal must say)."""
    good = tmp / "a.png"
    good.write_bytes(b"\x89PNG")
    return {
        "missing": (f"{good}\n{tmp / 'nope.jpg'}\n", 2, "does not exist"),
        "extension": (f"{good}\n{good}\n{tmp / 'a.txt'}\n", 3, "not a jpg/png/bmp/npy"),
        "two_paths": (f"{good} {good}\n", 1, "2 paths on one line"),
        "empty_line": (f"{good}\n\n{good}\n", 2, "empty line"),
    }


@pytest.mark.parametrize("case", ["missing", "extension", "two_paths", "empty_line"])
def test_a_malformed_calibration_list_is_named_by_file_and_line(tmp_path, case):
    target = bench_module("rknn_target")
    text, line, words = _bad_lists(tmp_path)[case]
    listing = tmp_path / "dataset.txt"
    listing.write_text(text)
    with pytest.raises(target.DatasetError) as err:
        target.validate_dataset(listing)
    message = str(err.value)
    assert f"{listing}:{line}:" in message and words in message, message
    assert "\n" not in message


@pytest.mark.parametrize("script", ["rknn_target", "run"])
def test_the_scripts_refuse_it_in_one_line_before_any_work(tmp_path, script):
    (tmp_path / "a.png").write_bytes(b"\x89PNG")
    listing = tmp_path / "dataset.txt"
    listing.write_text(f"{tmp_path / 'a.png'}\n{tmp_path / 'gone.png'}\n")
    work = tmp_path / "work"
    args = {"rknn_target": ["demo_ssd", str(work)],
            "run": ["--stage", "rknn", "--work", str(work), "--output",
                    str(tmp_path / "B.md")]}[script]
    res = subprocess.run([sys.executable, os.path.join(BENCH, f"{script}.py"), *args,
                          "--dataset", str(listing)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert f"{listing}:2:" in lines[0] and "gone.png does not exist" in lines[0], lines[0]
    assert not work.exists() and not (tmp_path / "B.md").exists()


def test_a_good_list_gives_its_files(tmp_path):
    target = bench_module("rknn_target")
    (tmp_path / "x.npy").write_bytes(b"")
    (tmp_path / "y.JPG").write_bytes(b"")
    listing = tmp_path / "dataset.txt"
    listing.write_text("x.npy\ny.JPG\n")  # relative to the list's folder
    assert target.validate_dataset(listing) == [str(tmp_path / "x.npy"),
                                                str(tmp_path / "y.JPG")]


def test_the_error_analysis_table_is_parsed(tmp_path):
    runner = bench_module("rknn_runner")
    table = tmp_path / "error_analysis.txt"
    table.write_text(
        "layer_name    simulator_error\n"
        "                entire              single\n"
        "--------------------------------------\n"
        "[Input] data      1.00000 | 0.00000   1.00000 | 0.00000\n"
        "[Add] x_shift\n"
        "[Conv] conv_a     0.93890 | 71.05946  0.99948 | 6.58554\n"
        "[Relu] relu_b     0.91831 | 0.64241   0.99965 | 0.04091\n")
    worst = runner.error_analysis(table, 2)
    assert [w["layer"] for w in worst] == ["relu_b", "conv_a"]
    assert worst[0] == {"op": "Relu", "layer": "relu_b", "entire_cos": 0.91831,
                        "entire_euc": 0.64241, "single_cos": 0.99965, "single_euc": 0.04091}


def test_caffe_outputs_are_the_unconsumed_tops_in_layer_order(tmp_path):
    runner = bench_module("rknn_runner")
    proto = tmp_path / "n.prototxt"
    proto.write_text('name: "n"\nlayer {\n  name: "c"\n  type: "Convolution"\n  bottom: "data"\n'
                     '  top: "b"\n}\nlayer {\n  name: "p1"\n  type: "Convolution"\n'
                     '  bottom: "b"\n  top: "conf0"\n}\nlayer {\n  name: "r"\n  type: "ReLU"\n'
                     '  bottom: "b"\n  top: "b"\n}\nlayer {\n  name: "p0"\n'
                     '  type: "Convolution"\n  bottom: "b"\n  top: "loc0"\n}\n')
    assert runner.caffe_outputs(str(proto)) == ["conf0", "loc0"]


needs_rknn = pytest.mark.skipif(
    not _rknn_python().is_file(),
    reason=f"no rknn-toolkit2 venv at {_rknn_python()} (bash bench/setup_rknn.sh, or set "
    "RKNN_PYTHON)")
needs_headless = pytest.mark.skipif(
    importlib.util.find_spec("ssdconv.headless") is None
    or importlib.util.find_spec("ssdconv.tail") is None,
    reason="this ssdconv has no headless conversion or C tail (ssdconv.headless, ssdconv.tail)")


@needs_rknn
@needs_headless
def test_the_demo_ssd_runs_fp16_in_the_simulator_like_gluon(tmp_path):
    target = bench_module("rknn_target")
    out = target.measure("demo_ssd", tmp_path / "demo_ssd", count=5, algorithms=(),
                         calibration=1)
    assert out["toolkit"] and out["images"] == {"eval": 5, "photos": 6}
    assert set(out["runs"]) == {"caffe fp16", "onnx fp16"}
    for key, run in out["runs"].items():
        assert "error" not in run, (key, run["error"])
        assert max(run["max_rel_err"].values()) < FP16_REL_ERR, (key, run["max_rel_err"])
        assert min(run["min_cos"].values()) > FP16_MIN_COS, (key, run["min_cos"])
        d = run["detections"]
        # the C tail on fp16 maps finds every confident detection Gluon finds, and no other
        assert d["confident_found"] == d["confident_gluon"] > 0 and d["confident_extra"] == 0, d
        assert abs(run["map"] - out["gluon_map"]) < 0.02, (key, run["map"], out["gluon_map"])
