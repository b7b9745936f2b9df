"""Conversion presets (configs/*.yaml): source normalisation, input size, classes, choices.

A preset is a flat YAML mapping; unknown keys are an error (a typo must not be ignored
silently). Command-line flags override preset values.
"""

from __future__ import annotations

import os

from .errors import UserError

KEYS = {
    "model": str, "params": str, "classes": list, "seed": int, "input_size": list,
    "source_mean": list, "source_std": list, "source_channel_order": str, "relu6": str,
    "target": str, "skip_passes": list, "ncnn_fp16": bool,
}


def load_config(path: str | None) -> dict:
    if not path:
        return {}
    import yaml

    if not os.path.isfile(path):
        raise UserError(f"config file {path} does not exist")
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") \
            from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must be a mapping of keys to values")
    for key, value in data.items():
        if key not in KEYS:
            raise UserError(f"config file {path}: unknown key {key!r}; known keys are "
                            f"{', '.join(sorted(KEYS))}")
        if value is not None and not isinstance(value, KEYS[key]):
            raise UserError(f"config file {path}: {key} must be a {KEYS[key].__name__}")
    for key in ("model", "params"):  # files named in a preset are relative to the preset
        value = data.get(key)
        if value and not os.path.isabs(value):
            beside = os.path.join(os.path.dirname(os.path.abspath(path)), value)
            if os.path.exists(beside):
                data[key] = beside
    return data
