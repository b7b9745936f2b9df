"""Absorb a per-channel affine layer on the network input into the preprocessing record.

Given: data -> Scale or BatchNorm (VGG's constant input multiply; ResNet v2's data BatchNorm)
as the input's only reader. With input x = (p - m) * s, the layer computes x * a + b =
(p - m + b / (a s)) * (a s): a new mean and scale, exact and free at run time. Guard: a > 0 in
every channel (a sign flip or a zero cannot be a preprocessing scale).
"""

from __future__ import annotations

import numpy as np

from ..ir.graph import Graph


def _affine(node) -> tuple[np.ndarray, np.ndarray] | None:
    w = node.weights
    if node.op == "Scale" and len(node.inputs) == 1:  # not factors read from a second input
        a = np.asarray(w["scale"], dtype=np.float64)
        return a, np.asarray(w.get("bias", np.zeros_like(a)), dtype=np.float64)
    if node.op == "BatchNorm":
        a = w["gamma"] / np.sqrt(w["var"] + node.attrs["eps"])
        return a, w["beta"] - w["mean"] * a
    return None


def run(graph: Graph) -> int:
    pre = graph.preprocess
    if pre is None:
        return 0
    count = 0
    (data,) = graph.inputs
    while True:
        readers = graph.value_readers(data)
        if len(readers) != 1 or graph.is_output(readers[0].outputs[0]):
            return count
        node = readers[0]
        ab = _affine(node)
        if ab is None or ab[0].shape != (len(pre.mean),) or np.any(ab[0] <= 0):
            return count
        a, b = ab
        s = np.asarray(pre.scale, dtype=np.float64)
        m = np.asarray(pre.mean, dtype=np.float64)
        pre.mean = tuple(float(v) for v in m - b / (a * s))
        pre.scale = tuple(float(v) for v in a * s)
        graph.remove(node)
        graph.replace_blob(node.outputs[0], data)
        count += 1
