"""Resolve what the user named (zoo name, symbol file, live net) into a LoadedModel.

A zoo model's weights come from, in this order: `params` (a file saved with save_parameters),
`seed` (seeded random weights, only when asked for), or GluonCV's model store (the file
`get_model(NAME, pretrained=True)` left on disk). With none of them the load is refused: random
weights are never a silent default. Nothing is downloaded.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

from .errors import UserError
from .family import zoo_family
from .mxnet.load import LoadedModel, load_block, load_symbol, reset_classes, zoo_net
from .mxnet.model_store import StoreEntry, store_entry, store_root, verified_file


def _constants(net) -> set[str]:
    from mxnet import gluon

    return {p.name for p in net.collect_params().values()
            if isinstance(p, gluon.parameter.Constant)}


@dataclass(frozen=True)
class ZooWeights:
    """Where a zoo model's weights come from: a params file or a seed, and how to say so."""

    params: str | None
    seed: int | None
    description: str  # becomes LoadedModel.weights


def zoo_weights(name: str, params: str | None, seed: int | None, new_classes: bool,
                store: StoreEntry | None) -> ZooWeights:
    """Pick the weights of zoo model `name` (see the module docstring), or refuse in one line
    naming every way to give them. `new_classes`: --classes replaced the zoo's classes, so
    GluonCV's stored weights (trained on the zoo's own classes) do not fit."""
    if params is not None and seed is not None:
        raise UserError("--params and --seed both given: --params FILE converts those weights, "
                        "--seed N converts seeded random weights; give one")
    if params is not None:
        return ZooWeights(params, None, os.path.abspath(params))
    if seed is not None:
        return ZooWeights(None, seed, f"seeded random (seed {seed})")
    ways = "pass --params FILE saved with net.save_parameters, or --seed N for seeded random " \
           "weights"
    if store is None:
        why = ("GluonCV publishes no weights for _custom models" if name.endswith("_custom")
               else "GluonCV publishes no pretrained weights for it")
        raise UserError(f"no weights for {name}: {why}, so GluonCV's model store "
                        f"({store_root()}) has no {name}-SHORTHASH.params; {ways}")
    if new_classes:
        raise UserError(f"no weights for {name} with new --classes: GluonCV's model store file "
                        f"{store.path} holds the zoo's own classes; pass --params FILE saved "
                        "after net.reset_class, or --seed N for seeded random weights")
    found = verified_file(store)
    if found is None:
        raise UserError(f"no weights for {name}: not in GluonCV's model store (looked for "
                        f"{store.path}, GluonCV's NAME-SHORTHASH.params); {ways}")
    return ZooWeights(found, None, f"GluonCV model store {found} (SHA-1 ok)")


def load_zoo(name: str, params: str | None = None, seed: int | None = None,
             classes: list[str] | None = None, input_size: tuple[int, int] | None = None,
             store: StoreEntry | None = None) -> LoadedModel:
    """A zoo detector with weights from `params`, `seed` or the model store (`zoo_weights`).

    `store` is the model-store entry to look in; None means GluonCV's own entry for `name`
    under `store_root()` (pass another entry for weights GluonCV's table does not list).
    With `classes`, the classes are replaced the way GluonCV's fine-tuning does
    (`reset_class`), so weights saved after `reset_class` load."""
    custom = name.endswith("_custom")
    net = zoo_net(name, classes if custom else None)  # validates the name first
    new_classes = (bool(classes) and not custom
                   and list(classes) != list(getattr(net, "classes", classes)))
    entry = store_entry(name) if store is None else store
    source = zoo_weights(name, params, seed, new_classes, entry)
    if new_classes:
        reset_classes(net, classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net.initialize(force_reinit=True)
    size = input_size or zoo_family(name).zoo_input_size(net)
    if source.params is not None:
        _load_into(net, source.params, name)
    model = load_block(net, size, name=name,
                       classes=classes or list(getattr(net, "classes", None) or []) or None)
    if source.seed is not None:
        from .mxnet.seeded import seed_params

        seed_params(model.graph, source.seed, _constants(net))
    model.weights = source.description
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
        saved = _saved_class_count(net, params, name)
        if saved is not None and saved != len(net.classes):
            raise UserError(f"params file {params} holds {saved} classes but {name} is built "
                            f"with {len(net.classes)}: pass --classes with the {saved} names "
                            "given to net.reset_class") from None
        raise UserError(f"params file {params} does not fit {name}: {text[:240]}. Pass the "
                        "params saved from this architecture (and the same --classes)") from None


def _saved_class_count(net, params: str, name: str) -> int | None:
    """How many classes a save_parameters file was trained for (its family reads it from the
    arrays), or None when that cannot be told."""
    import mxnet as mx

    try:
        saved = mx.nd.load(params)
    except Exception:  # not a params file at all: the generic message says enough
        return None
    return zoo_family(name).saved_class_count(net, saved)


def load_model(model: str, params: str | None = None, seed: int | None = None,
               classes: list[str] | None = None,
               input_size: tuple[int, int] | None = None,
               input_arithmetic: str = "fold") -> LoadedModel:
    """Dispatch on what `model` names: an existing -symbol.json file, else a zoo name.

    A zoo name needs `params`, `seed` or a model-store file (`zoo_weights`); an exported
    symbol brings its own params."""
    if model.endswith(".json") or os.path.sep in model or os.path.exists(model):
        if not os.path.exists(model):
            raise UserError(f"model file {model} does not exist")
        if os.path.isdir(model):
            raise UserError(f"model {model} is a directory; pass PREFIX-symbol.json")
        if seed is not None:
            raise UserError("--seed applies to zoo names; an exported symbol brings its params")
        return load_symbol(model, params, input_size=input_size, classes=classes,
                           input_arithmetic=input_arithmetic)
    return load_zoo(model, params=params, seed=seed, classes=classes, input_size=input_size)


def load_net(net, input_size: tuple[int, int], name: str = "model",
             classes: list[str] | None = None) -> LoadedModel:
    """The Python API's way in: a live, initialised GluonCV detector HybridBlock."""
    return load_block(net, input_size, name=name, classes=classes)
