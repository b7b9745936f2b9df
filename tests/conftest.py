import os
import sys

import pytest

from ssdconv import shipped

ZOO_MODEL = "ssd_300_mobilenet0.25_voc"  # the cheapest zoo SSD
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def sample_images():
    images = [str(p) for p in shipped.photos()]
    assert images, f"{shipped.SAMPLES_DIR} has no images"
    return images


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """ZOO_MODEL exported with seeded weights: net-symbol.json + net-0000.params, and the same
    weights saved with save_parameters as gluon.params (shared by the bad-input and fault tests)."""
    import warnings

    import mxnet as mx

    from ssdconv.models import _constants
    from ssdconv.mxnet.load import load_block, zoo_net
    from ssdconv.mxnet.seeded import seed_params

    d = tmp_path_factory.mktemp("exported")
    net = zoo_net(ZOO_MODEL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net.initialize()
        seeded = load_block(net, (300, 300), name="x")
        seed_params(seeded.graph, 0, _constants(net))  # valid weights: only the test's fault
        for p in net.collect_params().values():
            p.set_data(mx.nd.array(seeded.graph.params[p.name]))
        net.hybridize()
        net(mx.nd.zeros((1, 3, 300, 300)))
        net.export(str(d / "net"))
        net.save_parameters(str(d / "gluon.params"))
    return d
