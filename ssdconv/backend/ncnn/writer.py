"""The one place that knows ncnn's .param text format and .bin layout.

Converters build `NcnnLayer`s with named fields; this module turns them into the two files.
Why it checks so much: ncnn's parser is unforgiving in quiet ways. A token longer than 15
characters is split, a float written without '.' or 'e' is stored as an int and read back as its
bit pattern, and its own decimal parser keeps at most nine digits either side of the point in a
32-bit unsigned int. Every float written here is therefore re-parsed the way ncnn parses it and
must come back as the same float32.

.param text (ncnn src/net.cpp, src/paramdict.cpp):
    7767517
    <layer_count> <blob_count>
    <Type> <name> <n_in> <n_out> <in blobs...> <out blobs...> <id>=<v> ... -<23300+id>=<n>,<v1>,...

.bin: for each layer in .param order, its weight buffers in the layer's `load_model` order.
A Convolution/ConvolutionDepthWise weight (ncnn loads it with type 0) starts with a 4-byte flag:
0 for float32, 0x01306B47 for float16, 0x000D4B38 for int8 data (an int8 array: see int8.py).
All other buffers are raw float32. Every buffer is padded to a multiple of 4 bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import UserError
from . import tables

MAGIC = 7767517
_MAX_TOKEN = 15  # ParamDict scans values with "%15[^,\n ]"
_MAX_NAME = 255  # Net::load_param scans names with "%255s"
_FP16_MAX = 65504.0


@dataclass
class NcnnLayer:
    """One ncnn layer: type, name, blob names, named params (see `tables.PARAMS`), weights.

    `weights` are float arrays in ncnn's `load_model` order; the writer flattens them (C order)
    and decides the storage (flag, float16) from the layer type.
    """

    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[str, Any] = field(default_factory=dict)
    weights: list[np.ndarray] = field(default_factory=list)


def _ncnn_parse_float(text: str) -> float:
    """ncnn's `vstr_to_float`, step for step (double accumulation, uint32 digit groups)."""
    m = re.fullmatch(r"([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?)(\d+))?", text)
    if m is None:
        raise ValueError(f"not a number: {text!r}")
    sign, whole, frac, esign, exp = m.groups()
    v = float(int(whole or "0") % 2**32)
    if frac is not None:
        pow10 = 10 ** len(frac) % 2**32
        v += (int(frac or "0") % 2**32) / float(pow10)
    if exp is not None:
        scale = 1.0
        e = int(exp)
        while e >= 8:
            scale *= 1e8
            e -= 8
        while e > 0:
            scale *= 10.0
            e -= 1
        v = v / scale if esign == "-" else v * scale
    return float(np.float32(-v if sign == "-" else v))


def _fits_parser(text: str) -> bool:
    mantissa = re.split(r"[eE]", text)[0].lstrip("+-")
    whole, _, frac = mantissa.partition(".")
    return len(text) <= _MAX_TOKEN and len(whole) <= 9 and len(frac) <= 9


def format_float(value: float) -> str:
    """Shortest text that ncnn reads back as exactly `float32(value)` (always has '.' or 'e')."""
    f = np.float32(value)
    if not np.isfinite(f):
        raise ValueError(f"ncnn params cannot hold {value}")
    candidates = [
        np.format_float_positional(f, unique=True, trim="0"),
        np.format_float_scientific(f, unique=True, trim="0"),
    ]
    candidates += [np.format_float_scientific(f, precision=p, unique=False) for p in (8, 9)]
    for text in candidates:
        if _fits_parser(text) and _ncnn_parse_float(text) == float(f):
            return text
    raise ValueError(f"no ncnn-readable text for float {value!r}")


def format_int(value: Any) -> str:
    """An int param; refuses non-integral floats rather than truncating them."""
    if isinstance(value, (float, np.floating)) and not float(value).is_integer():
        raise ValueError(f"int param given non-integral value {value!r}")
    text = str(int(value))
    if len(text) > _MAX_TOKEN:
        raise ValueError(f"int param {value} too long for ncnn")
    return text


_SCALAR_FORMATS = {tables.INT: format_int, tables.FLOAT: format_float}
_ARRAY_ELEMENT_FORMATS = {tables.INT_ARRAY: format_int, tables.FLOAT_ARRAY: format_float}


def _format_param(pid: int, kind: str, value: Any) -> str:
    if kind in _SCALAR_FORMATS:
        return f"{pid}={_SCALAR_FORMATS[kind](value)}"
    elements = [_ARRAY_ELEMENT_FORMATS[kind](v) for v in value]
    return f"{-23300 - pid}={','.join([str(len(elements)), *elements])}"


def _check_name(name: str, what: str) -> None:
    """Names come from the user's model: one that ncnn cannot read back is a UserError."""
    if not name or len(name) > _MAX_NAME or any(ch.isspace() for ch in name):
        raise UserError(f"{what} name {name!r} cannot be written to an ncnn .param (ncnn "
                        f"names are 1 to {_MAX_NAME} characters without spaces); rename it in "
                        "the model, or convert with --target caffe")


def layer_line(layer: NcnnLayer) -> str:
    """The .param line of one layer; params sorted by id."""
    spec = tables.PARAMS.get(layer.type)
    if spec is None:
        raise KeyError(f"no ncnn param table for layer type {layer.type}")
    _check_name(layer.type, "layer type")
    _check_name(layer.name, "layer")
    for blob in (*layer.inputs, *layer.outputs):
        _check_name(blob, "blob")
    unknown = set(layer.params) - set(spec)
    if unknown:
        raise KeyError(f"{layer.name}: {layer.type} has no params {sorted(unknown)}")
    items = sorted((spec[k][0], spec[k][1], v) for k, v in layer.params.items())
    head = [layer.type, layer.name, str(len(layer.inputs)), str(len(layer.outputs))]
    params = [_format_param(pid, kind, v) for pid, kind, v in items]
    return " ".join(head + layer.inputs + layer.outputs + params)


def format_param(layers: Iterable[NcnnLayer]) -> str:
    """The whole .param text. Layers must be in topological order, each blob written once."""
    layers = list(layers)
    blobs: list[str] = []
    seen: set[str] = set()
    produced: set[str] = set()
    for layer in layers:
        for b in layer.inputs:
            if b not in produced:
                raise ValueError(f"{layer.name} reads {b} before any layer writes it")
        for b in layer.outputs:
            if b in produced:
                raise ValueError(f"blob {b} written twice ({layer.name})")
            produced.add(b)
        for b in (*layer.inputs, *layer.outputs):
            if b not in seen:
                seen.add(b)
                blobs.append(b)
    lines = [str(MAGIC), f"{len(layers)} {len(blobs)}"] + [layer_line(x) for x in layers]
    return "\n".join(lines) + "\n"


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _flagged_buffer(array: np.ndarray, fp16: bool) -> bytes:
    array = np.asarray(array)
    if array.dtype == np.int8:  # already quantised (int8.py); fp16 is for float weights
        flag = np.array(tables.WEIGHT_FLAG_INT8, dtype="<u4").tobytes()
        return _pad4(flag + np.ascontiguousarray(array).ravel().tobytes())
    flat = np.ascontiguousarray(array, dtype=np.float64).ravel()
    if not fp16:
        flag = np.array(tables.WEIGHT_FLAG_FP32, dtype="<u4").tobytes()
        return _pad4(flag + flat.astype("<f4").tobytes())
    flag = np.array(tables.WEIGHT_FLAG_FP16, dtype="<u4").tobytes()
    return _pad4(flag + flat.astype("<f2").tobytes())


def _raw_buffer(array: np.ndarray) -> bytes:
    return _pad4(np.ascontiguousarray(array, dtype="<f4").ravel().tobytes())


def format_bin(layers: Iterable[NcnnLayer], fp16: bool = False) -> bytes:
    """The .bin bytes: weight buffers in layer order. fp16 applies to the float weights of the
    flagged layers only (convolutions, inner products)."""
    chunks: list[bytes] = []
    for layer in layers:
        for i, array in enumerate(layer.weights):
            if not np.all(np.isfinite(np.asarray(array, dtype=np.float64))):
                raise ValueError(f"{layer.name}: weight buffer {i} holds inf or nan")
            flagged = i == 0 and layer.type in tables.FLAGGED_WEIGHT_TYPES
            peak = float(np.abs(np.asarray(array, np.float64)).max(initial=0.0))
            if flagged and fp16 and peak > _FP16_MAX:
                raise UserError(f"{layer.name}: weights up to {peak:.6g} exceed the float16 "
                                f"range ({_FP16_MAX:g}); convert without --ncnn-fp16")
            chunks.append(_flagged_buffer(array, fp16) if flagged else _raw_buffer(array))
    return b"".join(chunks)

