"""Fold the preprocessing scale (1/std) and the RGB->BGR swap into the first convolution.

Given: the input read only by one Conv (group 1). A per-input-channel scale commutes with zero
padding, and a channel permutation is a permutation of the conv's input weights, so both fold
exactly: w'[:, c] = w[:, perm[c]] * s[perm[c]]. Result: the network takes BGR pixels minus the
mean, scale 1, which is what Caffe data layers and NPU toolchains expect. The mean cannot fold
(zero padding would see it), so it stays in the manifest.
"""

from __future__ import annotations

import numpy as np

from ..ir.graph import Graph

TARGET_ORDER = "BGR"


def run(graph: Graph) -> int:
    pre = graph.preprocess
    if pre is None:
        return 0
    (data,) = graph.inputs
    readers = graph.value_readers(data)
    if len(readers) != 1 or readers[0].op != "Conv" or readers[0].attrs["group"] != 1:
        return 0
    conv = readers[0]
    weight = np.asarray(conv.weights["weight"], np.float64)
    if weight.shape[1] != len(pre.scale):
        return 0
    scale = np.asarray(pre.scale, np.float64)
    weight = weight * scale[None, :, None, None]
    mean = list(pre.mean)
    if pre.channel_order != TARGET_ORDER and sorted(pre.channel_order) == sorted(TARGET_ORDER):
        perm = [pre.channel_order.index(c) for c in TARGET_ORDER]
        weight = weight[:, perm]
        mean = [mean[p] for p in perm]
        pre.channel_order = TARGET_ORDER
    conv.weights["weight"] = weight
    pre.mean = tuple(mean)
    pre.scale = (1.0, 1.0, 1.0)
    return 1
