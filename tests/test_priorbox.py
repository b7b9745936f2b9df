"""The one PriorBox rule (ssdconv.ssd.priorbox) in the IR shapes, both backends and both runtimes.

caffe-ssd drops a repeated aspect ratio (and a ratio of 1) silently; the IR shape rule counts
priors the same way, the caffe backend writes the list for OpenCV to expand, the ncnn backend
writes the expanded list, and both runtimes must then give the same priors as the reference.
"""

from __future__ import annotations

import cv2
import ncnn
import numpy as np
import pytest

from ssdconv.backend.caffe.emit import write_caffe
from ssdconv.backend.ncnn.emit import write_ncnn
from ssdconv.ir.graph import Graph, Node
from ssdconv.ir.validate import validate
from ssdconv.ssd.prior_counts import expanded_aspect_ratios, priors_per_cell
from ssdconv.ssd.priorbox import layer_priors


@pytest.mark.parametrize("ratios, flip, expanded", [
    ((2.0, 0.5, 3.0), True, [2.0, 0.5, 3.0, 1 / 3]),  # 0.5 is 2's flip: dropped
    ((2.0, 1.0, 2.0), False, [2.0]),  # 1 is implicit, the second 2 a repeat
    ((2.0, 2.0 + 5e-7), False, [2.0]),  # within caffe-ssd's 1e-6
    ((2.0, 2.0 + 2e-6), False, [2.0, 2.0 + 2e-6]),  # outside it
    ((), True, []),
])
def test_aspect_ratio_expansion_is_caffe_ssds(ratios, flip, expanded):
    assert expanded_aspect_ratios(ratios, flip) == pytest.approx(expanded, abs=0)
    assert priors_per_cell(None, ratios, flip) == 1 + len(expanded)
    assert priors_per_cell(32.0, ratios, flip) == 2 + len(expanded)


def _priorbox_graph(ratios: tuple, flip: bool) -> Graph:
    nodes = [
        Node("data", "Input", [], ["data"], {"shape": (1, 3, 64, 64)}),
        Node("feat", "Pool", ["data"], ["feat"], {
            "method": "max", "kernel": (8, 8), "stride": (8, 8), "pad": (0, 0),
            "global_pool": False, "round": "floor", "count_include_pad": True}),
        Node("priors", "PriorBox", ["feat", "data"], ["priors"], {
            "min_size": 16.0, "max_size": 32.0, "aspect_ratios": ratios, "flip": flip,
            "clip": False, "variance": (0.1, 0.1, 0.2, 0.2), "step_h": 8.0, "step_w": 8.0,
            "offset": 0.5, "img_h": 0, "img_w": 0, "int_scale": 1}),
    ]
    g = Graph(nodes=nodes, inputs={"data": (1, 3, 64, 64)}, outputs=["priors"])
    validate(g)
    return g


def _opencv_priors(g: Graph, out_dir) -> np.ndarray:
    written = write_caffe(g, out_dir, "net")
    net = cv2.dnn.readNetFromCaffe(str(written["prototxt"]), str(written["caffemodel"]))
    net.setInput(np.zeros((1, 3, 64, 64), np.float32))
    return np.asarray(net.forward("priors"))


def _ncnn_priors(g: Graph, out_dir) -> np.ndarray:
    written = write_ncnn(g, out_dir, "net")
    net = ncnn.Net()
    assert net.load_param(written["param"]) == 0 and net.load_model(written["bin"]) == 0
    ex = net.create_extractor()
    assert ex.input("data", ncnn.Mat(np.zeros((3, 64, 64), np.float32))) == 0
    rc, mat = ex.extract("priors")
    assert rc == 0
    return np.array(mat).copy()


def test_repeated_ratios_give_the_same_priors_in_ir_opencv_and_ncnn(tmp_path):
    repeated = _priorbox_graph((2.0, 2.0, 1.0, 0.5), flip=True)
    plain = _priorbox_graph((2.0,), flip=True)
    # min, sqrt(min*max), 2, 1/2: the repeated 2, the 1 and 0.5 (2's flip) are dropped
    assert repeated.shapes["priors"] == plain.shapes["priors"] == (1, 2, 8 * 8 * 4 * 4)
    ref = layer_priors(plain.nodes[-1].attrs, 8, 8, 64, 64)
    assert np.array_equal(ref, layer_priors(repeated.nodes[-1].attrs, 8, 8, 64, 64))
    opencv = _opencv_priors(repeated, tmp_path / "caffe")
    ncnn_out = _ncnn_priors(repeated, tmp_path / "ncnn")
    assert opencv.shape == repeated.shapes["priors"]
    assert ncnn_out.size == opencv.size  # ncnn returns (2, 4N), without the batch axis
    assert np.abs(opencv - ref).max() < 1e-6
    assert np.abs(ncnn_out.reshape(ref.shape) - ref).max() < 1e-6
