"""Resolve what the user named (zoo name, symbol file, live net) into a LoadedModel.

Weights come from a local params file or, with no file, from a seed: nothing is downloaded.
"""

from __future__ import annotations

import os
import warnings

from .errors import UserError
from .mxnet.load import LoadedModel, load_block, load_symbol, zoo_input_size, zoo_net

DEFAULT_SEED = 0


def _constants(net) -> set[str]:
    from mxnet import gluon

    return {p.name for p in net.collect_params().values()
            if isinstance(p, gluon.parameter.Constant)}


def load_zoo(name: str, params: str | None = None, seed: int | None = None,
             classes: list[str] | None = None,
             input_size: tuple[int, int] | None = None) -> LoadedModel:
    """A zoo SSD with weights from `params`, else seeded random weights (seed default 0)."""

    net = zoo_net(name, classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net.initialize(force_reinit=True)
    size = input_size or zoo_input_size(net)
    if params is not None:
        _load_into(net, params, name)
    model = load_block(net, size, name=name, classes=classes or list(net.classes))
    if params is None:
        from .mxnet.seeded import seed_params

        used = DEFAULT_SEED if seed is None else seed
        seed_params(model.graph, used, _constants(net))
        model.notes.append(f"seeded random weights (seed {used})")
    else:
        model.notes.append(f"weights from {params}")
    return model


def _load_into(net, params: str, name: str) -> None:
    if not os.path.isfile(params):
        raise UserError(f"params file {params} does not exist; pass a file saved with "
                        "net.save_parameters")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net.load_parameters(params)
    except Exception as exc:
        text = " ".join(str(exc).split())
        if "Invalid NDArray file format" in text or "Check failed" in text and "magic" in text:
            raise UserError(f"params file {params} is truncated or not an MXNet .params file; "
                            "save it again with net.save_parameters") from None
        raise UserError(f"params file {params} does not fit {name}: {text[:240]}. Pass the "
                        "params saved from this architecture (and the same --classes)") from None


def load_model(model: str, params: str | None = None, seed: int | None = None,
               classes: list[str] | None = None,
               input_size: tuple[int, int] | None = None) -> LoadedModel:
    """Dispatch on what `model` names: an existing -symbol.json file, else a zoo name."""
    if model.endswith(".json") or os.path.sep in model or os.path.exists(model):
        if not os.path.exists(model):
            raise UserError(f"model file {model} does not exist")
        if os.path.isdir(model):
            raise UserError(f"model {model} is a directory; pass PREFIX-symbol.json")
        if seed is not None and params is None:
            raise UserError("--seed applies to zoo names; an exported symbol brings its params")
        return load_symbol(model, params, input_size=input_size, classes=classes)
    return load_zoo(model, params=params, seed=seed, classes=classes, input_size=input_size)


def load_net(net, input_size: tuple[int, int], name: str = "model",
             classes: list[str] | None = None) -> LoadedModel:
    """The Python API's way in: a live, initialised Gluon SSD HybridBlock."""
    return load_block(net, input_size, name=name, classes=classes)
