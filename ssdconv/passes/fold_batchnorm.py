"""Fold BatchNorm (or a per-channel Scale) into the convolution or inner product before it, in
float64.

Given: Conv or InnerProduct -> BatchNorm, the layer's output read only by the BatchNorm and not
a graph output. Result: the layer with w' = w * a (per output row) and b' = (b - mean) * a +
beta, a = gamma / sqrt(var + eps); exact up to one float32 rounding of the folded weights. Both
compute output channel o from weight row o, so one rule serves both. The layer now writes the
BatchNorm's blob, so blob names keep naming the source node whose value they hold (per-layer
checks) and a BatchNorm writing a graph output (insightface's `fc1` after `pre_fc1`) keeps that
output's name. BatchNorms elsewhere (pre-activation, after a sum) stay; emitters write
BatchNorm + Scale.

A Scale with its own weights (one per channel, optional bias: a constant broadcast_mul) folds
the same way, w' = w * s and b' = b * s + bias, under the same guard; a Scale taking its
factors from a second input (squeeze-excitation) computes them at run time and stays.
"""

from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Node

FOLDS_INTO = ("Conv", "InnerProduct")  # ops whose output channel o is weight row o, plus bias


def _batchnorm(bn: Node, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a, b') for a BatchNorm: w' = w * a, b' as the module docstring says."""
    w = bn.weights
    a = np.asarray(w["gamma"], np.float64) / np.sqrt(np.asarray(w["var"], np.float64)
                                                    + bn.attrs["eps"])
    return a, (bias - w["mean"]) * a + w["beta"]


def _scale(sc: Node, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(s, b * s + bias) for a Scale with weights; None for factors read from a second input."""
    if len(sc.inputs) != 1:
        return None
    s = np.asarray(sc.weights["scale"], np.float64).ravel()
    shift = np.asarray(sc.weights.get("bias", np.zeros_like(s)), np.float64).ravel()
    return s, bias * s + shift


# What follows the layer -> its per-output-channel (multiplier, new bias), or None: keep it.
AFFINES = {"BatchNorm": _batchnorm, "Scale": _scale}


def run(graph: Graph) -> int:
    count = 0
    for after in list(graph.nodes):
        affine = AFFINES.get(after.op)
        if affine is None:
            continue
        conv = graph.producer(after.inputs[0])
        if conv is None or conv.op not in FOLDS_INTO or graph.is_output(conv.outputs[0]):
            continue
        if len(graph.consumers(conv.outputs[0])) != 1:
            continue
        weight = np.asarray(conv.weights["weight"], np.float64)
        bias = np.asarray(conv.weights.get("bias", np.zeros(weight.shape[0])), np.float64)
        folded = affine(after, bias)
        if folded is None or folded[0].shape != (weight.shape[0],):
            continue
        a, conv.weights["bias"] = folded
        conv.weights["weight"] = weight * a.reshape((-1,) + (1,) * (weight.ndim - 1))
        conv.attrs["bias"] = True
        graph.remove(after)
        # the blob keeps the name of the node whose value it holds
        conv.outputs = [after.outputs[0]]
        count += 1
    return count
