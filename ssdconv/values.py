"""One check per kind of value a user gives: command-line options, config keys, API options.

Each check takes the raw value (a command-line string, or what YAML or a Python caller gave),
returns it normalised, and raises `BadValue` saying what is wrong and what is allowed. The caller
adds where the value came from (`--name`, `config file c.yaml: classes`, `Options.relu6`), so
the command line, the presets and the API refuse the same values with the same words.

This module stays cheap to import (no MXNet): the command line checks every option before it
loads anything.
"""

from __future__ import annotations

import math
import os
import unicodedata
from collections.abc import Callable

from .errors import UserError

CHANNEL_ORDERS = ("RGB", "BGR")
MAX_STEM = 128  # leaves room for the suffixes and temporary names within NAME_MAX (255)
MAX_SIDE = 4096  # an input side beyond this is a typo, and MXNet would try to allocate it
MAX_SEED = 2**31 - 1  # numpy's RandomState takes seeds below 2**32; seeded.py offsets them


class BadValue(ValueError):
    """What is wrong with one value and what is allowed; the caller says where it came from."""


def shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _int(value, allowed: str) -> int:
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    elif isinstance(value, int) and not isinstance(value, bool):
        return value
    raise BadValue(f"{allowed}, not {shown(value)}")


def _finite(value, allowed: str) -> float:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise BadValue(f"{allowed}, not {shown(value)}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadValue(f"{allowed}, not {shown(value)}")
    return float(value)


def as_list(value, allowed: str) -> list:
    """A comma-separated string (the command line) or a list (YAML, Python) as a list."""
    if isinstance(value, str):
        return [t.strip() for t in value.split(",")]
    if isinstance(value, list | tuple):
        return list(value)
    raise BadValue(f"{allowed}, not {shown(value)}")


def _has_control(text: str) -> bool:
    """NUL, newline, tab, escape...: characters no file name or class name should hold."""
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def file_stem(value) -> str:
    """An output file stem: NAME.prototxt, NAME.param, ... are written under it in `-o`."""
    allowed = (f"a plain file name of 1 to {MAX_STEM} characters without '/', '\\' or "
               "control characters, not starting with '.' or '-' (e.g. my_ssd)")
    if not isinstance(value, str):
        raise BadValue(f"must be {allowed}, not {shown(value)}")
    bad = (not value or len(value) > MAX_STEM or "/" in value or "\\" in value
           or value.startswith((".", "-")) or value != value.strip() or _has_control(value))
    if bad:
        raise BadValue(f"must be {allowed}, not {shown(value)}")
    return value


def class_names(value) -> list[str]:
    """Class names in the model's id order: non-empty, distinct, no control characters."""
    allowed = "must be class names, comma separated (a,b,c) or a list"
    names = as_list(value, allowed)
    if not names:
        raise BadValue(f"{allowed}; none given")
    for name in names:
        if not isinstance(name, str):
            raise BadValue(f"{allowed} of strings, not {shown(name)}")
        if not name.strip():
            raise BadValue(f"{allowed}; {shown(value)} has an empty name")
        if _has_control(name):
            raise BadValue(f"{allowed}; {shown(name)} has control characters")
    names = [n.strip() for n in names]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BadValue(f"must be distinct class names; {', '.join(dupes)} given twice")
    return names


def seed(value) -> int:
    allowed = f"must be a whole number from 0 to {MAX_SEED}"
    n = _int(value, allowed)
    if not 0 <= n <= MAX_SEED:
        raise BadValue(f"{allowed}, not {n}")
    return n


def input_size(value) -> tuple[int, int]:
    """H,W (or one side S for a square input) in pixels."""
    allowed = f"must be H,W or S: whole numbers from 1 to {MAX_SIDE} (e.g. 300 or 512,512)"
    if isinstance(value, str):
        parts = value.replace("x", ",").split(",")
    elif isinstance(value, int) and not isinstance(value, bool):
        parts = [value]
    else:
        parts = as_list(value, allowed)
    sides = [_int(p, allowed) for p in parts]
    if len(sides) == 1:
        sides = sides * 2
    if len(sides) != 2 or not all(1 <= s <= MAX_SIDE for s in sides):
        raise BadValue(f"{allowed}, not {shown(value)}")
    return sides[0], sides[1]


def _triple(value, allowed: str, positive: bool) -> tuple[float, float, float]:
    items = as_list(value, allowed)
    if len(items) != 3:
        raise BadValue(f"{allowed}, not {shown(value)}")
    nums = tuple(_finite(x, allowed) for x in items)
    if positive and min(nums) <= 0:
        raise BadValue(f"{allowed}, not {shown(value)}")
    return nums


def source_mean(value) -> tuple[float, float, float]:
    return _triple(value, "must be three finite numbers, R,G,B in pixel units (e.g. "
                   "[123.675, 116.28, 103.53])", positive=False)


def source_std(value) -> tuple[float, float, float]:
    return _triple(value, "must be three finite numbers above 0, R,G,B in pixel units (e.g. "
                   "[58.395, 57.12, 57.375])", positive=True)


def choice(value, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise BadValue(f"must be one of {', '.join(choices)}, not {shown(value)}")
    return value


INPUT_ARITHMETIC = ("fold", "keep")


def input_arithmetic(value) -> str:
    return choice(value, INPUT_ARITHMETIC)


#: The layouts a headless model's outputs can have (`--headless-layout`): the prediction convs'
#: own NCHW maps (nothing after them: no Permute, which NNIE refuses but for (0,2,3,1) and RKNN's
#: RK3566/68 NPU runs on the CPU), or each permuted (0,2,3,1) as HiSilicon's SSD sample reads
#: its report nodes
HEADLESS_LAYOUTS = ("nchw", "nhwc")


def headless_layout(value) -> str:
    return choice(value, HEADLESS_LAYOUTS)


def channel_order(value) -> str:
    return choice(value, CHANNEL_ORDERS)


def skip_passes(value) -> tuple[str, ...]:
    from .passes.pipeline import skippable_names

    names = skippable_names()
    items = [] if value in ("", None) else as_list(value, "must be pass names")
    unknown = [p for p in items if p not in names]
    if unknown:
        raise BadValue(f"must name passes from {', '.join(names)}; {shown(unknown[0])} is not "
                       "one")
    return tuple(items)


def flag(value) -> bool:
    if not isinstance(value, bool):
        raise BadValue(f"must be true or false, not {shown(value)}")
    return value


def _whole_at_least(value, lowest: int) -> int:
    allowed = f"must be a whole number of {lowest} or more"
    n = _int(value, allowed)
    if n < lowest:
        raise BadValue(f"{allowed}, not {n}")
    return n


def count(value) -> int:
    return _whole_at_least(value, 1)


def start(value) -> int:
    return _whole_at_least(value, 0)


def fraction(value) -> float:
    """A number strictly between 0 and 1 (a score or IoU threshold)."""
    allowed = "must be a number between 0 and 1"
    number = _finite(value, allowed)
    if not 0.0 < number < 1.0:
        raise BadValue(f"{allowed}, not {shown(value)}")
    return number


def text(value) -> str:
    if not isinstance(value, str) or not value.strip() or _has_control(value):
        raise BadValue(f"must be a non-empty name or path, not {shown(value)}")
    return value


def input_file(value) -> str:
    """An existing regular file (a directory or a device is not one)."""
    path = text(value)
    if not os.path.exists(path):
        raise BadValue(f"{path} does not exist")
    if os.path.isdir(path):
        raise BadValue(f"{path} is a directory; pass a file")
    if not os.path.isfile(path):
        raise BadValue(f"{path} is not a regular file")
    if not os.access(path, os.R_OK):
        raise BadValue(f"{path} cannot be read (permission denied)")
    return path


def calibration(value) -> tuple[str, ...]:
    """int8 calibration sources: image files and folders of images, at least one, each
    existing (whether they hold images is checked when they are listed, before converting)."""
    allowed = "must be one or more images or folders of images"
    if value in ((), [], None, ""):
        return ()
    items = [value] if isinstance(value, str) else as_list(value, allowed)
    paths = []
    for item in items:
        path = text(item)
        if not os.path.exists(path):
            raise BadValue(f"{allowed}; {path} does not exist")
        if not (os.path.isdir(path) or os.path.isfile(path)):
            raise BadValue(f"{allowed}; {path} is neither a file nor a folder")
        paths.append(path)
    return tuple(paths)


def output_dir(value) -> str:
    """A directory that exists or can be created: every ancestor that exists is a directory."""
    path = text(value)
    if os.path.exists(path) and not os.path.isdir(path):
        raise BadValue(f"{path} is a file, not a directory")
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise BadValue(f"{path} cannot be created: {probe} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise BadValue(f"{path} cannot be written: no write permission in {probe}")
    return path


def model(value) -> str:
    return text(value)


def check(check_fn: Callable, value, where: str):
    """`check_fn(value)`, with a failure turned into a one-line UserError naming `where`."""
    try:
        return check_fn(value)
    except BadValue as exc:
        raise UserError(f"{where}: {exc}") from None
