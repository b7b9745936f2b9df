"""The one table of options: every setting a user gives, declared once.

Each `Option` says its preset key and API field, its command-line flag, its value check
(`ssdconv.values`), its help text and its owner: the core, a target (a backend declares its own
options: `Backend.options`) or a detector family (declared in a light module the family
registration names: `ssdconv.family.registered.FAMILY_OPTION_MODULES`). From this table come

* `Options`, the conversion settings the API takes and `convert` reads (fields with `api=True`),
  and `Options.checked()`, every value checked as the command line checks it;
* the preset keys (`ssdconv.config`), each checked by the same function as its flag;
* the command's argparse flags (`ssdconv.cli`);
* the manifest's `head_options` (the options the model's family owns);
* the refusals of an option set for another target or another family (`refuse_foreign`).

Importing this module is cheap (no MXNet): the command line builds its parser from it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, make_dataclass, replace
from typing import Any

from . import values
from .errors import UserError
from .ir.preprocess import IMAGENET_MEAN, IMAGENET_STD
from .option import CORE, MODEL, Option

__all__ = ["CORE", "MODEL", "Option", "options_class", "table", "target", "targets"]
ALL_TARGETS = "all"  # every registered backend


def target_names() -> tuple[str, ...]:
    """The registered backends' names (`ssdconv.backend.registered`), in their order."""
    from .backend import backends

    return tuple(b.name for b in backends())


def target(value) -> tuple[str, ...]:
    """--target and the preset's `target`: one registered backend's name or `all`; the tuple
    of backends it means."""
    names = target_names()
    picked = values.choice(value, (*names, ALL_TARGETS))
    return names if picked == ALL_TARGETS else (picked,)


def targets(value) -> tuple[str, ...]:
    """`Options.targets` (the API): one or more registered backends' names, distinct (a
    comma-separated string or a list); a tuple of names."""
    names = target_names()
    allowed = f"must be one or more of {', '.join(names)}"
    items = [value] if isinstance(value, str) else values.as_list(value, allowed)
    if not items or any(t not in names for t in items) or len(set(items)) != len(items):
        raise values.BadValue(f"{allowed}, not {values.shown(value)}")
    return tuple(items)

def _model_options() -> tuple[Option, ...]:
    return (
        Option("model", None, values.model, "GluonCV zoo name or PREFIX-symbol.json",
               owner=MODEL, api=False),
        Option("params", None, values.input_file,
               "weights: .params saved with save_parameters or export", owner=MODEL,
               flag="--params", api=False),
        Option("classes", None, values.class_names, "class names, comma separated",
               owner=MODEL, flag="--classes", api=False),
        Option("seed", None, values.seed,
               "zoo names: convert seeded random weights (only when asked; without --params or "
               "--seed, GluonCV's model store is used)", owner=MODEL, flag="--seed", api=False),
        Option("input_size", None, values.input_size, "H,W of the network input",
               owner=MODEL, flag="--input-size", api=False),
        Option("input_arithmetic", "fold", values.input_arithmetic,
               "arithmetic the graph does on its input (_minus_scalar, _mul_scalar, _copy, "
               "mean/std broadcasts): fold (default: into the manifest's mean and scale) or keep "
               "(as layers: the model takes raw pixels, as ncnn's arcface example feeds them)",
               owner=MODEL, flag="--input-arithmetic", api=False),
    )


def _core_options() -> tuple[Option, ...]:
    return (
        Option("target", ("caffe",), target,
               f"{', '.join(target_names())} or all (default caffe; verify: all)",
               flag="--target", api=False, commands=("convert", "verify"),
               command_defaults=(("verify", ALL_TARGETS),)),
        Option("source_mean", IMAGENET_MEAN, values.source_mean,
               "the source model's input mean, R,G,B in pixel units"),
        Option("source_std", IMAGENET_STD, values.source_std,
               "the source model's input std, R,G,B in pixel units"),
        Option("source_channel_order", "RGB", values.channel_order,
               "the channel order the source model takes"),
        Option("skip_passes", (), values.skip_passes, "passes (and ncnn rewrites) to skip"),
        Option("headless", False, values.flag,
               "write the network only up to its raw prediction maps (nothing an NPU toolchain "
               "rejects), the exact post-processing as generated C (NAME_postprocess.c/.h) and "
               "the constants it needs beside it", flag="--headless", kind="switch"),
        Option("headless_layout", "nchw", values.headless_layout,
               "a headless model's outputs: nchw (each prediction conv as it is; default) or "
               "nhwc (SSD: each permuted 0,2,3,1, as HiSilicon's SSD sample reads them)",
               flag="--headless-layout"),
    )


@dataclass
class _OptionsBase:
    """Conversion settings (CLI flags and presets end up here); fields from the option table,
    plus `targets`, the backends to write."""

    targets: tuple[str, ...] = ("caffe",)

    def checked(self):
        """These options with every value checked as the command line checks it."""
        changes = {"targets": values.check(targets, self.targets, "option targets")}
        for opt in table():
            if opt.api and hasattr(self, opt.key):  # a field of this class's registration
                changes[opt.key] = values.check(opt.check, getattr(self, opt.key),
                                                f"option {opt.key}")
        return replace(self, **changes)


_tables: dict[tuple, tuple[Option, ...]] = {}
_classes: dict[tuple, type] = {}


def _registration() -> tuple:
    """What the table is made of: the registered backends and family option modules."""
    from .backend import registered as backends_registered
    from .family import registered as families_registered

    return (tuple(backends_registered.BACKEND_MODULES),
            tuple(families_registered.FAMILY_OPTION_MODULES))


def table() -> tuple[Option, ...]:
    """Every option: the model's, the core's, each registered backend's, each family's."""
    key = _registration()
    if key not in _tables:
        from .backend import backends

        opts = [*_model_options(), *_core_options()]
        for backend in backends():
            opts += [replace(o, owner=f"target {backend.name}") for o in backend.options]
        for module in key[1]:
            family, owned = importlib.import_module(module).OPTIONS
            opts += [replace(o, owner=f"family {family}") for o in owned]
        keys = [o.key for o in opts]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise RuntimeError(f"options declared twice: {', '.join(dupes)}")
        _tables[key] = tuple(opts)
    return _tables[key]


def option(key: str) -> Option:
    return next(o for o in table() if o.key == key)


def options_class() -> type:
    """`Options`: a dataclass with one field per API option, defaults from the table (of the
    registration in force: a backend registered later, by a test, gets its own class)."""
    key = _registration()
    if key not in _classes:
        cls = make_dataclass(
            "Options",
            [(o.key, Any, field(default=o.default)) for o in table() if o.api],
            bases=(_OptionsBase,))
        cls.__module__ = __name__
        cls.__doc__ = _OptionsBase.__doc__
        _classes[key] = cls
    return _classes[key]


def owned(owner: str, options) -> dict:
    """The values of the options `owner` owns ("family yolov3"), by key."""
    return {o.key: getattr(options, o.key) for o in table()
            if o.api and o.owner == owner and hasattr(options, o.key)}


def set_away_from_default(options) -> list[Option]:
    """The API options whose value is not their default."""
    return [o for o in table() if o.api and getattr(options, o.key, o.default) != o.default]


def refuse_foreign_targets(options) -> None:
    """An option of a target the conversion does not write is refused: it would be ignored."""
    for opt in set_away_from_default(options):
        kind, name = opt.owned_by
        if kind == "target" and name not in options.targets:
            raise UserError(f"{opt.shown} {opt.needs or f'applies to the {name} target'}: add "
                            f"--target {name} (or all)")


def refuse_foreign_family(options, family_name: str, kinds: dict[str, str]) -> None:
    """An option of another detector family, set away from its default, is refused.
    `kinds` names each family for messages ("yolov3" -> "a YOLOv3 detector")."""
    for opt in set_away_from_default(options):
        kind, name = opt.owned_by
        if kind == "family" and name != family_name:
            raise UserError(f"{opt.shown} applies to {kinds.get(name, name)}; this model is "
                            f"{kinds.get(family_name, family_name)}: drop it")


def for_targets(options, targets: tuple[str, ...]):
    """`options` for a conversion writing `targets` alone: the options of every other target
    back at their defaults (they would be refused, `refuse_foreign_targets`)."""
    others = {o.key: o.default for o in table()
              if o.api and o.owned_by[0] == "target" and o.owned_by[1] not in targets
              and hasattr(options, o.key)}
    return replace(options, targets=tuple(targets), **others)
