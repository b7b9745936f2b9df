"""Every blob the manifest names is written by a layer of the same name, in caffe and in ncnn, as
in caffe-ssd's own deploy prototxts: OpenCV's `net.forward(name)` takes a layer name, so a user
reads `mbox_loc` or `detection_out` by the names the manifest gives, with no map of their own.
"""

from __future__ import annotations

import json
from collections import Counter

import cv2
import numpy as np
import pytest

from ssdconv.backend.caffe import parse_prototxt_strict
from ssdconv.backend.caffe.runner import OpenCVRunner
from ssdconv.convert import Options, convert
from ssdconv.models import load_model
from ssdconv.mxnet.load import save_exported
from ssdconv.verify.check import run_check
from ssdconv.verify.images import load_rgb, network_input

ZOO = "ssd_300_mobilenet0.25_voc"


def _caffe_layers(path) -> list[tuple[str, list[str]]]:
    return [(layer.name, list(layer.top)) for layer in parse_prototxt_strict(path).layer]


def _ncnn_layers(path) -> list[tuple[str, list[str]]]:
    """(layer name, top blobs) per layer line of a .param file."""
    layers = []
    for line in open(path).read().splitlines()[2:]:
        fields = line.split()
        n_in, n_out = int(fields[2]), int(fields[3])
        layers.append((fields[1], fields[4 + n_in:4 + n_in + n_out]))
    return layers


def _assert_named_after_blobs(layers: list[tuple[str, list[str]]], manifest: dict, what: str):
    writer = {top: name for name, tops in layers for top in tops}
    for role, blob in manifest["blobs"].items():
        assert writer.get(blob) == blob, f"{what}: {role} blob {blob} written by {writer.get(blob)}"
    repeated = [n for n, k in Counter(name for name, _ in layers).items() if k > 1]
    assert repeated == [], f"{what}: layer names used twice"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("names")
    conv = convert(load_model(ZOO, seed=0), out, Options(targets=("caffe", "ncnn")))
    return conv, json.loads(open(conv.files["json"]).read())


def test_manifest_blobs_are_written_by_layers_of_their_name(converted):
    conv, manifest = converted
    assert set(manifest["blobs"]) == {"input", "loc", "conf", "priors", "detections"}
    _assert_named_after_blobs(_caffe_layers(conv.files["prototxt"]), manifest, "caffe")
    _assert_named_after_blobs(_ncnn_layers(conv.files["param"]), manifest, "ncnn")


def test_opencv_forward_takes_the_manifest_names(converted, sample_images):
    conv, m = converted
    b = m["blobs"]
    _, _, h, w = m["input_shape"]
    rgb = load_rgb(sample_images[0], h, w)
    ref = OpenCVRunner(conv.files["prototxt"], conv.files["caffemodel"], m).run(rgb)
    priors = sum(lv["feature"][0] * lv["feature"][1] * lv["anchors_per_cell"]
                 for lv in m["priors"]["levels"])
    classes = len(m["classes"]) + m["label_offset"]
    expected = {b["loc"]: (1, priors * 4), b["conf"]: (1, priors * classes),
                b["priors"]: (1, 2, priors * 4)}

    net = cv2.dnn.readNetFromCaffe(str(conv.files["prototxt"]), str(conv.files["caffemodel"]))
    net.enableWinograd(False)
    x = network_input(rgb, m)
    outs = {}
    for name in (b["loc"], b["conf"], b["priors"], b["detections"]):
        net.setInput(x, b["input"])  # the input, too, goes by its manifest name
        outs[name] = net.forward(name)  # a layer name: raises if no layer is called so
    for name, shape in expected.items():
        assert outs[name].shape == shape, name
    assert outs[b["detections"]].shape[:2] == (1, 1) and outs[b["detections"]].shape[3] == 7
    assert np.array_equal(outs[b["loc"]].reshape(-1), ref["loc"])
    assert np.array_equal(outs[b["conf"]].reshape(-1), ref["conf"])
    assert np.array_equal(outs[b["priors"]].reshape(2, -1), ref["priors"])
    det = outs[b["detections"]].reshape(-1, 7)
    det = det[det[:, 2] > 0]
    assert len(det) == len(ref["det_scores"]) > 0
    assert np.array_equal(det[:, 2], ref["det_scores"])
    assert np.array_equal(det[:, 3:7], ref["det_boxes"])


def test_source_layers_holding_the_names_step_aside(tmp_path, sample_images):
    """A model whose own layers are called `mbox_loc`, `mbox_priorbox` and `detection_out`
    still converts with those names on the manifest's blobs, unique layer names, and a PASS."""
    source = load_model(ZOO, seed=0)
    symbol = tmp_path / "named-symbol.json"
    save_exported(source.graph, str(tmp_path / "named"))
    doc = json.loads(symbol.read_text())
    relus = [n for n in doc["nodes"] if n["op"] == "Activation"]
    for node, name in zip(relus, ("mbox_loc", "mbox_priorbox", "detection_out")):
        node["name"] = name
    symbol.write_text(json.dumps(doc))
    model = load_model(str(symbol), classes=source.classes)
    assert {"mbox_loc", "detection_out"} <= {n.name for n in model.graph.nodes}
    conv = convert(model, tmp_path / "out", Options(targets=("caffe", "ncnn")))
    manifest = json.loads(open(conv.files["json"]).read())
    _assert_named_after_blobs(_caffe_layers(conv.files["prototxt"]), manifest, "caffe")
    _assert_named_after_blobs(_ncnn_layers(conv.files["param"]), manifest, "ncnn")
    report = run_check(conv, sample_images[:1])
    assert report.ok, report
