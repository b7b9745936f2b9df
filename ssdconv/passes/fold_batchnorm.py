"""Fold BatchNorm into the convolution or inner product before it, in float64.

Given: Conv or InnerProduct -> BatchNorm, the layer's output read only by the BatchNorm and not
a graph output. Result: the layer with w' = w * a (per output row) and b' = (b - mean) * a +
beta, a = gamma / sqrt(var + eps); exact up to one float32 rounding of the folded weights. Both
compute output channel o from weight row o, so one rule serves both. The layer now writes the
BatchNorm's blob, so blob names keep naming the source node whose value they hold (per-layer
checks) and a BatchNorm writing a graph output (insightface's `fc1` after `pre_fc1`) keeps that
output's name. BatchNorms elsewhere (pre-activation, after a sum) stay; emitters write
BatchNorm + Scale.
"""

from __future__ import annotations

import numpy as np

from ..ir.graph import Graph

FOLDS_INTO = ("Conv", "InnerProduct")  # ops whose output channel o is weight row o, plus bias


def run(graph: Graph) -> int:
    count = 0
    for bn in list(graph.nodes):
        if bn.op != "BatchNorm":
            continue
        conv = graph.producer(bn.inputs[0])
        if conv is None or conv.op not in FOLDS_INTO or graph.is_output(conv.outputs[0]):
            continue
        if len(graph.consumers(conv.outputs[0])) != 1:
            continue
        w = bn.weights
        a = np.asarray(w["gamma"], np.float64) / np.sqrt(np.asarray(w["var"], np.float64)
                                                        + bn.attrs["eps"])
        weight = np.asarray(conv.weights["weight"], np.float64)
        bias = np.asarray(conv.weights.get("bias", np.zeros(weight.shape[0])), np.float64)
        conv.weights["weight"] = weight * a.reshape((-1,) + (1,) * (weight.ndim - 1))
        conv.weights["bias"] = (bias - w["mean"]) * a + w["beta"]
        conv.attrs["bias"] = True
        graph.remove(bn)
        conv.outputs = [bn.outputs[0]]  # the blob keeps the name of the node whose value it holds
        count += 1
    return count
