"""Which input chains are read as the caller's preprocessing (export_block's signature: a mean
subtraction or the HWC transpose) and which stay in the network (a pure scale, as VGG16-atrous's
`init_scale`). Getting this wrong drops the caller's mean subtraction: the converted model then
agrees with the symbol under the wrong preprocessing, so only the manifest shows it."""

from __future__ import annotations

import filecmp

import numpy as np
import pytest

from ssdconv.convert import Options, convert
from ssdconv.models import load_model
from ssdconv.mxnet.input_adapter import find_input_adapter
from ssdconv.mxnet.load import save_exported
from ssdconv.mxnet.source import parse_symbol_json

MEAN = np.array([123.675, 116.28, 103.53])
STD = np.array([58.395, 57.12, 57.375])


def _adapter(build):
    """find_input_adapter on the graph `build(data, const)` followed by a convolution."""
    import mxnet as mx

    data = mx.sym.var("data")
    consts: dict[str, np.ndarray] = {}

    def const(name: str, value: np.ndarray, shape: tuple) -> object:
        consts[name] = np.asarray(value, np.float32).reshape(shape)
        return mx.sym.var(name)

    x = build(data, const)
    out = mx.sym.Convolution(x, num_filter=4, kernel=(3, 3), name="conv0")
    nodes, _ = parse_symbol_json(out.tojson(), "test")
    return find_input_adapter(nodes, consts, "data")


def test_pure_scale_at_the_input_stays_in_the_network():
    import mxnet as mx

    def vgg_init_scale(data, const):
        return mx.sym.broadcast_mul(data, const("init_scale", STD, (1, 3, 1, 1)))

    assert _adapter(vgg_init_scale) is None
    assert _adapter(lambda data, const: data * (1 / 255)) is None


def test_mean_and_std_chain_is_read_as_preprocessing():
    import mxnet as mx

    def export_block_chw(data, const):
        x = mx.sym.broadcast_minus(data, const("init_mean", MEAN, (1, 3, 1, 1)))
        return mx.sym.broadcast_div(x, const("init_std", STD, (1, 3, 1, 1)))

    adapter = _adapter(export_block_chw)
    assert adapter is not None and adapter.layout == "NCHW"
    np.testing.assert_allclose(adapter.mean, MEAN, rtol=1e-6)
    np.testing.assert_allclose(adapter.std, STD, rtol=1e-6)


def test_hwc_transpose_is_read_as_preprocessing_even_without_a_mean():
    import mxnet as mx

    def hwc_scale_only(data, const):
        x = mx.sym.broadcast_div(data, const("init_std", STD, (1, 1, 1, 3)))
        return mx.sym.transpose(x, axes=(0, 3, 1, 2))

    adapter = _adapter(hwc_scale_only)
    assert adapter is not None and adapter.layout == "NHWC"
    np.testing.assert_allclose(adapter.std, STD, rtol=1e-6)


@pytest.mark.slow
def test_vgg_exported_symbol_converts_like_the_zoo_name(tmp_path):
    """The same seeded VGG16-atrous SSD by zoo name and as an exported symbol: the same
    preprocessing in the manifest and a byte-identical caffemodel."""
    zoo = load_model("ssd_300_vgg16_atrous_voc", seed=0)
    # the net's name is written into the caffemodel: keep it
    symbol = save_exported(zoo.graph, str(tmp_path / zoo.name))

    exported = load_model(symbol, classes=list(zoo.classes))
    assert exported.adapter is None
    a = convert(zoo, tmp_path / "zoo", Options(targets=("caffe",)))
    b = convert(exported, tmp_path / "sym", Options(targets=("caffe",)))
    for key in ("mean", "scale", "channel_order", "input_shape"):
        assert a.manifest[key] == b.manifest[key], key
    assert a.manifest["mean"] == pytest.approx([103.53, 116.28, 123.675], abs=1e-3)
    assert filecmp.cmp(a.files["caffemodel"], b.files["caffemodel"], shallow=False)
