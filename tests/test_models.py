"""Every GluonCV zoo SSD architecture (and a custom MobileNetV2 SSD given only as an exported
symbol) converts to caffe-ssd and ncnn and matches Gluon in OpenCV DNN and ncnn, stage by stage:
priors == anchors (1e-6, also in caffe-ssd's int-cast arithmetic), raw loc/conf within
max(1e-4, 3 x Gluon float32's own error) of a float64 reference, detections matched."""

from __future__ import annotations

from pathlib import Path

import pytest
from golden import converted_hashes, golden
from ncnn_rules import ncnnoptimize_leftovers

from ssdconv.convert import Options, convert
from ssdconv.models import load_model
from ssdconv.ssd.anchors import prior_error
from ssdconv.ssd.priorbox import PRIOR_TOL
from ssdconv.verify.check import format_report, run_check

ZOO = [
    ("ssd_300_vgg16_atrous_voc", None),
    ("ssd_512_vgg16_atrous_coco", None),
    ("ssd_512_resnet18_v1_voc", None),
    ("ssd_512_resnet50_v1_coco", None),
    ("ssd_512_resnet101_v2_voc", None),
    ("ssd_512_resnet152_v2_voc", None),
    ("ssd_300_resnet34_v1b_custom", ["person", "dog", "cat", "car"]),
    ("ssd_512_mobilenet1.0_voc", None),
    ("ssd_300_mobilenet0.25_coco", None),
    ("ssd_300_mobilenet1.0_lite_coco", None),
]


REPO = Path(__file__).resolve().parent.parent
GOLDEN = golden()


def _check(conversion, images, each_image: bool = True):
    """The staged check passes in OpenCV and ncnn, comparing detections on every image (or,
    `each_image=False`, over the images)."""
    report = run_check(conversion, images)
    text = format_report(report)
    assert {r.runtime for r in report.results} == {"opencv", "ncnn"}
    assert report.ok, text
    for runtime in ("opencv", "ncnn"):
        matched = [r.det.matched for r in report.results if r.runtime == runtime]
        assert (min(matched) if each_image else sum(matched)) > 0, \
            f"no detection compared in {runtime}:\n{text}"
    return report


FUSABLE_AFTER_CONV = {"BatchNorm", "Scale"}
NO_OPS = {"Noop", "Dropout", "Identity"}


def _ncnn_layers(param_path):
    lines = open(param_path).read().splitlines()
    assert lines[0] == "7767517"
    layers = []
    for line in lines[2:]:
        parts = line.split()
        n_in, n_out = int(parts[2]), int(parts[3])
        layers.append((parts[0], parts[1], parts[4:4 + n_in], parts[4 + n_in:4 + n_in + n_out]))
    return layers


def _nothing_left_to_fuse(conversion):
    """No BatchNorm/Scale reading a convolution's output, no no-op layers, in the ncnn graph,
    and nothing else ncnnoptimize would rewrite (activations are fused)."""
    layers = _ncnn_layers(conversion.files["param"])
    producer = {b: t for t, _, _, outs in layers for b in outs}
    for kind, name, ins, _ in layers:
        assert kind not in NO_OPS, name
        if kind in FUSABLE_AFTER_CONV:
            assert not producer.get(ins[0], "").startswith("Convolution"), name
    assert conversion.manifest["ncnn"]["layer_count"] == len(layers)
    assert not ncnnoptimize_leftovers(conversion.files["param"])


def _caffe_prior_proof(conversion):
    spec = conversion.head.spec
    for level in spec.levels:
        assert prior_error(level, spec.image_h, spec.image_w, int_cast=True) <= PRIOR_TOL


@pytest.mark.slow
@pytest.mark.parametrize("name,classes", ZOO, ids=[n for n, _ in ZOO])
def test_zoo_architecture(name, classes, tmp_path, sample_images):
    model = load_model(name, seed=1, classes=classes)
    conversion = convert(model, tmp_path, Options(targets=("caffe", "ncnn")))
    assert conversion.manifest["approximations"] == []
    _caffe_prior_proof(conversion)
    _nothing_left_to_fuse(conversion)
    _check(conversion, sample_images[:2])


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(GOLDEN))
def test_output_bytes_are_golden(key, tmp_path):
    """Every zoo detector and both demos convert to the bytes recorded in
    tests/data/golden_hashes.json by the command in tests/golden.py, so a refactoring cannot
    change an output unnoticed (and seeded weights are the same on every machine)."""
    assert converted_hashes(key, tmp_path) == GOLDEN[key]


@pytest.mark.slow
def test_custom_mobilenetv2_ssd_from_exported_symbol(tmp_path, sample_images):
    from custom_ssd import CLASSES, export_seeded

    symbol = export_seeded(str(tmp_path))
    model = load_model(symbol, classes=CLASSES)
    conversion = convert(model, tmp_path / "out", Options(targets=("caffe", "ncnn")))
    counts = conversion.graph.op_counts()
    assert counts.get("Clip", 0) >= 30, counts  # ReLU6 kept exact, not replaced by ReLU
    assert "BatchNorm" not in counts
    prototxt = open(conversion.files["prototxt"]).read()
    assert 'type: "ReLU6"' not in prototxt and 'type: "Power"' in prototxt
    _caffe_prior_proof(conversion)
    _nothing_left_to_fuse(conversion)
    _check(conversion, sample_images[:2])


@pytest.mark.slow
def test_set_nms_is_honoured(tmp_path, sample_images):
    from ssdconv.models import _constants
    from ssdconv.mxnet.load import load_block, zoo_net
    from ssdconv.mxnet.seeded import seed_params

    net = zoo_net("ssd_300_mobilenet0.25_voc")
    net.initialize()
    net.set_nms(nms_thresh=0.3, nms_topk=-1, post_nms=50)
    model = load_block(net, (300, 300), name="nms", classes=list(net.classes))
    seed_params(model.graph, 2, _constants(net))
    conversion = convert(model, tmp_path, Options(targets=("caffe", "ncnn")))
    det = conversion.manifest["detection_output"]
    assert det["nms_threshold"] == pytest.approx(0.3)
    assert det["top_k"] == -1 and det["keep_top_k"] == 50
    _check(conversion, sample_images[:1])


@pytest.mark.slow
def test_export_block_with_baked_in_preprocessing(tmp_path, sample_images):
    """GluonCV's export_block(preprocess=True, layout='HWC') symbol: raw HWC pixels in, the
    normalisation read from the graph into the manifest, the converted net NCHW."""
    import mxnet as mx
    from gluoncv.utils import export_block

    from ssdconv.models import _constants
    from ssdconv.mxnet.load import load_block, zoo_net
    from ssdconv.mxnet.seeded import seed_params

    net = zoo_net("ssd_300_mobilenet0.25_voc")
    net.initialize()
    seeded = load_block(net, (300, 300), name="x")
    seed_params(seeded.graph, 5, _constants(net))
    for p in net.collect_params().values():
        p.set_data(mx.nd.array(seeded.graph.params[p.name]))
    export_block(str(tmp_path / "hwc"), net, data_shape=(300, 300, 3), preprocess=True,
                 layout="HWC")
    model = load_model(str(tmp_path / "hwc-symbol.json"))
    assert model.adapter is not None and model.adapter.layout == "NHWC"
    conversion = convert(model, tmp_path / "out", Options(targets=("caffe", "ncnn")))
    m = conversion.manifest
    assert m["input_shape"] == [1, 3, 300, 300] and m["channel_order"] == "BGR"
    assert m["mean"] == pytest.approx([103.53, 116.28, 123.675], abs=1e-3)
    assert m["scale"] == [1.0, 1.0, 1.0]
    _check(conversion, sample_images[:1])


def _seeded_live_net(name: str, size: int, seed: int, minimal_opset: bool = False):
    """A live zoo HybridBlock carrying seeded weights (the API's way in)."""
    import mxnet as mx

    from ssdconv.models import _constants
    from ssdconv.mxnet.load import load_block, zoo_net
    from ssdconv.mxnet.seeded import seed_params

    net = zoo_net(name)
    # before the first forward: GluonCV's box_decode path sets its clip to -1, which the
    # minimal_opset path would then apply as minimum(x, -1)
    net.bbox_decoder._minimal_opset = minimal_opset
    net.initialize()
    seeded = load_block(net, (size, size), name="x")
    seed_params(seeded.graph, seed, _constants(net))
    for p in net.collect_params().values():
        p.set_data(mx.nd.array(seeded.graph.params[p.name]))
    return net


@pytest.mark.slow
def test_python_api_with_a_live_net(tmp_path, sample_images):
    from ssdconv.api import convert_net

    net = _seeded_live_net("ssd_300_mobilenet0.25_voc", 300, 7)
    result = convert_net(net, tmp_path, input_size=(300, 300), name="live",
                         verify_images=sample_images[:1])
    assert result.report is not None and result.report.ok, format_report(result.report)
    assert {"prototxt", "caffemodel", "param", "bin", "json"} <= set(result.files)
    assert result.manifest["classes"][0] == "aeroplane"


@pytest.mark.slow
def test_leaky_relu_backbone(tmp_path, sample_images):
    """A custom SSD whose activations are LeakyReLU(0.1): ReLU negative_slope in both targets."""
    from custom_ssd import load_leaky

    model = load_leaky(str(tmp_path))
    conversion = convert(model, tmp_path / "out", Options(targets=("caffe", "ncnn")))
    assert "negative_slope: 0.1" in open(conversion.files["prototxt"]).read()
    _nothing_left_to_fuse(conversion)
    _check(conversion, sample_images[:1])


@pytest.mark.slow
def test_minimal_opset_decoder_of_pretrained_zoo_models(tmp_path, sample_images):
    """GluonCV builds pretrained zoo SSDs with minimal_opset=True: the box decoder is raw ops
    (split, _mul_scalar, exp, ...), and the stds must be read from them."""
    from ssdconv.mxnet.load import load_block

    net = _seeded_live_net("ssd_512_resnet18_v1_voc", 512, 8, minimal_opset=True)
    model = load_block(net, (512, 512), name="minimal", classes=list(net.classes))
    assert not any(n.op == "_contrib_box_decode" for n in model.graph.nodes)
    conversion = convert(model, tmp_path, Options(targets=("caffe", "ncnn")))
    assert conversion.manifest["detection_output"]["variance"] == pytest.approx(
        [0.1, 0.1, 0.2, 0.2])
    _check(conversion, sample_images[:1])
