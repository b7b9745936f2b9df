"""Run any internal outputs of a source graph in MXNet, in float32 or float64.

The same executor serves four jobs: evaluating the anchor tensors (constant given the input
size), calibrating seeded BatchNorm statistics, the float32 Gluon result users compare against,
and the float64 reference that measures how far float32 itself is from exact.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings

import mxnet as mx
import numpy as np

from .source import SourceGraph

_OUT_RE = re.compile(r"^(.*)_output(\d*)$")


def output_key(graph: SourceGraph, index: int, out: int = 0) -> str:
    """The name MXNet gives output `out` of node `index` in `get_internals()`."""
    node = graph.nodes[index]
    if node.op == "null":
        return node.name
    _, names = _internals(graph)
    single = f"{node.name}_output"
    if single in names and out == 0:
        return single
    return f"{node.name}_output{out}"


def _internals(graph: SourceGraph) -> tuple[mx.sym.Symbol, list[str]]:
    """The graph's internals symbol and output names, parsed once and kept on the graph."""
    if graph.cache.get("symbol_json") != graph.symbol_json:
        internals = mx.sym.load_json(graph.symbol_json).get_internals()
        graph.cache.update(symbol_json=graph.symbol_json, internals=internals,
                           names=internals.list_outputs())
    return graph.cache["internals"], graph.cache["names"]


def _top_left_crop(node: dict) -> tuple[str, dict] | None:
    """A two-input Crop at offset (0, 0), no centring (RetinaFace's): slice_like on H, W."""
    attrs = node.get("attrs", {})
    if (len(node["inputs"]) == 2
            and attrs.get("offset", "(0, 0)").replace(" ", "") in ("(0,0)", "[0,0]")
            and attrs.get("center_crop", "False") in ("False", "false", "0")):
        return "slice_like", {"axes": "(2, 3)"}
    return None


def _channel_softmax(node: dict) -> tuple[str, dict] | None:
    """SoftmaxActivation mode channel: softmax on axis 1."""
    return ("softmax", {"axis": "1"}) if node.get("attrs", {}).get("mode") == "channel" else None


# Legacy operators MXNet runs in float32 only -> the same computation in an op that runs in
# float64 too (op, attrs), or None for a form not covered: for the float64 reference alone,
# each a pure data movement or the same function.
FLOAT32_ONLY = {"Crop": _top_left_crop, "SoftmaxActivation": _channel_softmax}


def _float64_json(text: str) -> str:
    """`text` with every float32-only op (`FLOAT32_ONLY`) replaced by its float64-capable
    equal; an op of another form stays (MXNet then says it cannot run it in float64)."""
    import json

    doc = json.loads(text)
    changed = False
    for node in doc["nodes"]:
        rewrite = FLOAT32_ONLY.get(node["op"])
        found = rewrite(node) if rewrite else None
        if found is not None:
            node["op"], node["attrs"] = found
            changed = True
    return json.dumps(doc) if changed else text


def _float64_internals(graph: SourceGraph, text: str | None):
    """(internals, output names) of the symbol to run in float64 (the graph's own unless
    `text`), float32-only ops replaced (`_float64_json`); kept on the graph."""
    source = graph.symbol_json if text is None else text
    key = ("float64", source)
    if graph.cache.get("float64_key") != key:
        internals = mx.sym.load_json(_float64_json(source)).get_internals()
        graph.cache.update(float64_key=key, float64_internals=internals,
                           float64_names=internals.list_outputs())
    return graph.cache["float64_internals"], graph.cache["float64_names"]


def output_counts(symbol_json: str, nodes) -> dict[str, int]:
    """How many outputs MXNet gives each node (by name) of the symbol."""
    names = set(mx.sym.load_json(symbol_json).get_internals().list_outputs())
    counts = {}
    for node in nodes:
        if node.op == "null" or f"{node.name}_output" in names:
            counts[node.name] = 1
            continue
        k = 0
        while f"{node.name}_output{k}" in names:
            k += 1
        counts[node.name] = k
    return counts


def output_shapes(symbol_json: str, input_name: str, input_shape: tuple[int, ...],
                  params: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """Shape of every internal output, keyed by its MXNet output name."""
    internals = mx.sym.load_json(symbol_json).get_internals()
    arguments = set(internals.list_arguments())
    known = {k: v.shape for k, v in params.items() if k in arguments}
    if input_name in arguments:
        known[input_name] = tuple(input_shape)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # and MXNet's print of every argument on a failure
        _, out_shapes, _ = internals.infer_shape(**known)
    return {n: tuple(s) for n, s in zip(internals.list_outputs(), out_shapes)}


def split_output_name(name: str) -> tuple[str, int]:
    """'conv0_output' -> ('conv0', 0); 'split0_output2' -> ('split0', 2); 'data' -> ('data', 0)."""
    m = _OUT_RE.match(name)
    if not m:
        return name, 0
    return m.group(1), int(m.group(2) or 0)


def run_outputs(graph: SourceGraph, outputs: list[tuple[int, int]], batch: np.ndarray,
                dtype: str = "float32", is_train: bool = False,
                symbol_json: str | None = None,
                params: dict[str, np.ndarray] | None = None) -> tuple[list[np.ndarray], dict]:
    """Forward `batch` and return the requested internal outputs (and the aux states after).

    `symbol_json`/`params` override the graph's own (calibration edits BatchNorm momentum).
    With is_train, BatchNorm normalises with batch statistics and updates its moving stats.
    """
    if dtype == "float64":
        sym_all, names = _float64_internals(graph, symbol_json)
    elif symbol_json is None:
        sym_all, names = _internals(graph)
    else:
        sym_all = mx.sym.load_json(symbol_json).get_internals()
        names = sym_all.list_outputs()
    picked = []
    for idx, out in outputs:
        key = output_key(graph, idx, out)
        if key not in names:
            key = graph.nodes[idx].name + "_output"
        picked.append(sym_all[names.index(key)])
    sym = mx.sym.Group(picked)
    params = graph.params if params is None else params
    values = {}
    unbound = [n for n in sym.list_inputs() if n != graph.input_name and n not in params]
    # a training-only input (SoftmaxOutput's label) that inference never reads: zeros of the
    # shape MXNet infers for it, as `Module.predict` binds it
    shapes = dict(zip(sym.list_arguments(), sym.infer_shape(
        **{graph.input_name: batch.shape})[0])) if unbound else {}
    for name in sym.list_inputs():
        value = (batch if name == graph.input_name else
                 np.zeros(shapes[name]) if name in unbound else params[name])
        values[name] = mx.nd.array(value, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # CachedOp is what a hybridized Gluon block runs on. Unlike `Symbol.bind` (the graph
        # executor) it applies no subgraph backend whatever MXNET_SUBGRAPH_BACKEND says, so no
        # MKL-DNN fusion changes float32 rounding, and it logs nothing to stderr
        op = mx.nd.CachedOp(sym)
        with mx.autograd.train_mode() if is_train else mx.autograd.predict_mode():
            outs = op(*[values[name] for name in sym.list_inputs()])
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        results = [o.asnumpy() for o in outs]
    # the forward updated the aux states (BatchNorm moving stats) in place when training
    return results, {name: values[name].asnumpy() for name in sym.list_auxiliary_states()}
