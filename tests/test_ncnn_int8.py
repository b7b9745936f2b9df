"""--ncnn-int8: int8 ncnn models in ncnn2int8's format, calibrated as ncnn2table does (KL).

The files are read back here the way ncnn's `load_model` reads them (not through ssdconv's
writer), run in the ncnn package, and checked against what ncnn's own tools define: weights
within one quantisation step, weight scales 127/max|w| per output channel (31/max|w| for 3x3
stride 1 convolutions), input scales 127 / ((T + 0.5) * absmax / 2048) with T the clip point of
least KL divergence, requantized blobs holding int8 codes (so the int8 kernels really run), and
the demo model's mAP within 0.01 of Gluon on held-out images. With NCNN_TOOLS naming a folder
with ncnn's own ncnn2table and ncnn2int8, the table and the .bin are compared with theirs.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_bad_inputs import assert_user_error, no_model_files, run_cli
from test_ncnn_backend import conv_node, load_net, make_graph, pool_attrs, to_mat

from ssdconv import shipped
from ssdconv.backend.ncnn import calibrate
from ssdconv.backend.ncnn.calibrate import NcnnCalibration
from ssdconv.backend.ncnn.emit import write_ncnn
from ssdconv.convert import Options, convert
from ssdconv.demo.shapes_dataset import CLASSES, make_sample, write_split
from ssdconv.errors import UserError
from ssdconv.ir.graph import Node
from ssdconv.ir.preprocess import Preprocess
from ssdconv.models import load_model
from ssdconv.verify.accuracy import evaluate
from ssdconv.verify.check import format_report, run_check

DEMO = str(shipped.DEMO_SYMBOL)
INT8_FLAG, FP32_FLAG = 0x000D4B38, 0
WEIGHTLESS = {"Input", "Split", "Eltwise", "Concat", "Permute", "Flatten", "Reshape", "Softmax",
              "PriorBox", "DetectionOutput", "Pooling", "ReLU", "Clip"}
NCNN_TOOLS = os.environ.get("NCNN_TOOLS")  # a folder holding ncnn2table and ncnn2int8

# ----------------------------------------------------------------------------- the format


def read_layers(param_path, bin_path) -> dict[str, dict]:
    """Every Convolution/ConvolutionDepthWise of a model as ncnn's load_model reads it:
    {name: {type, params, weight (int8 or float32), bias, weight_scales, input_scale,
    top_scale}}; any other layer with weights fails (the models here have none)."""
    lines = Path(param_path).read_text().splitlines()
    data = Path(bin_path).read_bytes()
    pos = 0

    def take(n: int, dtype) -> np.ndarray:
        nonlocal pos
        size = n * np.dtype(dtype).itemsize
        out = np.frombuffer(data, dtype, n, pos)
        pos += size + (-size % 4)
        return out

    layers = {}
    for line in lines[2:]:
        parts = line.split()
        kind, name, n_in, n_out = parts[0], parts[1], int(parts[2]), int(parts[3])
        params = dict(p.split("=", 1) for p in parts[4 + n_in + n_out:])
        if kind in WEIGHTLESS:
            continue
        assert kind in ("Convolution", "ConvolutionDepthWise"), kind
        num_output, size = int(params["0"]), int(params["6"])
        (flag,) = take(1, "<u4")
        weight = take(size, "<i1" if flag == INT8_FLAG else "<f4")
        assert flag in (INT8_FLAG, FP32_FLAG), hex(flag)
        layer = {"type": kind, "params": params, "weight": weight,
                 "bias": take(num_output, "<f4") if params.get("5") == "1" else None}
        term = int(params.get("8", "0"))
        if term:
            groups = int(params["7"]) if kind == "ConvolutionDepthWise" else num_output
            layer["weight_scales"] = take(groups, "<f4")
            layer["input_scale"] = float(take(1, "<f4")[0])
            layer["top_scale"] = float(take(1, "<f4")[0]) if term > 100 else None
        layers[name] = layer
    assert pos == len(data), "the .bin holds more than the layers load"
    return layers


def write_images(directory: Path, count: int, size: int, seed: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        img = cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (3, 3), 0)
        cv2.imwrite(str(directory / f"img_{i:03d}.png"), img)
    return directory


# a small graph with every int8 case: a 3x3 stride 1 conv (6-bit weights), a depthwise conv
# (scales per group), a 1x1 conv read through a Split by two convs, convs read by a float layer
def small_graph():
    rng = np.random.default_rng(11)
    nodes = [
        conv_node(rng, "c1", "data", 3, 16),
        Node("r1", "ReLU", ["c1"], ["r1"], {"negative_slope": 0.0}),
        conv_node(rng, "dw", "r1", 16, 16, group=16),
        Node("r2", "Clip", ["dw"], ["r2"], {"min": 0.0, "max": 6.0}),
        conv_node(rng, "c2", "r2", 16, 16, k=1, p=0),
        conv_node(rng, "c3", "c2", 16, 8, s=2),
        conv_node(rng, "c4", "c2", 16, 8, k=1, p=0, s=2),
        Node("sum", "Eltwise", ["c3", "c4"], ["sum"], {"operation": "sum", "coeffs": ()}),
    ]
    g = make_graph({"data": (1, 3, 24, 24)}, nodes, ["sum"])
    g.preprocess = Preprocess("RGB", (127.5, 127.5, 127.5), (1 / 64, 1 / 64, 1 / 64))
    return g


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """(graph, float info, int8 info, calibration images, calibration) of the small graph."""
    d = tmp_path_factory.mktemp("small")
    g = small_graph()
    images = sorted(str(p) for p in write_images(d / "calib", 12, 24, 0).iterdir())
    cal = NcnnCalibration(images, g.preprocess.as_dict(), "data", g.inputs["data"])
    fp32 = write_ncnn(g, d, "fp32")
    int8 = write_ncnn(g, d, "int8", int8=cal)
    return g, fp32, int8, images, cal


def test_format_is_ncnn2int8s(small):
    _, fp32, int8, _, _ = small
    f, q = read_layers(fp32["param"], fp32["bin"]), read_layers(int8["param"], int8["bin"])
    terms = {n: int(x["params"]["8"]) for n, x in q.items()}
    # 2: Convolution, 1: ConvolutionDepthWise, +100: output requantized for the next conv
    assert terms == {"c1": 102, "dw": 101, "c2": 102, "c3": 2, "c4": 2}
    assert q["c2"]["top_scale"] == q["c3"]["input_scale"] == q["c4"]["input_scale"]
    assert q["c1"]["top_scale"] == q["dw"]["input_scale"]
    for name, layer in q.items():
        assert layer["weight"].dtype == np.int8 and np.abs(layer["weight"]).max() <= 127
        assert np.array_equal(layer["bias"], f[name]["bias"])  # bias stays float32
        assert {k: v for k, v in layer["params"].items() if k != "8"} == f[name]["params"]
    (approx,) = int8["approximations"]
    assert approx["where"] == "5 of 5 Convolution/ConvolutionDepthWise layers"
    assert approx["float_layers"] == {} and approx["requantized_layers"] == 3
    assert approx["calibration"]["method"].startswith("kl") and \
        approx["calibration"]["images"] == 12


def test_weights_round_trip_within_one_step(small):
    _, fp32, int8, _, _ = small
    f, q = read_layers(fp32["param"], fp32["bin"]), read_layers(int8["param"], int8["bin"])
    for name, layer in q.items():
        scales = layer["weight_scales"].astype(np.float64)
        w = f[name]["weight"].astype(np.float64).reshape(len(scales), -1)
        back = layer["weight"].astype(np.float64).reshape(len(scales), -1) / scales[:, None]
        step = 1 / scales[:, None]
        assert np.all(np.abs(back - w) <= 0.5 * step * (1 + 1e-6)), name  # rounding: half a step
        assert np.abs(back - w).max() > 0  # really quantised


def test_weight_scales_as_ncnn2table_defines_them(small):
    _, fp32, int8, _, _ = small
    f, q = read_layers(fp32["param"], fp32["bin"]), read_layers(int8["param"], int8["bin"])
    for name, layer in q.items():
        groups = len(layer["weight_scales"])
        absmax = np.abs(f[name]["weight"].reshape(groups, -1)).max(axis=1)
        p = layer["params"]
        winograd = layer["type"] == "Convolution" and p["1"] == "3" and p["3"] == "1"
        top = 31 if winograd else 127
        assert np.allclose(layer["weight_scales"], top / absmax, rtol=1e-6), name
        codes = np.abs(layer["weight"].reshape(groups, -1)).max(axis=1)
        assert np.all(codes == top), name  # the largest weight of each channel hits the top
    assert len(q["dw"]["weight_scales"]) == 16  # per group
    assert int(q["c1"]["params"]["1"]) == 3 and np.abs(q["c1"]["weight"]).max() == 31


def kl_literal(hist: np.ndarray) -> int:
    """ncnn2table's KL search transcribed loop for loop (floor/ceil bin overlaps), float64."""
    p = hist / hist.sum()
    best, best_t = math.inf, 128
    for t in range(128, 2048):
        clip = p[:t] + 1e-4
        clip[t - 1] += p[t:].sum()
        r = t / 128
        q = np.zeros(128)
        spans = []
        for j in range(128):
            start, end = j * r, (j + 1) * r
            lu, ls = math.ceil(start), math.ceil(start) - start
            rl, rs = math.floor(end), end - math.floor(end)
            spans.append((lu, ls, rl, rs))
            q[j] = (ls * p[lu - 1] if ls > 0 else 0) + (rs * p[rl] if rs > 0 and rl < t else 0)
            q[j] = (q[j] + p[lu:min(rl, t)].sum()) / r
        expand = np.full(t, 1e-4)
        for j, (lu, ls, rl, rs) in enumerate(spans):
            if ls > 0:
                expand[lu - 1] += ls * q[j]
            if rs > 0 and rl < t:
                expand[rl] += rs * q[j]
            expand[lu:min(rl, t)] += q[j]
        kl = float((clip * np.log(clip / expand)).sum())
        if kl < best:
            best, best_t = kl, t
    return best_t


def test_input_scales_as_ncnn2table_defines_them(small):
    """For two layers: absmax and the |x| histogram collected here from the float model, the
    clip point from the literal KL search, and the scale 127 / ((T + 0.5) * absmax / 2048)."""
    g, fp32, int8, images, cal = small
    q = read_layers(int8["param"], int8["bin"])
    net = load_net(fp32)
    blobs = {"c1": "data", "c3": "c2"}  # c3 reads c2 through a Split: the same values
    values = {b: [] for b in blobs.values()}
    for x in cal.inputs():
        ex = net.create_extractor()
        ex.input("data", to_mat(x[None]))
        for b in values:
            values[b].append(np.array(ex.extract(b)[1]).ravel())
    for layer, blob in blobs.items():
        v = np.abs(np.concatenate(values[blob]))
        absmax = v.max()
        nonzero = v[v != 0]
        hist = np.bincount(np.minimum((nonzero / absmax * 2048).astype(int), 2047), minlength=2048)
        t = kl_literal(hist)
        assert calibrate.kl_threshold_bins(hist) == t
        expected = 127 / ((t + 0.5) * absmax / 2048)
        assert q[layer]["input_scale"] == pytest.approx(expected, rel=1e-5), layer


def test_int8_kernels_really_run(small):
    """c1 hands dw its output as int8 codes: extracting it gives integers in [-127, 127], equal
    to the integer arithmetic of ncnn's int8 convolution done here in numpy; the final float
    output is close to the float model's but not equal."""
    g, fp32, int8, images, cal = small
    q = read_layers(int8["param"], int8["bin"])["c1"]
    x = next(iter(cal.inputs()))
    net = load_net(int8)
    assert net.opt.use_int8_inference  # ncnn's default, untouched
    ex = net.create_extractor()
    ex.input("data", to_mat(x[None]))
    codes = np.array(ex.extract("r1")[1])
    out = np.array(ex.extract("sum")[1])
    assert np.array_equal(codes, np.round(codes)) and np.abs(codes).max() <= 127

    def to_int8(v):
        v = np.asarray(v, np.float32).astype(np.float64)
        return np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5), -127, 127)

    xi = np.pad(to_int8(x * np.float32(q["input_scale"])), ((0, 0), (1, 1), (1, 1)))
    w = q["weight"].astype(np.int64).reshape(16, 3, 3, 3)
    acc = np.zeros((16, 24, 24), np.int64)
    for dy in range(3):
        for dx in range(3):
            acc += np.einsum("oc,chw->ohw", w[:, :, dy, dx], xi[:, dy:dy + 24, dx:dx + 24]
                             .astype(np.int64))
    real = acc / (q["input_scale"] * q["weight_scales"][:, None, None]) + q["bias"][:, None, None]
    ref = to_int8(np.maximum(real, 0) * np.float32(q["top_scale"]))
    assert np.mean(codes == ref) > 0.99 and np.abs(codes - ref).max() <= 1

    ex = load_net(fp32).create_extractor()
    ex.input("data", to_mat(x[None]))
    float_out = np.array(ex.extract("sum")[1])
    rel = np.sqrt(np.mean((out - float_out) ** 2)) / np.std(float_out)
    assert 0 < rel < 0.1, rel


def test_a_blob_that_is_always_zero_keeps_its_layer_float(tmp_path):
    rng = np.random.default_rng(3)
    dead = conv_node(rng, "dead", "data", 3, 4, bias=False)
    dead.weights["weight"][:] = 0
    nodes = [dead, conv_node(rng, "next", "dead", 4, 4),
             Node("out", "Pool", ["next"], ["out"], pool_attrs(2, 2, 0))]
    g = make_graph({"data": (1, 3, 8, 8)}, nodes, ["out"])
    images = sorted(str(p) for p in write_images(tmp_path / "c", 3, 8, 1).iterdir())
    cal = NcnnCalibration(images, {"channel_order": "RGB", "mean": [0, 0, 0],
                                   "scale": [1, 1, 1]}, "data", (1, 3, 8, 8))
    info = write_ncnn(g, tmp_path, "m", int8=cal)
    (approx,) = info["approximations"]
    assert approx["float_layers"] == {"next": "its input was zero on every calibration image"}
    q = read_layers(info["param"], info["bin"])
    assert q["dead"]["params"]["8"] == "2" and "8" not in q["next"]["params"]
    assert (q["dead"]["weight_scales"] == 0).all()  # ncnn reads scale 0 as "output = bias"
    ex = load_net(info).create_extractor()
    ex.input("data", to_mat(np.ones((1, 3, 8, 8), np.float32)))
    assert np.array(ex.extract("dead")[1]).max() == 0


def test_a_conv_whose_output_is_a_graph_output_stays_float(tmp_path):
    """A raw tensor users extract (a YOLOv3's prediction conv) carries no int8 error of its own
    layer: that conv stays float32 and computes on the int8 layer's dequantised output."""
    rng = np.random.default_rng(5)
    nodes = [conv_node(rng, "body", "data", 3, 8), conv_node(rng, "pred", "body", 8, 6, k=1, p=0)]
    g = make_graph({"data": (1, 3, 8, 8)}, nodes, ["pred"])
    images = sorted(str(p) for p in write_images(tmp_path / "c", 3, 8, 2).iterdir())
    cal = NcnnCalibration(images, {"channel_order": "RGB", "mean": [0, 0, 0],
                                   "scale": [1 / 255] * 3}, "data", (1, 3, 8, 8))
    info = write_ncnn(g, tmp_path, "m", int8=cal)
    (approx,) = info["approximations"]
    assert approx["float_layers"] == {"pred": "its output pred is a graph output, extracted as "
                                              "float"}
    assert approx["where"] == "1 of 2 Convolution/ConvolutionDepthWise layers"
    q = read_layers(info["param"], info["bin"])
    assert q["body"]["params"]["8"] == "2" and q["body"]["weight"].dtype == np.int8
    assert "8" not in q["pred"]["params"] and q["pred"]["weight"].dtype == np.float32
    assert Path(info["param"]).with_suffix(".table").read_text().split()[0] == "body_param_0"
    assert "pred" not in Path(info["param"]).with_suffix(".table").read_text()
    ex = load_net(info).create_extractor()
    x = np.random.default_rng(0).random((1, 3, 8, 8), np.float32)
    ex.input("data", to_mat(x))
    body = np.array(ex.extract("body")[1], np.float64)
    pred = np.array(ex.extract("pred")[1], np.float64)
    w = nodes[1].weights
    ref = np.einsum("oc,chw->ohw", w["weight"][:, :, 0, 0], body) + w["bias"][:, None, None]
    assert np.abs(pred - ref).max() < 1e-4 * np.abs(ref).max()  # float arithmetic, not int8


# ----------------------------------------------------------------------------- the demo model


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo model converted to ncnn float and int8 (64 generated training images)."""
    d = tmp_path_factory.mktemp("demo")
    write_split("train", 64, str(d / "calib"))
    model = load_model(DEMO, classes=list(CLASSES))
    plain = Options(targets=("ncnn",))
    fp32 = convert(model, d / "fp32", plain, name="demo")
    int8 = convert(model, d / "int8", Options(targets=("ncnn",), ncnn_int8=(str(d / "calib"),)),
                   name="demo")
    return model, fp32, int8, d / "calib"


def test_demo_manifest_lists_the_approximation(demo):
    _, fp32, int8, calib = demo
    m = int8.manifest
    assert m["ncnn"]["int8"] is True and fp32.manifest["ncnn"]["int8"] is False
    (approx,) = m["approximations"]
    assert approx["runtimes"] == ["ncnn"]
    assert approx["where"] == "68 of 68 Convolution/ConvolutionDepthWise layers"
    assert approx["float_layers"] == {}
    assert approx["calibration"] == {
        "method": "kl (ncnn2table's default)", "images": 64, "sources": [str(calib)],
        "histogram_bins": 2048, "preprocessing": approx["calibration"]["preprocessing"]}
    assert sorted(m["files"]) == ["demo.bin", "demo.json", "demo.param", "demo.table"]
    assert json.loads(Path(int8.files["json"]).read_text()) == m
    q = read_layers(int8.files["param"], int8.files["bin"])
    assert len(q) == 68 and all(x["weight"].dtype == np.int8 for x in q.values())
    # the table lists exactly the model's scales (ncnn2table's format)
    table = dict(line.split(" ", 1) for line in Path(int8.files["table"]).read_text()
                 .splitlines())
    for name, layer in q.items():
        assert float(table[name]) == pytest.approx(layer["input_scale"], rel=1e-7)
        ws = np.array(table[f"{name}_param_0"].split(), np.float32)
        assert np.array_equal(ws, layer["weight_scales"])
    assert os.path.getsize(int8.files["bin"]) < 0.3 * os.path.getsize(fp32.files["bin"])


def test_demo_verify_reports_int8_as_informational(demo):
    _, _, int8, _ = demo
    report = run_check(int8, [str(p) for p in sorted((shipped.SAMPLES_DIR / "scenes")
                                                     .glob("*.png"))[:1]])
    (res,) = report.results
    assert res.runtime == "ncnn-int8" and res.informational and not res.exact and report.ok
    assert 1e-3 < res.raw.tensors["loc"].err < 3  # a measured cost, and a bounded one
    text = format_report(report)
    assert "[info] ncnn-int8" in text and "runs its convolutions in int8" in text
    # nothing in this report was judged exactly, and the verdict says so
    assert text.splitlines()[-1].startswith("verdict: PASS, informational only: ")


@pytest.mark.slow
def test_demo_map_in_int8_is_within_001_of_gluon():
    """60 held-out test images; calibration on 64 training images (never the test split)."""
    model = load_model(DEMO, classes=list(CLASSES))
    result = evaluate(model, lambda i: make_sample("test", i), 60,
                      runtimes=("gluon", "ncnn-int8"),
                      calibration=lambda i: make_sample("train", i), calibration_count=64)
    maps = result.maps
    assert maps["gluon"] >= 0.7, maps
    assert abs(maps["ncnn-int8"] - maps["gluon"]) <= 0.01, maps


def test_demo_yolov3_keeps_its_three_prediction_convs_float(tmp_path):
    """The raw outputs the check compares (manifest `blobs.outputs`) come out of float convs;
    every other convolution is int8, and verify reports the cost as informational."""
    write_split("train", 16, str(tmp_path / "calib"))
    model = load_model(str(shipped.DEMO_YOLO_SYMBOL), classes=list(CLASSES))
    conv = convert(model, tmp_path / "int8",
                   Options(targets=("ncnn",), ncnn_int8=(str(tmp_path / "calib"),)))
    m = conv.manifest
    (approx,) = m["approximations"]
    outputs = m["blobs"]["outputs"]
    assert approx["float_layers"] == {
        b: f"its output {b} is a graph output, extracted as float" for b in outputs}
    convs = {parts[1]: parts for parts in map(str.split, Path(conv.files["param"]).read_text()
                                              .splitlines()[2:])
             if parts[0] in ("Convolution", "ConvolutionDepthWise")}
    assert {n for n, parts in convs.items() if not any(p.startswith("8=") for p in parts)} \
        == set(outputs)
    assert approx["where"] == f"{len(convs) - 3} of {len(convs)} Convolution/" \
                              "ConvolutionDepthWise layers"
    report = run_check(conv, [str(sorted((shipped.SAMPLES_DIR / "scenes").glob("*.png"))[0])])
    (res,) = report.results
    assert res.runtime == "ncnn-int8" and res.informational and report.ok
    errs = [res.raw.tensors[f"outputs.{i}"].err for i in range(3)]
    assert all(1e-4 < e < 3 for e in errs), errs  # a measured cost, and a bounded one


@pytest.mark.skipif(not NCNN_TOOLS, reason="NCNN_TOOLS (ncnn's ncnn2table, ncnn2int8) not set")
def test_same_table_and_bin_as_ncnns_own_tools(demo, tmp_path):
    """ncnn2table on the float model and the same images gives our input and weight scales (to
    its 6 printed decimals); ncnn2int8 given our table writes our .bin byte for byte."""
    _, fp32, int8, calib = demo
    listing = tmp_path / "images.txt"
    listing.write_text("\n".join(sorted(str(p) for p in calib.glob("*.png"))) + "\n")
    m = fp32.manifest
    tool = Path(NCNN_TOOLS)
    subprocess.run([str(tool / "ncnn2table"), fp32.files["param"], fp32.files["bin"],
                    str(listing), str(tmp_path / "ncnn.table"),
                    f"mean=[{','.join(map(str, m['mean']))}]",
                    f"norm=[{','.join(map(str, m['scale']))}]", "shape=[256,256,3]",
                    f"pixel={m['channel_order']}", "thread=1", "method=kl"],
                   check=True, capture_output=True)
    theirs = dict(line.split(" ", 1) for line in (tmp_path / "ncnn.table").read_text()
                  .splitlines())
    ours = dict(line.split(" ", 1) for line in Path(int8.files["table"]).read_text()
                .splitlines())
    assert set(theirs) == set(ours)
    for key in ours:
        a, b = np.array(ours[key].split(), float), np.array(theirs[key].split(), float)
        assert np.allclose(a, b, rtol=2e-6, atol=1e-6), key
    subprocess.run([str(tool / "ncnn2int8"), fp32.files["param"], fp32.files["bin"],
                    str(tmp_path / "t.param"), str(tmp_path / "t.bin"), int8.files["table"]],
                   check=True, capture_output=True)
    assert (tmp_path / "t.bin").read_bytes() == Path(int8.files["bin"]).read_bytes()


# ----------------------------------------------------------------------------- bad CALIB


def test_missing_calibration_folder_is_one_line(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("convert", DEMO, "--classes", ",".join(CLASSES), "--target", "ncnn",
                   "--ncnn-int8", str(tmp_path / "nowhere"), "-o", str(out))
    assert_user_error(proc, "--ncnn-int8", "nowhere", "does not exist")
    assert no_model_files(out)


def test_calibration_folder_without_images_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    out = tmp_path / "out"
    proc = run_cli("convert", DEMO, "--classes", ",".join(CLASSES), "--target", "ncnn",
                   "--ncnn-int8", str(tmp_path / "empty"), "-o", str(out))
    assert_user_error(proc, "no images found", "empty")
    assert no_model_files(out)


def test_int8_without_the_ncnn_target_is_one_line(tmp_path):
    images = write_images(tmp_path / "c", 1, 16, 0)
    proc = run_cli("convert", DEMO, "--classes", ",".join(CLASSES), "--target", "caffe",
                   "--ncnn-int8", str(images), "-o", str(tmp_path / "out"))
    assert_user_error(proc, "--ncnn-int8", "--target ncnn")


def test_bad_calibration_values_in_presets_and_the_api(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text(f"model: {DEMO}\nncnn_int8: {tmp_path / 'gone'}\n")
    proc = run_cli("convert", "--config", str(preset), "-o", str(tmp_path / "out"))
    assert_user_error(proc, "ncnn_int8", "gone", "does not exist")
    with pytest.raises(UserError, match="option ncnn_int8"):
        Options(targets=("ncnn",), ncnn_int8=(42,)).checked()
