"""Bad input gets one clear line on stderr, exit code 2, no traceback and no partial files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

MODEL = "ssd_300_mobilenet0.25_voc"


def run_cli(*args, cwd=None):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-m", "ssdconv", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=600)
    return proc


def assert_user_error(proc, *needles):
    lines = [ln for ln in proc.stderr.splitlines()
             if ln.strip() and "graph_executor" not in ln and "MKLDNN" not in ln]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, lines
    assert lines[0].startswith("ssdconv: error: "), lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def no_model_files(directory):
    if not os.path.isdir(directory):
        return True
    return not [f for f in os.listdir(directory)]


def test_unknown_model_name(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("convert", "ssd_301_nonexistent_voc", "-o", str(out))
    assert_user_error(proc, "unknown model", "ssd_301_nonexistent_voc")
    assert no_model_files(out)


def test_a_zoo_kind_no_family_converts(tmp_path):
    """GluonCV's segmentation builders are claimed by no family (a plain network's zoo is the
    classifiers')."""
    proc = run_cli("convert", "fcn_resnet50_voc", "-o", str(tmp_path / "out"))
    assert_user_error(proc, "fcn_resnet50_voc", "zoo kind ssdconv does not convert")


def test_unsupported_ops_inside_a_classifier_are_listed_at_once(tmp_path):
    """A classifier symbol with two ops ssdconv has no exact form for (GELU, softsign): both
    named in the one line, nothing written."""
    import mxnet as mx
    from mxnet.gluon import nn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = nn.HybridSequential()
        net.add(nn.Conv2D(8, 3), nn.GELU(), nn.Conv2D(8, 3), nn.Activation("softsign"),
                nn.GlobalAvgPool2D(), nn.Flatten())
        net.initialize()
        net.hybridize()
        net(mx.nd.zeros((1, 3, 32, 32)))
        net.export(str(tmp_path / "cls"))
    out = tmp_path / "out"
    proc = run_cli("convert", str(tmp_path / "cls-symbol.json"), "--input-size", "32,32",
                   "-o", str(out))
    assert_user_error(proc, "2 unsupported node(s)", "LeakyReLU", "softsign")
    assert no_model_files(out)


def test_a_plain_symbol_without_a_size_needs_input_size(tmp_path):
    import mxnet as mx
    from mxnet.gluon import nn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = nn.HybridSequential()
        net.add(nn.Conv2D(8, 3), nn.GlobalAvgPool2D(), nn.Flatten())
        net.initialize()
        net.hybridize()
        net(mx.nd.zeros((1, 3, 32, 32)))
        net.export(str(tmp_path / "cls"))
    out = tmp_path / "out"
    proc = run_cli("convert", str(tmp_path / "cls-symbol.json"), "-o", str(out))
    assert_user_error(proc, "cannot tell the input size", "--input-size H,W")
    assert no_model_files(out)


def test_a_network_whose_output_is_its_input(tmp_path):
    """A symbol whose outputs include the input variable itself: no network output to
    convert there."""
    import mxnet as mx

    data = mx.sym.var("data")
    conv = mx.sym.Convolution(data, num_filter=4, kernel=(3, 3), name="conv")
    mx.sym.Group([conv, data]).save(str(tmp_path / "two-symbol.json"))
    mx.nd.save(str(tmp_path / "two-0000.params"),
               {"arg:conv_weight": mx.nd.ones((4, 3, 3, 3)), "arg:conv_bias": mx.nd.zeros(4)})
    out = tmp_path / "out"
    proc = run_cli("convert", str(tmp_path / "two-symbol.json"), "--input-size", "16,16",
                   "-o", str(out))
    assert_user_error(proc, "output data is the input itself", "cannot be determined")
    assert no_model_files(out)


def test_a_symbol_without_params_for_a_layer(tmp_path):
    import mxnet as mx

    data = mx.sym.var("data")
    conv = mx.sym.Convolution(data, num_filter=4, kernel=(3, 3), name="conv")
    fc = mx.sym.FullyConnected(conv, num_hidden=5, name="fc")
    fc.save(str(tmp_path / "cls-symbol.json"))
    mx.nd.save(str(tmp_path / "cls-0000.params"),
               {"arg:conv_weight": mx.nd.ones((4, 3, 3, 3)), "arg:conv_bias": mx.nd.zeros(4)})
    out = tmp_path / "out"
    proc = run_cli("convert", str(tmp_path / "cls-symbol.json"), "--input-size", "16,16",
                   "-o", str(out))
    assert_user_error(proc, "2 parameter(s) of the symbol are not in the params file",
                      "fc_weight")
    assert no_model_files(out)


def test_missing_params_file(tmp_path):
    proc = run_cli("convert", MODEL, "--params", str(tmp_path / "nope.params"),
                   "-o", str(tmp_path / "out"))
    assert_user_error(proc, "nope.params", "does not exist")


def test_truncated_params_file(tmp_path, exported):
    data = (exported / "gluon.params").read_bytes()
    bad = tmp_path / "truncated.params"
    bad.write_bytes(data[: len(data) // 3])
    out = tmp_path / "out"
    proc = run_cli("convert", MODEL, "--params", str(bad), "-o", str(out))
    assert_user_error(proc, "truncated.params")
    assert no_model_files(out)


def test_other_architecture_params(tmp_path, exported):
    out = tmp_path / "out"
    proc = run_cli("convert", "ssd_512_resnet18_v1_voc", "--params",
                   str(exported / "gluon.params"), "-o", str(out))
    assert_user_error(proc, "gluon.params", "ssd_512_resnet18_v1_voc")
    assert no_model_files(out)


def test_invalid_symbol_json(tmp_path, exported):
    sym = tmp_path / "broken-symbol.json"
    sym.write_text('{"nodes": [ {"op": "null", "name": "data"')
    (tmp_path / "broken-0000.params").write_bytes((exported / "net-0000.params").read_bytes())
    proc = run_cli("convert", str(sym), "-o", str(tmp_path / "out"))
    assert_user_error(proc, "broken-symbol.json", "not a valid MXNet symbol JSON")


def test_unsupported_ops_are_listed_at_once(tmp_path, exported):
    doc = json.loads((exported / "net-symbol.json").read_text())
    acts = [n for n in doc["nodes"] if n["op"] == "Activation"]
    acts[1]["attrs"]["act_type"] = "softrelu"
    acts[4]["attrs"]["act_type"] = "softsign"
    soft = [n for n in doc["nodes"] if n["op"] == "softmax"]
    soft[0].setdefault("attrs", {})["temperature"] = "2.0"
    (tmp_path / "odd-symbol.json").write_text(json.dumps(doc))
    (tmp_path / "odd-0000.params").write_bytes((exported / "net-0000.params").read_bytes())
    out = tmp_path / "out"
    proc = run_cli("convert", str(tmp_path / "odd-symbol.json"), "-o", str(out))
    line = assert_user_error(proc, "3 unsupported", acts[1]["name"], acts[4]["name"],
                             soft[0]["name"], "softrelu", "softsign", "temperature")
    assert "odd-symbol.json" in line
    assert no_model_files(out)


def test_output_path_is_a_file(tmp_path):
    target = tmp_path / "occupied"
    target.write_text("keep me")
    proc = run_cli("convert", MODEL, "--seed", "0", "-o", str(target))
    assert_user_error(proc, str(target), "is a file")
    assert target.read_text() == "keep me"


def test_custom_zoo_model_needs_classes(tmp_path):
    proc = run_cli("convert", "ssd_300_mobilenet0.25_custom", "-o", str(tmp_path / "o"))
    assert_user_error(proc, "--classes")


def test_bad_config_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: ssd_300_mobilenet0.25_voc\nsource_meen: [1, 2, 3]\n")
    proc = run_cli("convert", "--config", str(cfg), "-o", str(tmp_path / "o"))
    assert_user_error(proc, "source_meen", "c.yaml")


def test_usage_errors_are_one_line(tmp_path):
    proc = run_cli("convert", MODEL, "--target", "tensorrt", "-o", str(tmp_path / "o"))
    assert_user_error(proc, "--target", "tensorrt")


def test_missing_image_for_verify(tmp_path):
    out = tmp_path / "o"
    proc = run_cli("convert", MODEL, "-o", str(out), "--verify", str(tmp_path / "nope.jpg"))
    assert_user_error(proc, "nope.jpg", "does not exist")
    assert no_model_files(out)
