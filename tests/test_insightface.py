"""insightface's face-recognition networks (issue 18), built from the published architecture
facts (tests/insightface_models.py, facts.md §12.3) with seeded weights and fix_gamma's stored
gamma != 1 in `fc1`, exported as checkpoints (current and old formats), converted from the
exported symbol, and proven in the real runtimes: `fc1` within the raw bound of float64 MXNet,
the embedding's cosine with float64 reported and >= 0.999999.

The full LResNet100E-IR is `-m sweep` (make test-all); `make test` converts MobileFaceNet and
a one-unit-per-stage IR ResNet of the same structure.
"""

from __future__ import annotations

import math

import insightface_models as im
import numpy as np
import pytest

from ssdconv.convert import Options, convert
from ssdconv.errors import UserError
from ssdconv.models import load_model
from ssdconv.verify.check import format_report, run_check

SIZE = (112, 112)
COSINE = 1 - 1e-6  # the expectation: the embedding's cosine with float64


def _checkpoint(tmp_path, sym, seed, name, batch=4, old=None):
    arg, aux = im.seeded_params(sym, (batch, 3, *SIZE), seed=seed)
    prefix = tmp_path / name
    if old:
        im.save_old_checkpoint(sym, arg, aux, prefix, **old)
    else:
        im.save_checkpoint(sym, arg, aux, prefix)
    return f"{prefix}-symbol.json", (sym, arg, aux)


def _assert_fc1_proven(report, runtimes=("opencv", "ncnn")) -> None:
    text = format_report(report)
    assert report.ok and text.endswith("verdict: PASS"), text
    assert {r.runtime for r in report.results} == set(runtimes), text
    for r in report.results:
        assert list(r.raw.tensors) == ["fc1"], text
        fc1 = r.raw.tensors["fc1"]
        assert fc1.err <= fc1.bound, (r.runtime, r.image, fc1)
        (vectors,) = r.outputs
        assert vectors.figures["fc1"]["cosine"] >= COSINE, (r.runtime, r.image, vectors.text)


@pytest.fixture(scope="module")
def mobilefacenet(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("mfn"), im.mobilefacenet_symbol(), 0, "model")


def test_mobilefacenet_fc1_equals_mxnet(mobilefacenet, tmp_path, sample_images):
    symbol, _ = mobilefacenet
    model = load_model(symbol, input_size=SIZE)
    conversion = convert(model, tmp_path, Options(targets=("caffe", "ncnn")))
    manifest = conversion.manifest
    assert manifest["family"] == "plain"
    assert manifest["outputs"] == [{"name": "fc1", "shape": [1, 128], "mxnet_output": "fc1_output",
                                    "vector": True}]
    assert manifest["blobs"] == {"input": "data", "fc1": "fc1"}
    # the in-graph (x - 127.5) * 0.0078125 read as preprocessing: mean 127.5, and the 1/128
    # and RGB order folded into the first convolution (as for every model): BGR, scale 1
    assert manifest["mean"] == [127.5] * 3 and manifest["scale"] == [1.0] * 3
    assert manifest["channel_order"] == "BGR"
    assert any("--input-arithmetic fold" in n for n in manifest["notes"]), manifest["notes"]
    _assert_fc1_proven(run_check(conversion, sample_images[:3]))


def test_fix_gamma_gamma_is_ignored_as_mxnet_ignores_it(mobilefacenet, tmp_path):
    """fc1's stored gamma is 3e-4 (as in the real MobileFaceNet file); MXNet ignores it under
    fix_gamma, so must the converted model: its fc1 scale is 1/sqrt(var + eps), not 3e-4 times
    that (checked on the IR before the fold, where the BatchNorm's gamma is visible)."""
    symbol, (_, arg, _) = mobilefacenet
    assert abs(float(np.asarray(arg["fc1_gamma"]).mean()) - 3e-4) < 1e-4
    model = load_model(symbol, input_size=SIZE)
    from ssdconv.convert import build_ir

    graph, _, _ = build_ir(model, Options(skip_passes=("fold_batchnorm",)))
    (fc1,) = [n for n in graph.nodes if n.name == "fc1"]
    assert fc1.op == "BatchNorm" and np.all(np.asarray(fc1.weights["gamma"]) == 1.0)
    assert fc1.attrs["eps"] == pytest.approx(2e-5)
    eps = {n.attrs["eps"] for n in graph.nodes if n.op == "BatchNorm" and n.name != "fc1"}
    assert eps == {1e-3}  # MobileFaceNet's body: MXNet's default, not 2e-5


@pytest.mark.parametrize("arith", ["fold", "keep"])
def test_ir_resnet_kept_or_folded_input_arithmetic(arith, tmp_path, sample_images):
    """The IR ResNet's `_copy` -> `_minus_scalar` -> `_mul_scalar` folds into the preprocessing
    (default) or stays in the model (`--input-arithmetic keep`, as ncnn's arcface example
    expects: raw RGB pixels in, no mean or norm), both proven the same way."""
    symbol, _ = _checkpoint(tmp_path, im.iresnet_symbol((1, 1, 1, 1), emb_size=512), 1, "r")
    model = load_model(symbol, input_size=SIZE, input_arithmetic=arith)
    conversion = convert(model, tmp_path / "out", Options(targets=("caffe", "ncnn", "onnx")))
    manifest = conversion.manifest
    if arith == "keep":
        assert manifest["mean"] == [0.0] * 3 and manifest["scale"] == [1.0] * 3
        assert any("--input-arithmetic keep" in n for n in manifest["notes"])
        assert conversion.graph.op_counts().get("Power", 0) >= 2  # the arithmetic, as layers
    else:
        assert manifest["mean"] == [127.5] * 3
    report = run_check(conversion, sample_images[:2])
    _assert_fc1_proven(report, ("opencv", "ncnn", "onnxruntime", "openvino"))


def test_ir_resnet_in_ncnn_as_its_arcface_example_runs_it(tmp_path, sample_images):
    """What ncnn's examples/arcface.cpp does with the model (input `data` from raw RGB pixels,
    `ex.extract("fc1")`), done with the ncnn package on the kept-arithmetic conversion, equals
    float64 MXNet on the same pixels."""
    import cv2
    import ncnn

    sym = im.iresnet_symbol((1, 1, 1, 1), emb_size=512)
    symbol, (_, arg, aux) = _checkpoint(tmp_path, sym, 2, "arc")
    model = load_model(symbol, input_size=SIZE, input_arithmetic="keep")
    conversion = convert(model, tmp_path / "out", Options(targets=("ncnn",)), name="arcfaceresnet")
    bgr = cv2.resize(cv2.imread(sample_images[0]), SIZE, interpolation=cv2.INTER_LINEAR)
    net = ncnn.Net()
    net.opt.use_fp16_packed = net.opt.use_fp16_storage = net.opt.use_fp16_arithmetic = False
    assert net.load_param(conversion.files["param"]) == 0
    assert net.load_model(conversion.files["bin"]) == 0
    ex = net.create_extractor()
    ex.input("data", ncnn.Mat.from_pixels(bgr, ncnn.Mat.PixelType.PIXEL_BGR2RGB, *SIZE))
    rc, out = ex.extract("fc1")
    assert rc == 0
    got = np.array(out).reshape(-1).astype(np.float64)
    rgb = bgr[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float64)
    ref = im.forward(sym, {k: np.asarray(v, np.float64) for k, v in arg.items()},
                     {k: np.asarray(v, np.float64) for k, v in aux.items()}, rgb).reshape(-1)
    ref32 = im.forward(sym, arg, aux, rgb.astype(np.float32)).reshape(-1)
    own = float(np.abs(ref32 - ref).max())
    assert float(np.abs(got - ref).max()) <= max(3 * own, 1e-4 * min(1.0, np.abs(ref).max()))
    cos = float(got @ ref / (np.linalg.norm(got) * np.linalg.norm(ref)))
    assert cos >= COSINE


@pytest.mark.parametrize("old", [
    {"json_form": "0.8", "ndarray_version": 0, "old_op_names": True},
    {"json_form": "1.3", "ndarray_version": 1},
])
def test_old_checkpoints_convert_as_current_ones(old, tmp_path, sample_images):
    """A symbol JSON as MXNet 0.8 or 1.3 wrote it, with a legacy NDArray params file: the same
    conversion, proven the same way."""
    symbol, _ = _checkpoint(tmp_path, im.mobilefacenet_symbol(), 3, "old", old=old)
    conversion = convert(load_model(symbol, input_size=SIZE), tmp_path / "out",
                         Options(targets=("caffe", "ncnn")))
    assert conversion.manifest["blobs"]["fc1"] == "fc1"
    _assert_fc1_proven(run_check(conversion, sample_images[:2]))


def test_a_training_checkpoint_with_softmax_output(tmp_path, sample_images):
    """A classifier saved for training ends in SoftmaxOutput with an unbound `softmax_label`:
    at inference it is the softmax, and the label input is not an input of the network."""
    symbol, _ = _checkpoint(tmp_path, im.classifier_symbol(10, softmax_output=True), 4, "cls")
    conversion = convert(load_model(symbol, input_size=(32, 32)), tmp_path / "out",
                         Options(targets=("caffe", "ncnn")))
    (output,) = conversion.manifest["outputs"]
    assert output["shape"] == [1, 10]
    report = run_check(conversion, sample_images[:2])
    assert report.ok, format_report(report)


def test_a_one_channel_network_reads_its_channel_count(tmp_path):
    """A grayscale network: the channel count comes from its first convolution's weights."""
    sym = im.classifier_symbol(10, softmax_output=False)
    arg, aux = im.seeded_params(sym, (4, 1, 32, 32), seed=5)
    prefix = tmp_path / "gray"
    im.save_checkpoint(sym, arg, aux, prefix)
    model = load_model(f"{prefix}-symbol.json", input_size=(32, 32))
    assert model.graph.input_shape == (1, 1, 32, 32)
    conversion = convert(model, tmp_path / "out", Options(targets=("caffe", "ncnn")))
    assert conversion.manifest["input_shape"] == [1, 1, 32, 32]
    with pytest.raises(UserError, match="reads 1 input channel"):
        run_check(conversion, [])


@pytest.mark.sweep
def test_lresnet100e_ir_fc1_equals_mxnet(tmp_path, sample_images):
    """The full LResNet100E-IR (units 3, 13, 30, 3; 65.1 M parameters; 512-D fc1)."""
    sym = im.iresnet_symbol()
    symbol, _ = _checkpoint(tmp_path, sym, 6, "model-r100")
    conversion = convert(load_model(symbol, input_size=SIZE), tmp_path / "out",
                         Options(targets=("caffe", "ncnn")))
    assert conversion.manifest["outputs"][0]["shape"] == [1, 512]
    assert math.prod(conversion.manifest["input_shape"]) == 3 * 112 * 112
    _assert_fc1_proven(run_check(conversion, sample_images[:2]))
