"""Seeded random weights that exercise every parameter and keep activations sane.

No pretrained weights can be downloaded here, so conversions are proven on random weights. A
naive random SSD is numerically fragile (a 1x1 level with BatchNorm variance 0 turns rounding
noise into signal), so the weights are made the way a trained net looks:

* conv weights He-scaled, biases small and non-zero;
* BatchNorm gamma in [0.5, 1.5] even where fix_gamma holds (the converter must force 1), beta
  non-zero, running statistics calibrated on a seeded batch (one training-mode pass with
  momentum 0), then perturbed and floored so no channel has near-zero variance;
* the prediction convs rescaled as the graph's detector family asks (`Head.seeding_hints`;
  SSD: box offsets near 1, class logits spread enough that some detections score high, a
  background bias so most anchors are background).

The result depends only on (graph, seed): convert and verify reproduce the same weights.
"""

from __future__ import annotations

import json

import numpy as np

from ..family import find_head
from ..family.interface import SeedHint
from .run import run_outputs
from .source import SourceGraph, SourceNode


def calibration_batch(shape: tuple[int, ...], seed: int, n: int = 4) -> np.ndarray:
    """Smooth seeded images with ImageNet-normalised statistics, plus their flips."""
    import cv2

    rng = np.random.RandomState(seed + 7919)
    _, c, h, w = shape
    imgs = []
    for _ in range((n + 1) // 2):
        coarse = rng.normal(0, 1, size=(max(2, h // 16), max(2, w // 16), c)).astype(np.float32)
        img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
        img = img.reshape(h, w, c) + 0.3 * rng.normal(0, 1, size=(h, w, c))
        img = img.transpose(2, 0, 1)
        imgs += [img, img[:, :, ::-1]]
    return np.stack(imgs[:n]).astype(np.float32)


def _consumers_by_input(graph: SourceGraph) -> dict[int, list[tuple[SourceNode, int]]]:
    table: dict[int, list[tuple[SourceNode, int]]] = {}
    for node in graph.nodes:
        for pos, (i, _) in enumerate(node.inputs):
            table.setdefault(i, []).append((node, pos))
    return table


def _he_normal(shape, rng) -> np.ndarray:
    return rng.normal(0, np.sqrt(2.0 / int(np.prod(shape[1:]))), size=shape)


def _uniform(lo: float, hi: float):
    return lambda shape, rng: rng.uniform(lo, hi, size=shape)


# (reading op, input position) -> initialiser; BatchNorm inputs are data, gamma, beta, mean, var
INITIALISERS = {
    ("Convolution", 1): _he_normal,
    ("Convolution", 2): _uniform(-0.1, 0.1),
    ("BatchNorm", 1): _uniform(0.5, 1.5),  # != 1 also under fix_gamma: the converter must ignore
    ("BatchNorm", 2): _uniform(-0.3, 0.3),
    ("BatchNorm", 3): _uniform(-0.1, 0.1),  # running stats are calibrated afterwards
    ("BatchNorm", 4): _uniform(0.5, 1.5),
    ("broadcast_mul", 1): _uniform(10.0, 30.0),  # L2Normalization scale (GluonCV starts at 20)
}
DEFAULT_INITIALISER = _uniform(-0.5, 0.5)


def _random_param(shape, role: tuple[str, int], rng) -> np.ndarray:
    return INITIALISERS.get(role, DEFAULT_INITIALISER)(shape, rng)


def seed_params(graph: SourceGraph, seed: int, constants: set[str]) -> None:
    """Replace every non-constant parameter of `graph` in place with seeded values.

    The prediction convs are those of the head a registered family recognises in `graph` (a
    graph no family recognises gets the generic part only)."""
    head = find_head(graph)
    hints = sorted(head.seeding_hints(), key=lambda h: h.conv) if head is not None else []
    rng = np.random.RandomState(seed)
    cons = _consumers_by_input(graph)
    for node in graph.nodes:
        if node.op != "null" or node.name not in graph.params or node.name in constants:
            continue
        users = cons.get(node.index, [])
        role = (users[0][0].op, users[0][1]) if users else ("", 0)
        shape = graph.params[node.name].shape
        graph.params[node.name] = _random_param(shape, role, rng).astype(np.float32)

    batch = calibration_batch(graph.input_shape, seed)
    bns = [n for n in graph.nodes if n.op == "BatchNorm"]
    if bns:
        _calibrate_batchnorm(graph, bns, hints, batch, rng)
    _scale_predictors(graph, hints, batch)


def _calibrate_batchnorm(graph: SourceGraph, bns: list[SourceNode], hints: list[SeedHint],
                         batch: np.ndarray, rng) -> None:
    doc = json.loads(graph.symbol_json)
    for n in doc["nodes"]:
        if n["op"] == "BatchNorm":
            n.setdefault("attrs", {})["momentum"] = "0"
    edited = json.dumps(doc)
    # ask for the leaves only (the predictors, or BatchNorms nothing else reads): every
    # BatchNorm runs on the way, and MXNet need not keep each of their outputs alive
    readers = {i for n in graph.nodes for i, _ in n.inputs}
    leaves = [graph.nodes[h.conv] for h in hints] or bns
    leaves += [n for n in bns if n.index not in readers]
    _, aux = run_outputs(graph, [(n.index, 0) for n in leaves], batch, is_train=True,
                         symbol_json=edited)
    for bn in bns:
        mean_name = graph.nodes[bn.inputs[3][0]].name
        var_name = graph.nodes[bn.inputs[4][0]].name
        mean = aux[mean_name].astype(np.float64)
        var = aux[var_name].astype(np.float64)
        mean = mean + 0.1 * np.sqrt(var) * rng.normal(0, 1, size=mean.shape)
        var = np.maximum(var, 0.1 * (mean**2 + var)) * rng.uniform(0.8, 1.25, size=var.shape)
        var = np.maximum(var, 1e-3)
        graph.params[mean_name] = mean.astype(np.float32)
        graph.params[var_name] = var.astype(np.float32)


def _scale_predictors(graph: SourceGraph, hints: list[SeedHint], batch: np.ndarray) -> None:
    if not hints:
        return
    outs, _ = run_outputs(graph, [(h.conv, 0) for h in hints], batch)
    for hint, out in zip(hints, outs):
        node = graph.nodes[hint.conv]
        std = float(out.std()) or 1.0
        for pos in (1, 2):
            if pos < len(node.inputs):
                pname = graph.nodes[node.inputs[pos][0]].name
                graph.params[pname] = (graph.params[pname] * (hint.std / std)).astype(np.float32)
        if hint.centre and len(node.inputs) > 2:
            bias = graph.nodes[node.inputs[2][0]].name
            means = out.astype(np.float64).mean(axis=(0, 2, 3)) * (hint.std / std)
            graph.params[bias] = (graph.params[bias] - means).astype(np.float32)
        if hint.bias_step and len(node.inputs) > 2:
            bias = graph.nodes[node.inputs[2][0]].name
            graph.params[bias][hint.bias_start::hint.bias_step] += hint.bias_add
