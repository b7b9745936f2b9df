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

The result depends only on (graph, seed), on every machine: `--seed N` writes the same bytes
everywhere, so a golden hash of a converted file is a real guard. Two things would otherwise tie
the weights to the CPU: MXNet's float32 kernels (oneDNN picks AVX-512, AVX2 or SSE code per
machine, and each rounds differently) and OpenCV's SIMD resize. So the calibration batch is made
in numpy float64, both calibration passes run in float64 (which oneDNN does not handle: MXNet's
own kernels and OpenBLAS, whose per-CPU kernels differ only by float64 summation order, ~1e-16
relative), and every statistic taken from them is snapped to a grid (`_snap`) far coarser than
that noise before it touches a weight.
"""

from __future__ import annotations

import json

import numpy as np

from ..family import find_head
from ..family.interface import SeedHint
from .run import run_outputs
from .source import SourceGraph, SourceNode

#: Significant bits kept of a statistic measured by a forward pass (relative to the largest
#: magnitude in its tensor). Float64 results of two CPUs differ by ~1e-16 relative; a grid of
#: 2**-16 makes a value land on another grid point with odds of about 1e-11.
SNAP_BITS = 16


def _snap(x: np.ndarray | float, bits: int = SNAP_BITS) -> np.ndarray:
    """`x` rounded to multiples of 2**(e - bits), 2**e being the power of two just above its
    largest magnitude: the same float64 values on every machine whatever rounding noise the
    forward pass that measured `x` carried (near-zero entries included, which a relative
    rounding would keep noisy)."""
    x = np.asarray(x, np.float64)
    top = float(np.max(np.abs(x), initial=0.0))
    if top == 0.0 or not np.isfinite(top):
        return x
    quantum = np.ldexp(1.0, int(np.frexp(top)[1]) - bits)
    return np.round(x / quantum) * quantum


def _resize_linear(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of an (H, W, C) float64 array to (h, w, C), half-pixel centres like
    OpenCV's INTER_LINEAR, in plain numpy: elementwise float64, so the same on every CPU."""

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), src - lo

    y0, y1, fy = axis(img.shape[0], h)
    x0, x1, fx = axis(img.shape[1], w)
    fy, fx = fy[:, None, None], fx[None, :, None]
    top = img[y0][:, x0] * (1 - fx) + img[y0][:, x1] * fx
    bottom = img[y1][:, x0] * (1 - fx) + img[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def calibration_batch(shape: tuple[int, ...], seed: int, n: int = 4) -> np.ndarray:
    """Smooth seeded images with ImageNet-normalised statistics, plus their flips (float32,
    the same bytes on every machine)."""
    rng = np.random.RandomState(seed + 7919)
    _, c, h, w = shape
    imgs = []
    for _ in range((n + 1) // 2):
        coarse = rng.normal(0, 1, size=(max(2, h // 16), max(2, w // 16), c))
        img = _resize_linear(coarse, h, w) + 0.3 * rng.normal(0, 1, size=(h, w, c))
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
    ("FullyConnected", 1): _he_normal,  # (out, in): fan-in is the input features
    ("FullyConnected", 2): _uniform(-0.1, 0.1),
    ("LeakyReLU", 1): _uniform(0.05, 0.5),  # PReLU slopes: positive, below 1, as trained ones
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
    _, aux = run_outputs(graph, [(n.index, 0) for n in leaves], batch, dtype="float64",
                         is_train=True, symbol_json=edited)
    for bn in bns:
        mean_name = graph.nodes[bn.inputs[3][0]].name
        var_name = graph.nodes[bn.inputs[4][0]].name
        mean = _snap(aux[mean_name])
        var = _snap(aux[var_name])
        mean = mean + 0.1 * np.sqrt(var) * rng.normal(0, 1, size=mean.shape)
        var = np.maximum(var, 0.1 * (mean**2 + var)) * rng.uniform(0.8, 1.25, size=var.shape)
        var = np.maximum(var, 1e-3)
        graph.params[mean_name] = mean.astype(np.float32)
        graph.params[var_name] = var.astype(np.float32)


def _scale_predictors(graph: SourceGraph, hints: list[SeedHint], batch: np.ndarray) -> None:
    if not hints:
        return
    outs, _ = run_outputs(graph, [(h.conv, 0) for h in hints], batch, dtype="float64")
    for hint, out in zip(hints, outs):
        node = graph.nodes[hint.conv]
        gain = float(_snap(hint.std / (float(out.std()) or 1.0)))
        for pos in (1, 2):
            if pos < len(node.inputs):
                pname = graph.nodes[node.inputs[pos][0]].name
                graph.params[pname] = (graph.params[pname] * gain).astype(np.float32)
        if hint.centre and len(node.inputs) > 2:
            bias = graph.nodes[node.inputs[2][0]].name
            means = _snap(out.mean(axis=(0, 2, 3))) * gain
            graph.params[bias] = (graph.params[bias] - means).astype(np.float32)
        if hint.bias_step and len(node.inputs) > 2:
            bias = graph.nodes[node.inputs[2][0]].name
            graph.params[bias][hint.bias_start::hint.bias_step] += hint.bias_add
