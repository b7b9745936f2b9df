"""ncnnoptimize's match rules restated for tests, on a written .param file.

Why restated and not imported from ssdconv: the test must be able to catch the converter
missing a fusion, so it reads the file the way ncnn's `tools/ncnnoptimize.cpp` scans its layer
list (a blob read by several layers is read by its Split only), not the converter's own guards.
"""

from __future__ import annotations

from dataclasses import dataclass

ACTIVATIONS = {"ReLU", "Clip", "Sigmoid", "Mish", "HardSwish"}
ACTIVATION_HOSTS = {"Convolution", "ConvolutionDepthWise", "InnerProduct", "Deconvolution",
                    "DeconvolutionDepthWise"}
BATCHNORM_HOSTS = {"Convolution", "ConvolutionDepthWise", "InnerProduct", "Deconvolution",
                   "DeconvolutionDepthWise"}
ELIMINATED = {"Noop", "Dropout"}


@dataclass
class ParamLayer:
    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[str, str]


def parse_param(path) -> list[ParamLayer]:
    lines = open(path).read().splitlines()
    assert lines[0] == "7767517"
    layers = []
    for line in lines[2:]:
        parts = line.split()
        n_in, n_out = int(parts[2]), int(parts[3])
        ins, outs = parts[4:4 + n_in], parts[4 + n_in:4 + n_in + n_out]
        params = dict(p.split("=", 1) for p in parts[4 + n_in + n_out:])
        layers.append(ParamLayer(parts[0], parts[1], ins, outs, params))
    return layers


def ncnnoptimize_leftovers(path) -> list[str]:
    """One line per rewrite ncnnoptimize would still make on the model (empty: nothing).

    Covers the rewrites whose layers ssdconv can write or that would show a regression: an
    activation (or BatchNorm) whose only input is a convolution's output that nothing else reads
    (for an activation: a convolution without a fused one yet; ncnnoptimize would overwrite it,
    which is not exact, so neither ssdconv nor this rule does),
    BatchNorm -> Scale, identity 1x1 pooling, a Split with fewer than two readers, Noop/Dropout,
    Flatten/Reshape/Convolution after global pooling."""
    layers = parse_param(path)
    producer = {b: x for x in layers for b in x.outputs}
    readers: dict[str, list[ParamLayer]] = {}
    for x in layers:
        for b in x.inputs:
            readers.setdefault(b, []).append(x)

    def sole_input_from(x: ParamLayer, kinds: set[str]) -> ParamLayer | None:
        if len(x.inputs) != 1:
            return None
        src = producer.get(x.inputs[0])
        if src is None or src.type not in kinds or len(readers[x.inputs[0]]) != 1:
            return None
        return src

    found = []
    for x in layers:
        if (x.type in ACTIVATIONS and (src := sole_input_from(x, ACTIVATION_HOSTS))
                and src.params.get("9", "0") == "0"):
            found.append(f"fuse_{src.type.lower()}_activation {src.name} {x.name}")
        if x.type == "BatchNorm" and (src := sole_input_from(x, BATCHNORM_HOSTS)):
            found.append(f"fuse_{src.type.lower()}_batchnorm {src.name} {x.name}")
        if x.type == "Scale" and (src := sole_input_from(x, {"BatchNorm"})):
            found.append(f"fuse_batchnorm_scale {src.name} {x.name}")
        if x.type in ELIMINATED:
            found.append(f"eliminate_{x.type.lower()} {x.name}")
        if x.type == "Split" and sum(1 for b in x.outputs if readers.get(b)) < 2:
            found.append(f"eliminate_split {x.name}")
        p = x.params
        if (x.type == "Pooling" and p.get("4", "0") == "0" and p.get("1") == "1"
                and p.get("11", "1") == "1" and p.get("2", "1") == "1" and p.get("12", "1") == "1"
                and all(p.get(k, "0") == "0" for k in ("3", "13", "14", "15"))):
            found.append(f"eliminate_pooling1x1 {x.name}")
        if x.type in {"Flatten", "Reshape", "Convolution"} and (
                src := sole_input_from(x, {"Pooling"})) and src.params.get("4", "0") != "0":
            found.append(f"{x.type.lower()}_after_global_pooling {src.name} {x.name}")
    return found
