"""Conversion presets (configs/*.yaml): source normalisation, input size, classes, choices.

A preset is a flat YAML mapping; unknown keys are an error (a typo must not be ignored
silently), and every value goes through the same check as the command-line option that means
the same thing (ssdconv/values.py). Command-line flags override preset values.
"""

from __future__ import annotations

import os

from . import values
from .errors import UserError
from .options import table

BESIDE = ("model", "params")  # files named in a preset are looked up beside the preset first


def load_config(path: str | None) -> dict:
    """The preset's checked values (key -> normalised value); {} without a preset."""
    if not path:
        return {}
    import yaml

    values.check(values.input_file, path, "--config")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        raise UserError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") \
            from None
    except UnicodeDecodeError:
        raise UserError(f"config file {path} is not a UTF-8 text file; pass a YAML preset "
                        "(see configs/template.yaml)") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must be a mapping of keys to values (see "
                        "configs/template.yaml)")
    checked = {}
    keys = {o.key: o.check for o in table()}
    for key, value in data.items():
        if key not in keys:
            raise UserError(f"config file {path}: unknown key {key!r}; known keys are "
                            f"{', '.join(sorted(keys))}")
        if value is None:  # `key:` with nothing after it leaves the default
            continue
        if key in BESIDE and isinstance(value, str) and value.strip() and not os.path.isabs(value):
            beside = os.path.join(os.path.dirname(os.path.abspath(path)), value)
            if os.path.exists(beside):
                value = beside
        checked[key] = values.check(keys[key], value, f"config file {path}: {key}")
    return checked
