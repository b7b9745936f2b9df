"""The detector-family seam: families come from the registration, are tried in its order,
and a second family is a module of its own plus a registration (tests/toy_family.py converts
a classifier's pooled features through `convert` without touching any SSD or shared file, and
its head, no detector, is proven by the same `run_check` as a detector's)."""

from __future__ import annotations

import warnings

import pytest
from corrupt import corrupt_convolution

from ssdconv.convert import Options, convert
from ssdconv.errors import UserError
from ssdconv.family import families, recognise, registered, zoo_family, zoo_names
from ssdconv.mxnet.load import load_block
from ssdconv.verify.check import format_report, run_check


@pytest.fixture
def with_toy(monkeypatch):
    """tests/toy_family.py registered after SSD, the way a real family registers."""
    monkeypatch.setattr(registered, "FAMILY_MODULES", (*registered.FAMILY_MODULES, "toy_family"))


def _classifier(size=64):
    """GluonCV's MobileNet 0.25 classifier: a backbone, a global pooling, no detector head.

    Initialised so its features are of order 1, as a trained net's (MXNet's default uniform
    init shrinks them to ~1e-25 at the pooling: the raw stage's absolute floor would then pass
    any runtime output near zero), seeded, so every run checks the same numbers."""
    import mxnet as mx
    from gluoncv import model_zoo

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = model_zoo.get_model("mobilenet0.25", pretrained=False)
        mx.random.seed(0)
        net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    return load_block(net, (size, size), name="cls")


def test_families_come_from_the_registration():
    assert [f.name for f in families()] == ["yolov3", "ssd", "retinaface", "plain"]  # plain last


def test_zoo_names_are_the_builders_of_the_families():
    from gluoncv.model_zoo.model_zoo import _models

    names = zoo_names()
    # GluonCV's SSD and YOLOv3 builders, by their module (the SSDs: the list the old `ssd_`
    # prefix rule gave), and the classifiers of the modules the plain family lists
    detectors = sorted(n for n in _models if n.startswith(("ssd_", "yolo3_"))
                       and not n.endswith("_int8"))
    assert [n for n in names if zoo_family(n).name != "plain"] == detectors
    assert zoo_family("ssd_300_mobilenet0.25_voc").name == "ssd"
    assert zoo_family("yolo3_darknet53_voc").name == "yolov3"
    assert zoo_family("ssd_300_vgg16_atrous_voc_int8") is None  # quantised: no family builds it
    assert zoo_family("mobilenet0.25").name == "plain"
    assert zoo_family("no_such_model") is None
    assert zoo_family("fcn_resnet50_voc") is None  # segmentation: no family claims it


def _conv_net():
    """Two convolutions: neither an SSD head nor a global pooling."""
    from mxnet import gluon

    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Conv2D(8, 3, padding=1, activation="relu"), gluon.nn.Conv2D(4, 1))
    net.initialize()
    return load_block(net, (16, 16), name="convs")


def test_nothing_recognised_names_what_each_family_looked_for(with_toy, monkeypatch):
    """Without the fallback family (plain networks) registered, a graph no family recognises
    is refused naming what each looked for."""
    monkeypatch.setattr(registered, "FALLBACK_MODULE", None)
    assert recognise(_classifier().graph).family.name == "toy"  # SSD: not mine; toy: mine
    with pytest.raises(UserError) as err:
        recognise(_conv_net().graph)
    text = str(err.value)
    assert text.startswith("convs: no family recognises it")
    assert "an SSD detector: no class predictions" in text, text
    assert "a toy feature extractor: no global pooling" in text, text


def test_a_classifier_is_a_plain_network():
    """No detector family recognises a classifier: the fallback takes it, outputs by name."""
    head = recognise(_classifier().graph)
    assert head.family.name == "plain"
    assert list(head.raw_outputs()) == [head.source.nodes[head.outputs[0][0]].name]


def test_a_second_family_registers_its_zoo_and_converts_through_the_seam(with_toy, tmp_path):
    assert "mobilenet0.25" in zoo_names() and zoo_family("mobilenet0.25").name == "toy"
    assert zoo_family("ssd_300_mobilenet0.25_voc").name == "ssd"  # tried first, still SSD's
    model = _classifier()
    conversion = convert(model, tmp_path, Options(targets=("caffe", "ncnn")))
    manifest = conversion.manifest
    assert manifest["family"] == "toy" and manifest["toy"] == {"pooled": conversion.head.pool.name}
    assert manifest["blobs"] == {"input": "data", "features": "features"}
    # no detector: nothing in the manifest says what detection rows mean
    assert "classes" not in manifest and "label_offset" not in manifest
    assert {"prototxt", "caffemodel", "param", "bin", "json"} <= set(conversion.files)


@pytest.fixture
def toy_conversion(with_toy, tmp_path):
    return convert(_classifier(), tmp_path / "toy", Options(targets=("caffe", "ncnn", "onnx")))


def test_a_head_that_is_no_detector_is_proven_by_run_check(toy_conversion, sample_images,
                                                            tmp_path):
    """The toy family's conversion goes through the same staged check as a detector's: its
    raw tensor in OpenCV, ncnn, onnxruntime and OpenVINO against float64 Gluon, bounded by
    Gluon float32's own error; no detection stage, no overlay (nothing to draw)."""
    report = run_check(toy_conversion, sample_images[:2], overlay_dir=str(tmp_path / "ov"))
    text = format_report(report)
    assert report.ok and text.endswith("verdict: PASS"), text
    assert {r.runtime for r in report.results} == {"opencv", "ncnn", "onnxruntime", "openvino"}
    for r in report.results:
        assert list(r.raw.tensors) == ["features"] and r.raw.ok, text
        assert r.stages == [] and r.outputs == [] and r.det is None and r.pre_nms is None
    assert "detections" not in text and "Below the compared score" not in text, text
    assert text.count("    1 raw         features ") == len(report.results), text
    assert report.overlays == []


def test_a_head_that_is_no_detector_fails_run_check_where_it_breaks(toy_conversion,
                                                                    sample_images, tmp_path):
    """The raw stage alone judges a plain network, as strictly as a detector's: one corrupted
    convolution fails the check and the bisection names it."""
    top = corrupt_convolution(toy_conversion, 5, tmp_path)
    report = run_check(toy_conversion, sample_images[:1], runtimes=("opencv",))
    text = format_report(report)
    assert not report.ok and text.endswith("verdict: FAIL"), text
    (res,) = report.results
    assert not res.raw.ok and res.det is None
    assert res.first_divergence and res.first_divergence.startswith(top + ":"), text


def test_checking_an_existing_conversion_needs_the_blobs_and_family_of_its_head(tmp_path):
    import json

    from ssdconv.convert import load_conversion
    from ssdconv.models import load_model

    model = load_model("ssd_300_mobilenet0.25_voc", seed=0)
    conversion = convert(model, tmp_path, Options(targets=("caffe",)))
    path = tmp_path / f"{model.name}.json"
    good = json.loads(path.read_text())
    assert load_conversion(model, path).head.family.name == "ssd"
    for edit, needle in ((lambda m: m["blobs"].pop("priors"), "no blobs priors"),
                         (lambda m: m.update(family="toy"), "manifest of a toy conversion")):
        manifest = json.loads(json.dumps(good))
        edit(manifest)
        path.write_text(json.dumps(manifest))
        with pytest.raises(UserError, match=needle):
            load_conversion(model, path)
    assert conversion.manifest["family"] == "ssd"
