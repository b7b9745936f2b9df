"""Three ways in, one graph: a zoo name, an exported symbol, or a live HybridBlock.

Which detector family a zoo name or a symbol belongs to is asked of `ssdconv.family`.

Each path ends in the same `SourceGraph` (symbol JSON + params + shapes). A zoo name or a live
net is exported to a symbol first, so the converter always reads what MXNet itself would run,
including `set_nms` changes and anchor constants.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..family import default_input_size, zoo_family, zoo_names
from ..family import kinds as family_kinds
from .imports import import_mxnet
from .input_adapter import AFFINE_OPS, PASS_THROUGH, InputAdapter, find_input_adapter
from .messages import captured_log, one_line
from .run import output_counts, output_shapes, split_output_name
from .source import SourceGraph, malformed, parse_symbol_json

# ops between the input and its first convolution that keep its channel count
ELEMENTWISE_ON_INPUT = frozenset(AFFINE_OPS) | frozenset(PASS_THROUGH)


@dataclass
class LoadedModel:
    """A source graph plus what the user told us about it (name, classes), and where its
    weights came from: `weights` is the one place that fact lives (the CLI's `weights:` line
    and the manifest's notes both read it), so random weights can never pass unannounced."""

    graph: SourceGraph
    name: str
    classes: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    adapter: InputAdapter | None = None  # normalisation baked into the graph's input
    weights: str = "the live Gluon net's parameters"

    @property
    def weights_line(self) -> str:
        return f"weights: {self.weights}"


def _load_params_file(path: str) -> dict:
    mx = import_mxnet()
    if not os.path.isfile(path):
        raise UserError(f"params file {path} does not exist; pass the .params file saved with "
                        "net.save_parameters or net.export")
    try:
        return mx.nd.load(path)
    except Exception as exc:  # MXNetError: truncated or not an NDArray file
        raise UserError(f"params file {path} cannot be read ({one_line(exc)}); it is truncated "
                        "or not an MXNet .params file: save it again with save_parameters") \
            from None


def check_finite(params: dict[str, np.ndarray], names: list[str], origin: str) -> None:
    """Refuse a NaN or an infinity in any weight the symbol uses, naming the parameter: such a
    value would be copied into every converted file and poison every output it reaches."""
    for name in names:
        value = np.asarray(params[name])
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            bad = value.size - int(np.isfinite(value).sum())
            kinds = " and ".join(k for k, f in (("NaN", np.isnan), ("inf", np.isinf))
                                 if f(value).any())
            raise UserError(f"{origin}: parameter {name} holds {bad} non-finite value(s) "
                            f"({kinds}) of {value.size}; the weights are corrupt or training "
                            "diverged: pass finite weights")


def _check_outputs(graph: SourceGraph, counts: dict[str, int]) -> None:
    """Every reference names an output its node has (MXNet checks neither heads nor inputs).
    MXNet knows the outputs of the nodes the heads reach; nothing else is converted."""
    nodes = graph.nodes
    used = graph.ancestors([i for i, _ in graph.heads])
    edges = [(f"node {nodes[j].name} reads", i, k) for j in sorted(used)
             for i, k in nodes[j].inputs]
    edges += [(f"head {h}", i, k) for h, (i, k) in enumerate(graph.heads)]
    for what, i, k in edges:
        have = counts.get(nodes[i].name, 1)
        if k >= have:
            raise malformed(graph.origin, f"{what} output {k} of {nodes[i].name} "
                                          f"({nodes[i].op}), which has {have} output(s)")


def _check_reaches_input(graph: SourceGraph) -> None:
    """The outputs must depend on the input; else a node lost its inputs somewhere."""
    above = graph.ancestors([i for i, _ in graph.heads])
    if any(graph.nodes[i].name == graph.input_name for i in above):
        return
    orphans = [graph.nodes[i] for i in sorted(above)
               if graph.nodes[i].op != "null" and not graph.nodes[i].inputs]
    where = (f"; node {orphans[0].name} ({orphans[0].op}) has no inputs" if orphans else "")
    raise UserError(f"{graph.origin}: the symbol's outputs do not depend on its input "
                    f"{graph.input_name!r}{where}; export the model with net.export(PREFIX)")


def build_graph(symbol_json: str, params: dict[str, np.ndarray], input_name: str,
                input_shape: tuple[int, ...], origin: str,
                input_layout: str = "NCHW") -> SourceGraph:
    """Parse the symbol, check params cover it, and infer every internal shape."""
    nodes, heads = parse_symbol_json(symbol_json, origin)
    graph = SourceGraph(nodes=nodes, heads=heads, params=params, input_name=input_name,
                        input_shape=tuple(input_shape), symbol_json=symbol_json, origin=origin,
                        input_layout=input_layout)
    from ..frontend.walk import read_ancestors

    # a variable no converted node reads (a SoftmaxOutput's training label) needs no params
    read = read_ancestors(graph, [i for i, _ in heads])
    variables = [n for n in nodes if n.op == "null" and n.name != input_name and n.index in read]
    missing = [n.name for n in variables if n.name not in params]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise UserError(f"{origin}: {len(missing)} parameter(s) of the symbol are not in the "
                        f"params file ({shown}); pass the params exported with this symbol")
    check_finite(params, [n.name for n in variables], origin)
    try:
        counts = output_counts(symbol_json, nodes)
    except Exception as exc:  # MXNetError: an op or attribute MXNet cannot load
        raise UserError(f"{origin}: MXNet cannot load the symbol ({one_line(exc)}); "
                        "export the model with net.export(PREFIX)") from None
    _check_reaches_input(graph)
    _check_outputs(graph, counts)
    try:
        shapes = output_shapes(symbol_json, input_name, input_shape, params)
    except Exception as exc:
        raise UserError(f"{origin}: MXNet cannot infer shapes for input {input_shape} "
                        f"({one_line(exc)}); the params do not fit this symbol or the input "
                        "size is wrong (--input-size)") from None
    index = {n.name: n.index for n in nodes}
    for key, shape in shapes.items():
        name, out = split_output_name(key)
        if name in index:
            graph.shapes[(index[name], out)] = shape
    for n in nodes:
        if n.op == "null" and n.name in params:
            graph.shapes[(n.index, 0)] = tuple(params[n.name].shape)
    for n in nodes:
        if n.op == "null" and n.name in params and tuple(params[n.name].shape) != shapes.get(
                n.name, tuple(params[n.name].shape)):
            raise UserError(f"{origin}: parameter {n.name} has shape {params[n.name].shape} but "
                            f"the symbol needs {shapes[n.name]}; the params belong to another "
                            "architecture")
    return graph


def _split_export_params(raw: dict) -> dict[str, np.ndarray]:
    out = {}
    for k, v in raw.items():
        name = k.split(":", 1)[1] if k.startswith(("arg:", "aux:")) else k
        out[name] = v.asnumpy()
    return out


def _input_name(nodes) -> str:
    consumed_params = [n for n in nodes if n.op == "null"]
    for n in consumed_params:
        if n.name == "data":
            return n.name
    raise UserError("the symbol has no input named 'data'; export the model with "
                    "HybridBlock.export, which names its input 'data'")


def current_symbol_json(text: str, origin: str) -> tuple[str, list[str]]:
    """The symbol as MXNet 1.9 writes it, whatever MXNet wrote it: MXNet upgrades a symbol
    file of an older version on load (0.8's per-node `param`/`attr`, BatchNorm without its
    moving-statistics variables, op aliases such as `_MinusScalar` resolving to
    `_minus_scalar`), and its `tojson` writes the current form, which is what it then runs and
    what the converters read. Returns the text and what MXNet logged doing it (the upgrade of
    an old file: the manifest's notes record it)."""
    mx = import_mxnet()
    try:
        with captured_log() as log:
            upgraded = mx.sym.load_json(text).tojson()
        return upgraded, log
    except Exception as exc:  # MXNetError: an op or attribute this MXNet does not know
        raise UserError(f"{origin}: MXNet cannot load the symbol ({one_line(exc)}); "
                        "export the model with net.export(PREFIX)") from None


def input_channels(nodes, params: dict, input_name: str) -> int:
    """How many channels the input has: the shape its variable records, else the first
    convolution's weights (input channels per group x groups) reached from the input through
    arithmetic and copies; 3 (a photo's) when neither tells."""
    data = next(n for n in nodes if n.name == input_name)
    recorded = [int(x) for x in re.findall(r"-?\d+", data.attrs.str("__shape__", ""))]
    if len(recorded) == 4 and recorded[1] > 0:
        return recorded[1]
    readers: dict[int, list] = {}
    for n in nodes:
        for i, _ in n.inputs:
            readers.setdefault(i, []).append(n)
    cur = data.index
    for _ in range(len(nodes)):
        nxt = readers.get(cur, [])
        if len(nxt) != 1:
            break
        node = nxt[0]
        if node.op == "Convolution" and len(node.inputs) > 1 and node.inputs[0][0] == cur:
            weight = params.get(nodes[node.inputs[1][0]].name)
            if weight is not None and np.ndim(weight) == 4:
                return int(np.shape(weight)[1]) * node.attrs.int("num_group", 1)
            break
        if node.op not in ELEMENTWISE_ON_INPUT:
            break
        cur = node.index
    return 3


def load_symbol(symbol_path: str, params_path: str | None = None,
                input_size: tuple[int, int] | None = None,
                classes: list[str] | None = None,
                input_arithmetic: str = "fold") -> LoadedModel:
    """Load `PREFIX-symbol.json` with `PREFIX-0000.params` (or `params_path`). The graph's own
    arithmetic on its input is read as preprocessing (`input_adapter`), or with
    `input_arithmetic="keep"` converted as layers, the model then taking raw pixels."""
    import_mxnet()
    path = Path(symbol_path)
    if not path.is_file():
        raise UserError(f"symbol file {symbol_path} does not exist")
    text = path.read_text(errors="replace")
    nodes, _ = parse_symbol_json(text, str(path))  # malformed: refused before MXNet reads it
    input_name = _input_name(nodes)
    upgraded, upgrade_log = current_symbol_json(text, str(path))
    upgraded_nodes, _ = parse_symbol_json(upgraded, str(path))
    # MXNet drops what the outputs do not reach: an input cut off is reported as such below
    if any(n.name == input_name for n in upgraded_nodes):
        text, nodes = upgraded, upgraded_nodes
    if params_path is None:
        suffix = "-symbol.json"
        stem = path.name[: -len(suffix)] if path.name.endswith(suffix) else path.stem
        guess = path.with_name(f"{stem}-0000.params")
        if not guess.is_file():
            raise UserError(f"no params file beside {path} (looked for {guess.name}); "
                            "pass --params")
        params_path = str(guess)
        weights = f"exported with the symbol {os.path.abspath(params_path)}"
    else:
        weights = os.path.abspath(params_path)
    params = _split_export_params(_load_params_file(params_path))
    if input_size is None:
        input_size = default_input_size(nodes, params, str(path))
    name = path.name[: -len("-symbol.json")] if path.name.endswith("-symbol.json") else path.stem
    adapter = find_input_adapter(nodes, params, input_name)
    channels = input_channels(nodes, params, input_name)
    shape = ((1, *input_size, channels) if adapter and adapter.layout == "NHWC"
             else (1, channels, *input_size))
    graph = build_graph(text, params, input_name, shape, str(path),
                        adapter.layout if adapter else "NCHW")
    model = LoadedModel(graph=graph, name=name, classes=classes, adapter=adapter, weights=weights)
    model.notes += [f"MXNet on load: {line}" for line in upgrade_log]
    if adapter and input_arithmetic == "keep":
        if adapter.layout != "NCHW":
            raise UserError(f"{path}: --input-arithmetic keep: the graph's input is "
                            f"{adapter.layout} and transposed in the graph; only arithmetic on "
                            "an NCHW input can be kept as layers: drop the option")
        model.adapter = adapter.kept_as_layers(next(n.index for n in nodes
                                                    if n.name == input_name))
        model.notes.append("input arithmetic kept as layers (--input-arithmetic keep): the "
                           "model takes raw RGB pixels 0..255 and normalises them itself")
    elif adapter:
        model.notes.append(f"input normalisation read from the graph ({adapter.layout} input, "
                           f"mean {[round(m, 4) for m in adapter.mean]}, std "
                           f"{[round(s, 4) for s in adapter.std]}), folded into the manifest's "
                           "preprocessing (--input-arithmetic fold)")
    return model


def load_block(net, input_size: tuple[int, int], name: str = "model",
               classes: list[str] | None = None) -> LoadedModel:
    """Export a live Gluon HybridBlock (initialised) and load it as a source graph."""
    mx = import_mxnet()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net.hybridize()
        net(mx.nd.zeros((1, 3, *input_size)))  # finishes deferred initialisation
        # tracing with a symbol gives the graph `export` would write, without the file trip
        out = net(mx.sym.var("data"))
        sym = mx.sym.Group(list(out)) if isinstance(out, (list, tuple)) else out
        text = sym.tojson()
        used = set(sym.list_arguments()) | set(sym.list_auxiliary_states())
        params = {p.name: p.data().asnumpy() for p in net.collect_params().values()
                  if p.name in used}
    if classes is None:
        classes = list(getattr(net, "classes", None) or []) or None
    nodes, _ = parse_symbol_json(text, name)
    graph = build_graph(text, params, _input_name(nodes), (1, 3, *input_size), name)
    return LoadedModel(graph=graph, name=name, classes=classes)


def save_exported(graph: SourceGraph, prefix: str) -> str:
    """Write `graph` as `PREFIX-symbol.json` + `PREFIX-0000.params`, the files `net.export`
    makes, and return the symbol path. A seeded zoo model saved this way converts from its
    symbol to the same files as from its name, which is how a user's exported net arrives."""
    mx = import_mxnet()
    sym = mx.sym.load_json(graph.symbol_json)
    args, aux = set(sym.list_arguments()), set(sym.list_auxiliary_states())
    saved = {("arg:" if name in args else "aux:") + name: mx.nd.array(value)
             for name, value in graph.params.items() if name in args or name in aux}
    Path(f"{prefix}-symbol.json").write_text(graph.symbol_json)
    mx.nd.save(f"{prefix}-0000.params", saved)
    return f"{prefix}-symbol.json"


def zoo_net(name: str, classes: list[str] | None = None):
    """Build a zoo detector with no pretrained weights; unknown names, and names of models no
    registered family builds (`ssdconv.family.zoo_family`), are UserErrors.

    `classes` name a `_custom` model's classes, or replace a zoo model's with GluonCV's
    `reset_class`, as its fine-tuning flow does, so weights saved after `reset_class` fit."""
    import_mxnet()
    from gluoncv import model_zoo
    from gluoncv.model_zoo.model_zoo import _models

    if name not in _models:
        close = [n for n in zoo_names() if name.split("_")[0] in n][:3]
        hint = f" (they include {', '.join(close)})" if close else ""
        raise UserError(f"unknown model {name!r}: not a GluonCV zoo name, an existing "
                        f"-symbol.json file or a .py file{hint}; run `ssdconv list` for the zoo "
                        "models ssdconv converts")
    if zoo_family(name) is None:
        raise UserError(f"model {name!r} is of a GluonCV zoo kind ssdconv does not convert (it "
                        f"converts {family_kinds()}; run `ssdconv list` for the names)")
    kwargs = dict(zoo_family(name).build_kwargs)
    if name.endswith("_custom"):
        if not classes:
            raise UserError(f"model {name!r} is a custom model: give its classes with "
                            "--classes a,b,c")
        kwargs["classes"] = classes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = model_zoo.get_model(name, **kwargs)
    net.zoo_name = name  # what the family sizes it by (`zoo_input_size`)
    if classes and list(classes) != list(getattr(net, "classes", classes)):
        reset_classes(net, classes)
    return net


def reset_classes(net, classes: list[str]) -> None:
    """GluonCV's `net.reset_class(classes)` on a net built without pretrained weights.

    `reset_class` asks the old class predictors for their context, which a pretrained net has
    from its loaded weights but a net built with pretrained=False has only once initialised:
    without `initialize` first it fails with "Parameter ... has not been initialized"."""
    import_mxnet()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net.initialize()
        net.reset_class(list(classes))

