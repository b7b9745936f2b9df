"""A custom GluonCV SSD with a MobileNetV2 backbone (ReLU6 = clip(0, 6), BatchNorm eps 2e-3),
built from GluonCV's own parts, seeded, and exported as PREFIX-symbol.json + PREFIX-0000.params.
The converter then sees only the exported files, as a user's own model would reach it."""

from __future__ import annotations

import os
import warnings

INPUT = 256
CLASSES = ["circle", "square", "triangle"]


def build_mobilenetv2_ssd(classes=CLASSES):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from gluoncv.model_zoo.mobilenet import get_mobilenet_v2
        from gluoncv.model_zoo.ssd import SSD

        base = get_mobilenet_v2(0.5, pretrained=False, norm_kwargs={"epsilon": 2e-3})
        net = SSD(base, INPUT,
                  features=["features_linearbottleneck13_relu60_relu6",
                            "features_relu61_relu6"],
                  num_filters=[256, 256, 128],
                  sizes=[25.6, 51.2, 102.4, 153.6, 204.8, 256],
                  ratios=[[1, 2, 0.5]] + [[1, 2, 0.5, 3, 1.0 / 3]] * 2 + [[1, 2, 0.5]] * 2,
                  steps=[16, 32, 64, 128, 256], classes=classes, pretrained=False)
    return net


def export_seeded(directory: str, seed: int = 3) -> str:
    """Export the seeded custom SSD; returns the path of its -symbol.json."""
    import mxnet as mx

    from ssdconv.models import _constants
    from ssdconv.mxnet.load import load_block
    from ssdconv.mxnet.seeded import seed_params

    net = build_mobilenetv2_ssd()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net.initialize()
    model = load_block(net, (INPUT, INPUT), name="mv2ssd", classes=CLASSES)
    seed_params(model.graph, seed, _constants(net))
    prefix = os.path.join(directory, "mv2ssd")
    with open(prefix + "-symbol.json", "w") as f:
        f.write(model.graph.symbol_json)
    aux = {n.name for n in model.graph.nodes if n.name.endswith(("running_mean", "running_var"))}
    mx.nd.save(prefix + "-0000.params", {
        ("aux:" if k in aux else "arg:") + k: mx.nd.array(v) for k, v in model.graph.params.items()
    })
    return prefix + "-symbol.json"


def load_leaky(directory: str):
    """The seeded custom SSD with every ReLU6 replaced by LeakyReLU(0.1), loaded and re-seeded
    (the anchors' calibration depends on the activation)."""
    import json

    from ssdconv.models import load_model
    from ssdconv.mxnet.seeded import seed_params

    symbol = export_seeded(directory)
    doc = json.loads(open(symbol).read())
    for node in doc["nodes"]:
        if node["op"] == "clip":
            node["op"], node["attrs"] = "LeakyReLU", {"act_type": "leaky", "slope": "0.1"}
    open(symbol, "w").write(json.dumps(doc))
    model = load_model(symbol, classes=CLASSES)
    g = model.graph
    anchors = {g.nodes[n.inputs[0][0]].name for n in g.nodes if n.op == "slice_like"}
    seed_params(g, 4, anchors)
    return model
