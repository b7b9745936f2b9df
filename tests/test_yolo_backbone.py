"""A real GluonCV YOLOv3 backbone and neck (yolo3_mobilenet0.25_voc, seeded weights) converted
up to its three output convolutions and run in OpenCV and ncnn against MXNet.

The head after those convolutions (reshape, sigmoid, exp, anchors and offsets, NMS) belongs to
the YOLO family; this checks everything before it: MobileNet, the YOLO detection blocks with
LeakyReLU 0.1, the two-repeat upsample and the slice_like crops. At 320 and 416 (multiples of
32) the crops are no-ops; at 300 the maps are 10, 19 and 38, so the first upsample (10 -> 20) is
cropped to 19 on both axes (two Slices) and the second (19 -> 38) is not.
"""

from __future__ import annotations

import warnings

import pytest
from test_yolo_frontend import assert_runtimes_match

from ssdconv.frontend.walk import walk
from ssdconv.mxnet.load import load_block
from ssdconv.mxnet.run import run_outputs
from ssdconv.mxnet.seeded import calibration_batch, seed_params
from ssdconv.passes.pipeline import run_passes

MODEL = "yolo3_mobilenet0.25_voc"
# Largest relative error (to each output's peak) of OpenCV/ncnn against MXNet float32; measured
# 2.2e-6 to 4.0e-6 at all three sizes in both runtimes (BatchNorm folded into the convs rounds
# differently from MXNet's separate BatchNorm).
RTOL = 2e-5
# Slices the crops need per input size (see the module docstring).
CROPS = {320: 0, 416: 0, 300: 2}


def output_convs(source) -> list[int]:
    """The convolutions whose outputs feed the head's Reshape (yolooutputv3{0,1,2}_conv0)."""
    return [n.index for n in source.nodes if n.op == "Convolution" and any(
        c.op in ("Reshape", "reshape") for c in source.consumers(n.index))]


@pytest.mark.parametrize("size", sorted(CROPS))
def test_backbone_and_neck_match_mxnet(tmp_path, size):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from gluoncv import model_zoo

        net = model_zoo.get_model(MODEL, pretrained=False, pretrained_base=False)
        net.initialize()
        model = load_block(net, (size, size), name="yolo3")
    source = model.graph
    seed_params(source, 0, set())
    roots = output_convs(source)
    assert len(roots) == 3
    graph = walk(source, roots)
    graph.outputs = [source.nodes[i].name for i in roots]
    run_passes(graph)
    counts = graph.op_counts()
    assert counts["Upsample"] == 2 and "BatchNorm" not in counts, counts
    assert counts.get("Slice", 0) == CROPS[size], counts
    x = calibration_batch(source.input_shape, 1, n=1)
    want, _ = run_outputs(source, [(i, 0) for i in roots], x)
    assert_runtimes_match(graph, x, want, tmp_path, RTOL)
