"""Faults that lose nothing: every bad value is one line and exit 2 with nothing written; a
conversion that fails or is stopped (Ctrl-C, SIGTERM) leaves an earlier result byte-identical
and no temporary files; two conversions into one folder never mix; non-finite weights and
malformed symbol graphs are refused in one line, quickly.

Runs that must be the real program (exit codes, signals, concurrency) are subprocesses; the
many bad config values and malformed symbols go through the same `cli.main` in this process,
which is the same code without paying MXNet's import for every case.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import ZOO_MODEL
from test_bad_inputs import assert_user_error, run_cli

from ssdconv.errors import UserError

NAME = "m"  # every conversion of these tests writes m.{prototxt,caffemodel,param,bin,json}
ALL = ["--target", "all", "--name", NAME]
SAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "samples",
                      "cat.jpg")


def hashes(directory) -> dict[str, str]:
    """Every entry of `directory` (hidden ones too) with the SHA-1 of its bytes."""
    out = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        out[name] = hashlib.sha1(open(path, "rb").read()).hexdigest() if os.path.isfile(
            path) else "<dir>"
    return out


def in_process(capfd, *args: str) -> SimpleNamespace:
    """`ssdconv ARGS` through cli.main in this process; stderr captured at the fd level, so
    MXNet's own prints count too."""
    from ssdconv.cli import main

    capfd.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out, err = capfd.readouterr()
    return SimpleNamespace(returncode=code, stdout=out, stderr=err)


def convert_cmd(seed: int, out) -> list[str]:
    return [sys.executable, "-m", "ssdconv", "convert", ZOO_MODEL, "--seed", str(seed), *ALL,
            "-o", str(out)]


def cli_env() -> dict:
    return dict(os.environ, PYTHONWARNINGS="ignore")


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    """The same conversion (name m, target all) with seeds 0 and 1, each run alone."""
    result = {}
    for seed in (0, 1):
        d = tmp_path_factory.mktemp(f"alone{seed}")
        proc = subprocess.run(convert_cmd(seed, d), capture_output=True, text=True,
                              env=cli_env(), timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        result[seed] = SimpleNamespace(dir=d, hashes=hashes(d))
    assert result[0].hashes != result[1].hashes
    assert sorted(result[0].hashes) == [f"{NAME}.{e}" for e in
                                        ("bin", "caffemodel", "json", "onnx", "param",
                                         "prototxt")]
    return result


def earlier_result(alone, directory) -> dict[str, str]:
    """`directory` holding the seed-1 conversion: the result a fault must not touch."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in alone[1].hashes:
        shutil.copy2(alone[1].dir / name, directory / name)
    return hashes(directory)


# --- bad command-line values ------------------------------------------------------------------

CONVERT = ["convert", ZOO_MODEL, "--seed", "0"]
VERIFY = ["verify", ZOO_MODEL, "--seed", "0"]
OUT = ["-o", "{out}"]

OPTION_CASES = [
    (CONVERT + ["--name", "../x"] + OUT, ["--name", "../x", "plain file name"]),
    (CONVERT + ["--name", "a/b"] + OUT, ["--name", "'/'"]),
    (CONVERT + ["--name", "a\\b"] + OUT, ["--name"]),
    (CONVERT + ["--name", ""] + OUT, ["--name"]),
    (CONVERT + ["--name", "."] + OUT, ["--name"]),
    (CONVERT + ["--name", ".."] + OUT, ["--name"]),
    (CONVERT + ["--name", ".hidden"] + OUT, ["--name", "not starting with '.'"]),
    (CONVERT + ["--name=-x"] + OUT, ["--name", "'-'"]),
    (CONVERT + ["--name", "a\tb"] + OUT, ["--name", "control"]),
    (CONVERT + ["--name", "a\x01b"] + OUT, ["--name"]),
    (CONVERT + ["--name", " m"] + OUT, ["--name"]),
    (CONVERT + ["--name", "n" * 129] + OUT, ["--name", "128"]),
    (["convert", ZOO_MODEL, "--classes", ",,"] + OUT, ["--classes", "empty"]),
    (["convert", ZOO_MODEL, "--classes", "a,,b"] + OUT, ["--classes", "empty"]),
    (["convert", ZOO_MODEL, "--classes", "a,b,a"] + OUT, ["--classes", "a given twice"]),
    (["convert", ZOO_MODEL, "--classes", ""] + OUT, ["--classes"]),
    (["convert", ZOO_MODEL, "--seed", "-1"] + OUT, ["--seed", "-1"]),
    (["convert", ZOO_MODEL, "--seed", "1.5"] + OUT, ["--seed"]),
    (["convert", ZOO_MODEL, "--seed", str(2**40)] + OUT, ["--seed"]),
    (CONVERT + ["--input-size", "0"] + OUT, ["--input-size"]),
    (CONVERT + ["--input-size", "-300"] + OUT, ["--input-size"]),
    (CONVERT + ["--input-size", "300,300,3"] + OUT, ["--input-size"]),
    (CONVERT + ["--input-size", "99999"] + OUT, ["--input-size", "4096"]),
    (CONVERT + ["--input-size", "big"] + OUT, ["--input-size"]),
    (CONVERT + ["--target", "tensorrt"] + OUT, ["--target", "tensorrt", "caffe, ncnn, onnx, all"]),
    (CONVERT + ["--relu6", "relu7"] + OUT, ["--relu6", "compose"]),
    (CONVERT + ["-o", "{file}"], ["{file}", "is a file"]),
    (CONVERT + ["-o", "{file}/sub"], ["{file}", "is a file"]),
    (CONVERT + ["-o", ""], ["-o"]),
    (CONVERT + ["-o", "/sys/kernel/ssdconv-out"], ["/sys/kernel/ssdconv-out"]),
    (["convert", ZOO_MODEL, "--params", "{dir}"] + OUT, ["--params", "is a directory"]),
    (["convert", ZOO_MODEL, "--params", "{missing}"] + OUT, ["--params", "does not exist"]),
    (CONVERT + ["--config", "{dir}"] + OUT, ["--config", "is a directory"]),
    (CONVERT + ["--config", "{missing}"] + OUT, ["--config", "does not exist"]),
    (CONVERT + ["--config", "{file}"] + OUT, ["mapping"]),
    (CONVERT + ["--verify", "{notimg}"] + OUT, ["{notimg}", "not an image"]),
    (CONVERT + ["--verify", "{dir}"] + OUT, ["no images"]),
    (CONVERT + ["--verify", SAMPLE, "--overlays", "{file}"] + OUT, ["--overlays", "is a file"]),
    (CONVERT + ["--overlays", "{out}2"] + OUT, ["--overlays", "--verify"]),
    (CONVERT + ["--winograd"] + OUT, ["--winograd", "--verify"]),
    (["convert", ""] + OUT, ["model"]),
    (["convert", "{sym}", "--classes", "a,b"], ["2 class names", "20"]),  # default -o out/
    (VERIFY + ["{notimg}"], ["not an image"]),
    (VERIFY + ["--converted", "{dir}"], ["--converted", "is a directory"]),
    (VERIFY + ["--converted", "{file}"], ["not an ssdconv manifest"]),
    (VERIFY + ["--converted", "{file}", "-o", "{out}"], ["--converted", "-o"]),
    (VERIFY + ["-o", "{file}"], ["-o", "is a file"]),
    (VERIFY + ["--overlays", "{file}"], ["--overlays", "is a file"]),
    (VERIFY + ["--target", "tflite"], ["--target"]),
    (["eval", "--count", "0"], ["--count", "1 or more"]),
    (["eval", "-n", "-5"], ["--count"]),
    (["eval", "--count", "many"], ["--count"]),
    (["eval", "--start", "-1"], ["--start", "0 or more"]),
    (["demo", "-o", "{file}"], ["-o", "is a file"]),
    (["inspect", ZOO_MODEL, "--seed", "-1"], ["--seed"]),
    (["inspect", ZOO_MODEL, "--classes", ","], ["--classes"]),
    (["list", "extra"], ["unrecognized"]),
]


@pytest.mark.parametrize("args,needles", OPTION_CASES,
                         ids=[f"{i}:{' '.join(a)[:50]}" for i, (a, _) in enumerate(OPTION_CASES)])
def test_bad_option_is_one_line_and_writes_nothing(tmp_path, exported, args, needles):
    cwd = tmp_path / "cwd"
    (cwd / "adir").mkdir(parents=True)
    (cwd / "afile").write_text("x")
    (cwd / "notimg.jpg").write_text("not an image")
    fill = {"{out}": str(tmp_path / "out"), "{file}": str(cwd / "afile"),
            "{dir}": str(cwd / "adir"), "{missing}": str(cwd / "missing"),
            "{notimg}": str(cwd / "notimg.jpg"), "{sym}": str(exported / "net-symbol.json")}

    def expand(text: str) -> str:
        for key, value in fill.items():
            text = text.replace(key, value)
        return text

    before = sorted(os.walk(cwd))
    proc = run_cli(*[expand(a) for a in args], cwd=cwd)
    assert_user_error(proc, *[expand(n) for n in needles])
    assert sorted(os.walk(cwd)) == before  # nothing written in the working directory (out/)
    assert (cwd / "afile").read_text() == "x"
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()


# --- bad config values --------------------------------------------------------------------------

CONFIG_CASES = [
    ("model: 5", "model"), ('model: ""', "model"), ("params: nope.params", "params"),
    ("params: .", "params"), ("classes: []", "classes"), ("classes: [a, a]", "classes"),
    ("classes: [a, 3]", "classes"), ('classes: ["", b]', "classes"), ("classes: 7", "classes"),
    ("seed: -1", "seed"), ("seed: true", "seed"), ("seed: 1.5", "seed"), ("seed: [1]", "seed"),
    ("input_size: [0, 300]", "input_size"), ("input_size: [300, 300, 3]", "input_size"),
    ("input_size: [a, b]", "input_size"), ("input_size: true", "input_size"),
    ("input_size: 100000", "input_size"), ("source_mean: [1, 2]", "source_mean"),
    ("source_mean: [1, 2, .nan]", "source_mean"), ("source_mean: [1, 2, x]", "source_mean"),
    ("source_mean: 5", "source_mean"), ("source_std: [1, 0, 1]", "source_std"),
    ("source_std: [1, .inf, 1]", "source_std"), ("source_std: [-1, 1, 1]", "source_std"),
    ("source_channel_order: rgb", "source_channel_order"),
    ("source_channel_order: [R, G, B]", "source_channel_order"), ("relu6: relu7", "relu6"),
    ("target: tensorrt", "target"), ("target: [caffe]", "target"),
    ("skip_passes: [nope]", "skip_passes"), ("skip_passes: [3]", "skip_passes"),
    ("ncnn_fp16: maybe", "ncnn_fp16"), ("ncnn_fp16: 1", "ncnn_fp16"),
    ("source_meen: [1, 2, 3]", "source_meen"), ("[1, 2]", "mapping"), ("just text", "mapping"),
    ("model: [1", "not valid YAML"),
]


@pytest.mark.parametrize("text,needle", CONFIG_CASES, ids=[c for c, _ in CONFIG_CASES])
def test_bad_config_value_is_one_line(tmp_path, capfd, monkeypatch, text, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(text + "\n")
    proc = in_process(capfd, "convert", ZOO_MODEL, "--seed", "0", "--config", "c.yaml",
                      "-o", str(tmp_path / "out"))
    assert_user_error(proc, "c.yaml", needle)
    assert sorted(os.listdir(tmp_path)) == ["c.yaml"]


def test_config_that_is_not_text(tmp_path, capfd):
    (tmp_path / "c.yaml").write_bytes(bytes(range(256)) * 4)
    proc = in_process(capfd, "inspect", ZOO_MODEL, "--seed", "0", "--config",
                      str(tmp_path / "c.yaml"))
    assert_user_error(proc, "c.yaml", "UTF-8")


def test_good_config_values_are_normalised(tmp_path):
    from ssdconv.config import load_config

    (tmp_path / "c.yaml").write_text("input_size: 256\nsource_mean: [1, 2, 3]\nseed: 4\n"
                                     "skip_passes: fold_batchnorm\nclasses: [' a', b]\nrelu6:\n")
    assert load_config(str(tmp_path / "c.yaml")) == {
        "input_size": (256, 256), "source_mean": (1.0, 2.0, 3.0), "seed": 4,
        "skip_passes": ("fold_batchnorm",), "classes": ["a", "b"]}


def test_file_stem_refuses_nul_and_long_names():
    from ssdconv import values

    for bad in ("a\x00b", "x" * 129, "a\nb", "-x", ".x", "a/b"):
        with pytest.raises(values.BadValue):
            values.file_stem(bad)
    assert values.file_stem("ssd_300_mobilenet0.25_voc") == "ssd_300_mobilenet0.25_voc"


def test_model_name_that_is_no_file_name_asks_for_name(tmp_path, capfd, exported):
    for suffix in ("-symbol.json", "-0000.params"):
        shutil.copy(exported / f"net{suffix}", tmp_path / f".hidden{suffix}")
    proc = in_process(capfd, "convert", str(tmp_path / ".hidden-symbol.json"),
                      "-o", str(tmp_path / "out"))
    assert_user_error(proc, "'.hidden'", "--name")
    assert not (tmp_path / "out").exists()
    proc = in_process(capfd, "convert", str(tmp_path / ".hidden-symbol.json"), "--name", "ok",
                      "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["ok.caffemodel", "ok.json", "ok.prototxt"]


# --- the API refuses the same values -----------------------------------------------------------

@pytest.fixture()
def live_net():
    import mxnet as mx

    from ssdconv.mxnet.load import zoo_net

    net = zoo_net(ZOO_MODEL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net.initialize()
        net(mx.nd.zeros((1, 3, 300, 300)))
    return net


def test_api_refuses_bad_name_and_options(tmp_path, live_net):
    from ssdconv.api import convert_net

    out = tmp_path / "deep" / "out"
    for kwargs, needle in (({"name": "../x"}, "output name"), ({"name": "a\x00b"}, "output name"),
                           ({"relu6": "relu7"}, "relu6"), ({"targets": ("tflite",)}, "targets"),
                           ({"source_std": (1.0, 0.0, 1.0)}, "source_std"),
                           ({"skip_passes": ("nope",)}, "skip_passes")):
        with pytest.raises(UserError, match=needle) as info:
            convert_net(live_net, out, (300, 300), **kwargs)
        assert "\n" not in str(info.value)
    assert sorted(os.listdir(tmp_path)) == []


# --- non-finite weights -------------------------------------------------------------------------

def _poisoned_params(exported, directory, value: float) -> tuple[str, str]:
    """net-0000.params with one value of one conv weight replaced; returns (symbol, name)."""
    import mxnet as mx

    raw = mx.nd.load(str(exported / "net-0000.params"))
    key = sorted(k for k in raw if k.endswith("conv3_weight"))[0]
    array = raw[key].asnumpy()
    array.flat[5] = value
    raw[key] = mx.nd.array(array)
    stem = {np.inf: "inf", 1e6: "big"}.get(value, "nan")
    mx.nd.save(str(directory / f"{stem}-0000.params"), raw)
    shutil.copy(exported / "net-symbol.json", directory / f"{stem}-symbol.json")
    return str(directory / f"{stem}-symbol.json"), key.split(":", 1)[1]


def test_nan_in_exported_params_names_the_parameter(tmp_path, exported):
    symbol, param = _poisoned_params(exported, tmp_path, np.nan)
    proc = run_cli("convert", symbol, "-o", str(tmp_path / "out"))
    assert_user_error(proc, param, "NaN", "non-finite")
    assert not (tmp_path / "out").exists()


def test_inf_in_saved_parameters_of_a_zoo_model(tmp_path, capfd, live_net):
    import mxnet as mx

    params = live_net.collect_params()
    name = sorted(n for n in params if n.endswith("batchnorm3_gamma"))[0]
    value = params[name].data().asnumpy()
    value[0] = np.inf
    params[name].set_data(mx.nd.array(value))
    live_net.save_parameters(str(tmp_path / "inf.params"))
    proc = in_process(capfd, "convert", ZOO_MODEL, "--params", str(tmp_path / "inf.params"),
                      "-o", str(tmp_path / "out"))
    assert_user_error(proc, name.split("_", 1)[1], "inf")  # ssdN_: each net built gets an N

    from ssdconv.api import convert_net

    with pytest.raises(UserError, match=f"parameter {name} holds 1 non-finite"):
        convert_net(live_net, tmp_path / "out", (300, 300))
    assert sorted(os.listdir(tmp_path)) == ["inf.params"]


# --- malformed symbol graphs --------------------------------------------------------------------

def _ops(doc) -> list[int]:
    return [i for i, n in enumerate(doc["nodes"]) if n["op"] != "null"]


def _first(doc, op: str) -> int:
    return next(i for i, n in enumerate(doc["nodes"]) if n["op"] == op)


def _set(path: list, value):
    def edit(doc):
        target = doc
        for key in path[:-1]:
            target = target[key(doc) if callable(key) else key]
        last = path[-1]
        target[last(doc) if callable(last) else last] = value(doc) if callable(value) else value
    return edit


K = lambda doc: _ops(doc)[5]  # noqa: E731 - an op node (ReLU) early in the backbone

MALFORMED = {
    "cycle": (_set(["nodes", K, "inputs", 0], lambda d: [_ops(d)[7], 0, 0]),
              ["comes after it", "cyclic"]),
    "self-reference": (_set(["nodes", K, "inputs", 0], lambda d: [K(d), 0, 0]), ["itself"]),
    "dangling input": (_set(["nodes", K, "inputs", 0], [10**6, 0, 0]), ["#1000000",
                                                                        "does not exist"]),
    "negative input": (_set(["nodes", K, "inputs", 0], [-1, 0, 0]), ["#-1"]),
    "input not a triple": (_set(["nodes", K, "inputs", 0], 5), ["must be [node, output"]),
    "input of strings": (_set(["nodes", K, "inputs", 0], ["0", "0", "0"]), ["must be [node"]),
    "inputs not a list": (_set(["nodes", K, "inputs"], {"a": 1}), ["inputs must be a list"]),
    "input output index": (_set(["nodes", K, "inputs", 0], lambda d: [K(d) - 1, 5, 0]),
                           ["output 5", "1 output(s)"]),
    "node without inputs": (_set(["nodes", K, "inputs"], []),
                            ["do not depend on its input", "has no inputs"]),
    "variable with inputs": (_set(["nodes", 1, "inputs"], [[0, 0, 0]]), ["variable"]),
    "head missing node": (_set(["heads", 0], [10**6, 0, 0]), ["head 0", "does not exist"]),
    "head output index": (_set(["heads", 0], lambda d: [d["heads"][0][0], 7, 0]),
                          ["head 0 output 7", "1 output(s)"]),
    "no heads": (_set(["heads"], []), ["'heads'"]),
    "nodes not a list": (_set(["nodes"], {"a": 1}), ["'nodes'"]),
    "node not an object": (_set(["nodes", 3], "conv"), ["node #3"]),
    "node without name": (_set(["nodes", K, "name"], 7), ["has no name"]),
    "node without op": (_set(["nodes", K, "op"], None), ["has no op"]),
    "attrs not a dict": (_set(["nodes", K, "attrs"], ["x"]), ["attrs must be an object"]),
    "attr not a string": (_set(["nodes", lambda d: _first(d, "Convolution"), "attrs",
                                "num_filter"], 8), ["num_filter must be a string"]),
    "duplicate names": (_set(["nodes", lambda d: _ops(d)[6], "name"],
                             lambda d: d["nodes"][_ops(d)[5]]["name"]), ["used twice"]),
    "arg_nodes names an op": (_set(["arg_nodes", 0], K), ["not a variable"]),
    "arg_nodes out of range": (_set(["arg_nodes", 0], 10**6), ["arg_nodes", "does not exist"]),
    "arg_nodes short": (_set(["arg_nodes"], [0]), ["leaves out"]),
    "arg_nodes twice": (_set(["arg_nodes"], lambda d: d["arg_nodes"] + [0]), ["twice"]),
    "arg_nodes missing": (lambda doc: doc.pop("arg_nodes"), ["'arg_nodes'"]),
    "not an object": (None, ["JSON list"]),
    "unknown op": (_set(["nodes", lambda d: _first(d, "Convolution"), "op"], "NoSuchOp"),
                   ["MXNet cannot load", "NoSuchOp"]),
    "bad attribute value": (_set(["nodes", lambda d: _first(d, "Convolution"), "attrs",
                                  "kernel"], "(a,b)"), ["kernel"]),
    "missing weight input": (lambda d: d["nodes"][_first(d, "Convolution")]["inputs"].pop(),
                             ["cannot infer shapes", "Error in operator"]),
}


def _malformed_symbol(exported, directory, case: str) -> str:
    edit, _ = MALFORMED[case]
    doc = json.loads((exported / "net-symbol.json").read_text())
    if edit is None:
        doc = [doc]
    else:
        edit(doc)
    stem = "bad_" + "".join(c if c.isalnum() else "_" for c in case)
    (directory / f"{stem}-symbol.json").write_text(json.dumps(doc))
    os.link(exported / "net-0000.params", directory / f"{stem}-0000.params")
    return str(directory / f"{stem}-symbol.json")


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_symbol_is_one_line(tmp_path, capfd, exported, case):
    symbol = _malformed_symbol(exported, tmp_path, case)
    start = time.time()
    proc = in_process(capfd, "convert", symbol, "-o", str(tmp_path / "out"))
    line = assert_user_error(proc, os.path.basename(symbol), *MALFORMED[case][1])
    assert len(line) < 400, line
    assert time.time() - start < 30
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["cycle", "dangling input", "head output index"])
def test_malformed_symbol_through_the_program(tmp_path, exported, case):
    """The issue's own case (a cyclic symbol printed MXNet's traceback inside a 138-line
    message) and two more, as a user runs them: one line, promptly, never a hang."""
    symbol = _malformed_symbol(exported, tmp_path, case)
    proc = subprocess.run([sys.executable, "-m", "ssdconv", "convert", symbol, "-o",
                           str(tmp_path / "out")], capture_output=True, text=True,
                          env=cli_env(), timeout=120)
    assert_user_error(proc, *MALFORMED[case][1])
    assert "infer_shape error" not in proc.stdout + proc.stderr


# --- interruption, late failure, concurrency ----------------------------------------------------

def _leftovers(directory) -> list[str]:
    return [n for n in os.listdir(directory) if n.startswith(".")]


@pytest.mark.parametrize("signum,code,word", [(signal.SIGINT, 130, "interrupted"),
                                              (signal.SIGTERM, 143, "terminated")])
def test_signal_during_conversion_keeps_earlier_result(tmp_path, alone, signum, code, word):
    out = tmp_path / "out"
    before = earlier_result(alone, out)
    proc = subprocess.Popen(convert_cmd(0, out), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli_env())
    deadline = time.time() + 300
    while not _leftovers(out):  # the staging directory .ssdconv-XXXX: files are being written
        assert proc.poll() is None, "the conversion ended before its staging directory appeared"
        assert time.time() < deadline
        time.sleep(0.001)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    lines = [ln for ln in err.splitlines() if ln.strip() and "graph_executor" not in ln]
    assert proc.returncode == code, (proc.returncode, err[-2000:])
    assert lines == [f"ssdconv: {word}"], lines
    assert hashes(out) == before  # byte-identical, and no staging or temporary file left


def test_failure_late_in_conversion_keeps_earlier_result(tmp_path, alone, exported):
    """The caffe files are already staged when the ncnn fp16 writer refuses a weight beyond
    the float16 range: the folder keeps its earlier conversion, and a folder the run created
    is removed again."""
    symbol, _ = _poisoned_params(exported, tmp_path, 1e6)
    out = tmp_path / "out"
    before = earlier_result(alone, out)
    proc = run_cli("convert", symbol, *ALL, "--ncnn-fp16", "-o", str(out))
    assert_user_error(proc, "float16", "--ncnn-fp16")
    assert hashes(out) == before
    proc = run_cli("convert", symbol, *ALL, "--ncnn-fp16", "-o", str(tmp_path / "new" / "sub"))
    assert_user_error(proc, "float16")
    assert not (tmp_path / "new").exists()


def test_concurrent_conversions_do_not_mix(tmp_path, alone):
    out = tmp_path / "out"
    procs = [subprocess.Popen(convert_cmd(seed, out), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=cli_env())
             for seed in (0, 1)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
    assert hashes(out) in (alone[0].hashes, alone[1].hashes)


def test_failing_check_keeps_earlier_overlays(tmp_path):
    """Overlays are published together at the end of the check: an image that cannot be
    decoded (a PNG signature and nothing else) stops the check, earlier overlays stay."""
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    overlays = tmp_path / "overlays"
    overlays.mkdir()
    (overlays / "cat_overlay.png").write_bytes(b"an earlier overlay")
    before = hashes(overlays)
    proc = run_cli("convert", ZOO_MODEL, "--seed", "0", "-o", str(tmp_path / "out"),
                   "--verify", SAMPLE, str(broken), "--overlays", str(overlays))
    assert_user_error(proc, "broken.png", "cannot be decoded")
    assert hashes(overlays) == before
    assert not _leftovers(tmp_path / "out")


HELD_PROBE = """
import os, signal, time
from ssdconv import signals
# a child inherits its parent's signal mask and ignored signals: start as from a shell
# (nothing blocked, Ctrl-C raising KeyboardInterrupt)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
signal.signal(signal.SIGINT, signal.default_int_handler)
done = []
handler = signal.getsignal(signal.SIGINT)
try:
    with signals.held():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # Python runs a pending handler at the next bytecode boundary
        done.append("block finished")
    print("no KeyboardInterrupt")
except KeyboardInterrupt:
    print("KeyboardInterrupt after", done, signal.getsignal(signal.SIGINT) is handler)
"""


def test_held_signals_arrive_after_the_block():
    """A publish step is never cut: Ctrl-C inside held() is delivered when the block ends,
    and the handler outside is what it was. In a fresh interpreter with SIGINT unblocked, as a
    command starts from a shell: in full runs (only; no subset of the tests before it
    reproduced it) pytest's process ended up with SIGINT never reaching a handler, in process
    and in a child started from it (the child inherits an ignored SIGINT, and held() then
    delivers it as the handler outside would: ignored), which says nothing about ssdconv's
    handling."""
    proc = subprocess.run([sys.executable, "-c", HELD_PROBE], capture_output=True, text=True,
                          env=cli_env(), timeout=120)
    assert proc.stdout.strip() == "KeyboardInterrupt after ['block finished'] True", \
        proc.stdout + proc.stderr[-2000:]


def test_staged_directory_removes_what_a_failure_created(tmp_path):
    from ssdconv.fileio import StagedDirectory

    target = tmp_path / "a" / "b"
    with pytest.raises(RuntimeError):
        with StagedDirectory(target) as stage:
            (stage.path / "x").write_text("x")
            raise RuntimeError("fails before publishing")
    assert sorted(os.listdir(tmp_path)) == []
    with StagedDirectory(target) as stage:
        (stage.path / "x").write_text("new")
        stage.publish(["x"])
    assert sorted(os.listdir(target)) == ["x"] and (target / "x").read_text() == "new"

