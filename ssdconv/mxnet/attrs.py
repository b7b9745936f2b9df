"""Typed access to MXNet node attributes, with MXNet's own operator defaults.

An exported symbol omits every attribute left at its default: GluonCV's extra-layer BatchNorms
carry no attrs at all, so their eps is MXNet's 1e-3 and fix_gamma is true, not Gluon's 1e-5 and
false. Reading attributes through one place with the operator defaults (never `eval`) keeps the
converters from guessing.
"""

from __future__ import annotations

import ast
from typing import Any

# MXNet 1.9 operator defaults for the attributes the converters read.
OP_DEFAULTS: dict[str, dict[str, Any]] = {
    "Convolution": {
        "stride": (), "dilate": (), "pad": (), "num_group": 1, "no_bias": False, "layout": "None",
    },
    "BatchNorm": {
        "eps": 1e-3, "momentum": 0.9, "fix_gamma": True, "use_global_stats": False, "axis": 1,
    },
    "Pooling": {
        "pool_type": "max", "global_pool": False, "pooling_convention": "valid", "stride": (),
        "pad": (), "kernel": (), "count_include_pad": True, "layout": "None",
    },
    "Activation": {},
    "LeakyReLU": {"act_type": "leaky", "slope": 0.25},
    "clip": {},
    "L2Normalization": {"eps": 1e-10, "mode": "instance"},
    "Flatten": {},
    "Concat": {"dim": 1},
    "concat": {"dim": 1},
    "transpose": {"axes": ()},
    "Reshape": {"shape": (), "reverse": False},
    "reshape": {"shape": (), "reverse": False},
    "softmax": {"axis": -1, "temperature": "None", "use_length": False},
    "SoftmaxActivation": {"mode": "instance"},
    "_contrib_box_nms": {
        "overlap_thresh": 0.5, "valid_thresh": 0.0, "topk": -1, "coord_start": 2,
        "score_index": 1, "id_index": -1, "background_id": -1, "force_suppress": False,
        "in_format": "corner", "out_format": "corner",
    },
    "_contrib_box_decode": {
        "std0": 1.0, "std1": 1.0, "std2": 1.0, "std3": 1.0, "clip": -1.0, "format": "center",
    },
    "slice_axis": {"end": "None"},
    "_mul_scalar": {"scalar": 1.0},
    "_div_scalar": {"scalar": 1.0},
    "_plus_scalar": {"scalar": 1.0},
    "_minus_scalar": {"scalar": 1.0},
    "repeat": {"axis": "None"},
    "slice_like": {"axes": ()},
    "Crop": {"num_args": 1, "offset": (0, 0), "h_w": (0, 0), "center_crop": False},
    "UpSampling": {"num_args": 1},  # sample_type and scale are required
    "_greater_scalar": {"scalar": 1.0},
    "_minimum_scalar": {"scalar": 1.0},
    "Dropout": {"p": 0.5, "mode": "training"},
    "FullyConnected": {"no_bias": False, "flatten": True},
    "SwapAxis": {"dim1": 0, "dim2": 0},
    "swapaxes": {"dim1": 0, "dim2": 0},
    "SliceChannel": {"axis": 1, "squeeze_axis": False},
    "split": {"axis": 1, "squeeze_axis": False},
    "SoftmaxOutput": {"multi_output": False, "preserve_shape": False},
    "Softmax": {"multi_output": False, "preserve_shape": False},
}


class AttrReader:
    """Reads one node's attributes as typed values, falling back to MXNet's defaults."""

    def __init__(self, op: str, raw: dict[str, str] | None) -> None:
        self.op = op
        self.raw = dict(raw or {})
        self.defaults = OP_DEFAULTS.get(op, {})

    def _value(self, key: str, default: Any) -> Any:
        if key in self.raw:
            return self.raw[key]
        if default is not None:
            return default
        if key in self.defaults:
            return self.defaults[key]
        raise KeyError(f"attribute {key!r} missing on {self.op} and it has no default")

    def str(self, key: str, default: str | None = None) -> str:
        return str(self._value(key, default))

    def int(self, key: str, default: int | None = None) -> int:
        return int(float(self._value(key, default)))

    def float(self, key: str, default: float | None = None) -> float:
        return float(self._value(key, default))

    def bool(self, key: str, default: bool | None = None) -> bool:
        v = self._value(key, default)
        if isinstance(v, bool):
            return v
        text = str(v).strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise ValueError(f"attribute {key!r} of {self.op} is not a boolean: {v!r}")

    def tuple(self, key: str, default: tuple | None = None) -> tuple:
        """Parse '(1, 2)', '[1,2]', '1' or '(None, 3)' literally (never eval)."""
        v = self._value(key, default)
        if isinstance(v, tuple):
            return v
        text = str(v).strip()
        if text in ("", "()", "[]"):
            return ()
        parsed = ast.literal_eval(text.replace("None", "None"))
        if isinstance(parsed, (list, tuple)):
            return tuple(parsed)
        return (parsed,)

    def int_tuple(self, key: str, n: int, fill: int) -> tuple[int, ...]:
        """An n-tuple of ints, an empty attribute meaning `fill` everywhere (MXNet's rule)."""
        t = self.tuple(key)
        if not t:
            return (fill,) * n
        if len(t) == 1 and n > 1:
            return (int(t[0]),) * n
        return tuple(int(x) for x in t)
