"""The detector-family seam: families come from the registration, are tried in its order,
and a second family is a module of its own plus a registration (tests/toy_family.py converts
a classifier's pooled features through `convert` without touching any SSD or shared file)."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from ssdconv.convert import Options, convert
from ssdconv.errors import UserError
from ssdconv.family import families, recognise, registered, zoo_family, zoo_names
from ssdconv.mxnet.load import load_block
from ssdconv.mxnet.run import run_outputs
from ssdconv.verify.gluon_runner import GluonRunner
from ssdconv.verify.images import network_input


@pytest.fixture
def with_toy(monkeypatch):
    """tests/toy_family.py registered after SSD, the way a real family registers."""
    monkeypatch.setattr(registered, "FAMILY_MODULES", (*registered.FAMILY_MODULES, "toy_family"))


def _classifier(size=64):
    """GluonCV's MobileNet 0.25 classifier: a backbone, a global pooling, no detector head."""
    from gluoncv import model_zoo

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = model_zoo.get_model("mobilenet0.25", pretrained=False)
        net.initialize()
    return load_block(net, (size, size), name="cls")


def test_families_come_from_the_registration():
    assert [f.name for f in families()] == ["yolov3", "ssd"]


def test_zoo_names_are_the_builders_of_the_families():
    from gluoncv.model_zoo.model_zoo import _models

    names = zoo_names()
    # GluonCV's SSD and YOLOv3 builders, by their module (the SSDs: the list the old `ssd_`
    # prefix rule gave)
    assert names == sorted(n for n in _models if n.startswith(("ssd_", "yolo3_"))
                           and not n.endswith("_int8"))
    assert zoo_family("ssd_300_mobilenet0.25_voc").name == "ssd"
    assert zoo_family("yolo3_darknet53_voc").name == "yolov3"
    assert zoo_family("ssd_300_vgg16_atrous_voc_int8") is None  # quantised: no family builds it
    assert zoo_family("mobilenet0.25") is None and zoo_family("no_such_model") is None


def _conv_net():
    """Two convolutions: neither an SSD head nor a global pooling."""
    from mxnet import gluon

    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Conv2D(8, 3, padding=1, activation="relu"), gluon.nn.Conv2D(4, 1))
    net.initialize()
    return load_block(net, (16, 16), name="convs")


def test_nothing_recognised_names_what_each_family_looked_for(with_toy):
    assert recognise(_classifier().graph).family.name == "toy"  # SSD: not mine; toy: mine
    with pytest.raises(UserError) as err:
        recognise(_conv_net().graph)
    text = str(err.value)
    assert text.startswith("convs: no detector head found")
    assert "an SSD detector: no class predictions" in text, text
    assert "a toy feature extractor: no global pooling" in text, text


def test_a_classifier_is_no_ssd():
    with pytest.raises(UserError, match="an SSD detector: no class predictions"):
        recognise(_classifier().graph)


def test_a_second_family_registers_its_zoo_and_converts_through_the_seam(with_toy, tmp_path):
    assert "mobilenet0.25" in zoo_names() and zoo_family("mobilenet0.25").name == "toy"
    assert zoo_family("ssd_300_mobilenet0.25_voc").name == "ssd"  # tried first, still SSD's
    model = _classifier()
    conversion = convert(model, tmp_path, Options(targets=("caffe", "ncnn")))
    manifest = conversion.manifest
    assert manifest["family"] == "toy" and manifest["toy"] == {"pooled": conversion.head.pool.name}
    assert manifest["blobs"] == {"input": "data", "features": "features"}
    assert {"prototxt", "caffemodel", "param", "bin", "json"} <= set(conversion.files)

    rgb = np.random.RandomState(0).randint(0, 256, (64, 64, 3)).astype(np.uint8)
    gluon = GluonRunner.for_conversion(conversion)
    (ref,), _ = run_outputs(model.graph, list(conversion.head.raw_outputs().values()),
                            gluon.input(rgb))
    net = cv2.dnn.readNetFromCaffe(conversion.files["prototxt"], conversion.files["caffemodel"])
    net.setInput(network_input(rgb, manifest), "data")
    got = net.forward("features")
    assert got.size == ref.size and np.abs(got.reshape(-1) - ref.reshape(-1)).max() < 1e-4


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
