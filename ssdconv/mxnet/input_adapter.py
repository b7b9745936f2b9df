"""Recognise normalisation baked into the graph's input (GluonCV's `export_block(preprocess=True)`).

`export_block(..., preprocess=True, layout='HWC')` puts `broadcast_sub(mean)`,
`broadcast_div(std)` and `transpose(0,3,1,2)` in front of the network, so the exported symbol
takes raw HWC pixels. Those layers are per-channel affine maps and a layout change: they are
read here as a preprocessing record (mean, std, layout) instead of being converted, and the
converted network starts at the first real layer with an NCHW input, mean and scale in the
manifest as for any other model.

A chain is read as that preprocessing only when it carries export_block's signature: the HWC
transpose or a mean subtraction. A pure per-channel scale at the input is part of the network,
not of the caller's preprocessing: GluonCV's VGG16-atrous multiplies its (already
ImageNet-normalised) input by `init_scale` = 255 * std, and reading that as "the graph takes raw
pixels" would drop the caller's mean subtraction. Such a scale is converted like any other op
and folded into the first convolution by the passes, exactly as when the net comes by zoo name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# MXNet op -> what it does to x with a constant v
AFFINE_OPS = {
    "broadcast_sub": "sub", "broadcast_minus": "sub", "elemwise_sub": "sub", "_minus_scalar": "sub",
    "broadcast_add": "add", "broadcast_plus": "add", "elemwise_add": "add", "_plus_scalar": "add",
    "broadcast_mul": "mul", "elemwise_mul": "mul", "_mul_scalar": "mul",
    "broadcast_div": "div", "elemwise_div": "div", "_div_scalar": "div",
}
# ops that copy the input unchanged (insightface's `mx.sym.identity(data)` before its arithmetic)
PASS_THROUGH = ("_copy", "identity")
# kind -> (scale, shift) of x -> x * scale + shift, given the per-channel constant v
AFFINE_FORMS = {
    "sub": lambda v: (np.ones(3), -v),
    "add": lambda v: (np.ones(3), v),
    "mul": lambda v: (v, np.zeros(3)),
    "div": lambda v: (1.0 / v, np.zeros(3)) if np.all(v != 0) else None,
}


@dataclass(frozen=True)
class InputAdapter:
    """The absorbed chain: nodes it covers, where the NCHW network input comes out, and the
    normalisation it applied: network input = (pixel - mean) / std per channel."""

    nodes: frozenset[int]
    end: int
    layout: str  # layout of the graph's own input: "NCHW" or "NHWC"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def kept_as_layers(self, start: int) -> InputAdapter:
        """The adapter when the graph's input arithmetic is kept as layers
        (`--input-arithmetic keep`): it absorbs nothing and the network takes the raw pixels
        the arithmetic read (`start`: the input node), mean 0, std 1."""
        return InputAdapter(nodes=frozenset(), end=start, layout=self.layout,
                            mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def _channel_const(arr: np.ndarray, layout: str) -> np.ndarray | None:
    """The per-channel values of a constant broadcast against the input, else None."""
    a = np.asarray(arr, np.float64)
    if a.size == 1:
        return np.full(3, float(a.reshape(-1)[0]))
    if a.size != 3 or a.ndim != 4:
        return None
    axis = 3 if layout == "NHWC" else 1
    return a.reshape(-1) if a.shape[axis] == 3 else None


def _step(node, params: dict, nodes, cur: int, layout: str):
    """(scale, shift) of one affine node on the running input, or None when it is not one."""
    op = node.op
    if op.endswith("_scalar"):
        v = np.full(3, node.attrs.float("scalar"))
    else:
        others = [i for i, _ in node.inputs if i != cur]
        if len(node.inputs) != 2 or len(others) != 1:
            return None
        other = nodes[others[0]]
        if other.op != "null" or other.name not in params:
            return None
        if [i for i, _ in node.inputs].index(cur) != 0:
            return None  # constant - x or constant / x is not an input normalisation
        v = _channel_const(params[other.name], layout)
        if v is None:
            return None
    return AFFINE_FORMS[AFFINE_OPS[op]](v)


def find_input_adapter(nodes, params: dict, input_name: str) -> InputAdapter | None:
    """Follow the input through single-reader affine/transpose nodes; None when there are none."""
    by_input: dict[int, list] = {}
    for n in nodes:
        for i, _ in n.inputs:
            by_input.setdefault(i, []).append(n)
    start = next((n.index for n in nodes if n.name == input_name), None)
    if start is None:
        return None
    cur, layout, chain = start, "NCHW", []
    a, b = np.ones(3), np.zeros(3)
    transposed = False
    hwc_input = chain_is_hwc(nodes, by_input, start)
    while True:
        readers = by_input.get(cur, [])
        if len(readers) != 1:
            break
        node = readers[0]
        if node.op == "transpose" and not transposed and tuple(
                int(x) for x in node.attrs.tuple("axes")) == (0, 3, 1, 2):
            layout, transposed = "NHWC", True
            chain.append(node.index)
            cur = node.index
            continue
        if node.op in PASS_THROUGH:
            chain.append(node.index)
            cur = node.index
            continue
        if node.op not in AFFINE_OPS:
            break
        # constants before the transpose broadcast over HWC, after it over CHW
        step = _step(node, params, nodes, cur, "NHWC" if hwc_input and not transposed else "NCHW")
        if step is None:
            break
        s, t = step
        a, b = a * s, b * s + t
        chain.append(node.index)
        cur = node.index
    if not chain or np.any(a <= 0):
        return None
    if not transposed and np.all(b == 0):
        return None  # a scale inside the network (VGG's init_scale), not export_block's
    return InputAdapter(nodes=frozenset(chain), end=cur, layout=layout,
                        mean=tuple(float(x) for x in -b / a), std=tuple(float(x) for x in 1 / a))


def chain_is_hwc(nodes, by_input, start: int) -> bool:
    """True when a transpose(0,3,1,2) follows the input's affine chain (the input is HWC)."""
    cur = start
    for _ in range(16):
        readers = by_input.get(cur, [])
        if len(readers) != 1:
            return False
        node = readers[0]
        if node.op == "transpose":
            return tuple(int(x) for x in node.attrs.tuple("axes")) == (0, 3, 1, 2)
        if node.op not in AFFINE_OPS and node.op not in PASS_THROUGH:
            return False
        cur = node.index
    return False
