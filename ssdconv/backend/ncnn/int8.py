"""int8 ncnn layers, in the format ncnn's own `ncnn2int8` writes.

Why a module of its own: quantising a layer list is a step after the float layers exist (and
after a calibration that ran them), with its own format facts; the float writer stays unaware of
it except for the int8 storage flag of a weight buffer.

The format (ncnn src/layer/convolution.cpp and convolutiondepthwise.cpp `load_param` /
`load_model`, tools/quantize/ncnn2int8.cpp, Tencent/ncnn a4d2ea1d4):

* param `8=int8_scale_term`: 2 on a Convolution (one weight scale per output channel), 1 on a
  ConvolutionDepthWise (one per group); plus 100 when the layer hands its output to the next
  convolution already quantised ("requantize": the output blob holds int8 codes, not floats).
* .bin, per int8 layer: the weights as int8 behind the storage flag 0x000D4B38 (padded to 4
  bytes), the float32 bias as before, then raw float32 `weight_data_int8_scales` (num_output, or
  group, floats), `bottom_blob_int8_scales` (one float) and, for requantize, one
  `top_blob_int8_scales` float.
* A scale multiplies: code = clamp(round(x * scale), -127, 127), rounding half away from zero
  (ncnn's `float2int8`); the layer computes the integer sum and divides it by
  (input scale * weight scale) before the bias and the fused activation.

The weight scales are ncnn2table's: 127 / max|w| over each output channel (each group of a
ConvolutionDepthWise), but 31 / max|w| for a 3x3, stride 1, dilation 1 Convolution: such layers
take ncnn's int8 Winograd F(4,3) kernels, which hold transformed weights and inputs in int16,
and ncnn2table gives them 6-bit weights to keep those products in range. Measured on this x86
build, 8-bit weights there cut ssd_512_resnet50_v1_voc's raw error by 29 % with no visible
overflow, but ncnn's other kernels (ARM) could not be measured here and ncnn's runtimes expect
its own tool's tables (ncnn issue #4031 asks the same, unanswered), so ssdconv keeps the rule.
An all-zero channel gets scale 0, which ncnn's kernels read as "output is the bias". The input
scales come from a calibration (ssdconv/backend/ncnn/calibrate.py); given the same scales, ncnn2int8
writes the same .bin as this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from . import tables
from .writer import NcnnLayer, format_bin, format_param

QUANTIZABLE_TYPES = ("Convolution", "ConvolutionDepthWise")
INT8_MAX = 127
WINOGRAD_INT8_MAX = 31  # 6-bit weights for the int8 Winograd F(4,3) kernel
REQUANTIZE = 100  # added to int8_scale_term when the output is handed on as int8
SCALE_TERMS = {"Convolution": 2, "ConvolutionDepthWise": 1}


def round_to_int8(values: np.ndarray) -> np.ndarray:
    """ncnn's float2int8 on float32 `values`: round half away from zero, clamp to +-127."""
    v = np.asarray(values, np.float32).astype(np.float64)
    rounded = np.sign(v) * np.floor(np.abs(v) + 0.5)
    return np.clip(rounded, -INT8_MAX, INT8_MAX).astype(np.int8)


def _groups(layer: NcnnLayer) -> int:
    """How many weight scales the layer's format holds: output channels, or groups."""
    if layer.type == "ConvolutionDepthWise":
        return int(layer.params["group"])
    return int(layer.params["num_output"])


def uses_winograd_int8(layer: NcnnLayer) -> bool:
    """Whether ncnn2table gives this layer 6-bit weights (3x3 stride 1 dilation 1 Convolution)."""
    p = layer.params
    return (layer.type == "Convolution" and p["kernel_w"] == p["kernel_h"] == 3
            and p["stride_w"] == p["stride_h"] == 1 and p["dilation_w"] == p["dilation_h"] == 1)


def weight_scales(layer: NcnnLayer) -> np.ndarray:
    """float32 scales per output channel (per group for ConvolutionDepthWise), as ncnn2table."""
    weight = np.asarray(layer.weights[0], np.float32).reshape(_groups(layer), -1)
    absmax = np.abs(weight).max(axis=1)
    top = WINOGRAD_INT8_MAX if uses_winograd_int8(layer) else INT8_MAX
    with np.errstate(divide="ignore"):
        scales = np.where(absmax > 0, np.float32(top) / absmax, np.float32(0))
    return scales.astype(np.float32)


def quantize_weights(layer: NcnnLayer, scales: np.ndarray) -> np.ndarray:
    """The layer's weights as int8 codes, each channel (group) times its scale."""
    weight = np.asarray(layer.weights[0], np.float32).reshape(len(scales), -1)
    return round_to_int8(weight * scales[:, None]).reshape(-1)


def quantize_layer(layer: NcnnLayer, scale: float) -> None:
    """Make one float Convolution/ConvolutionDepthWise int8 in place (ncnn2int8's layout), its
    input quantised with `scale`."""
    if layer.type not in QUANTIZABLE_TYPES:
        raise RuntimeError(f"{layer.name}: {layer.type} has no int8 form")
    if not (np.isfinite(scale) and scale > 0):
        raise RuntimeError(f"{layer.name}: input scale {scale!r} is not a positive number")
    scales = weight_scales(layer)
    bias = layer.weights[1:]
    layer.weights = [quantize_weights(layer, scales), *bias, scales,
                     np.array([scale], np.float32)]
    layer.params["int8_scale_term"] = SCALE_TERMS[layer.type]


def is_int8(layer: NcnnLayer) -> bool:
    return bool(layer.params.get("int8_scale_term"))


def int8_scales(layer: NcnnLayer) -> tuple[np.ndarray, float, float | None]:
    """(weight scales, input scale, output scale or None) of an int8 layer, read from its
    buffers in ncnn's load order: weight, bias (if any), weight scales, input, output scale."""
    first = 2 if layer.params.get("bias_term") else 1
    w = layer.weights
    top = float(w[first + 2][0]) if layer.params["int8_scale_term"] > REQUANTIZE else None
    return np.asarray(w[first]), float(w[first + 1][0]), top


def input_scale(layer: NcnnLayer) -> float:
    """The bottom_blob_int8_scales value of an int8 layer."""
    return int8_scales(layer)[1]


def _readers(layers: list[NcnnLayer]) -> dict[str, list[NcnnLayer]]:
    out: dict[str, list[NcnnLayer]] = {}
    for x in layers:
        for b in x.inputs:
            out.setdefault(b, []).append(x)
    return out


def _int8_readers(readers: dict[str, list[NcnnLayer]], blob: str) -> list[NcnnLayer] | None:
    """The int8 convolutions that read `blob`, directly or through its Split; None if anything
    else reads it (a float layer needs the float value)."""
    direct = readers.get(blob, [])
    if len(direct) != 1:
        return None
    (reader,) = direct
    found = [reader]
    if reader.type == tables.SPLIT_TYPE:
        copies = [readers.get(b, []) for b in reader.outputs]
        if not all(len(c) == 1 for c in copies):
            return None
        found = [c[0] for c in copies]
    if all(x.type in QUANTIZABLE_TYPES and is_int8(x) and len(x.inputs) == 1 for x in found):
        return found
    return None


def fuse_requantize(layers: list[NcnnLayer], keep: frozenset[str] = frozenset()) -> list[str]:
    """ncnn2int8's fuse_requantize: an int8 convolution whose output only int8 convolutions read
    (directly or through a Split) writes that output as int8 at its readers' input scale, so it
    is never dequantised. Blobs in `keep` (the manifest's, users extract them) stay float.
    Returns the names of the layers changed."""
    readers = _readers(layers)
    changed = []
    for layer in layers:
        if layer.type not in QUANTIZABLE_TYPES or not is_int8(layer):
            continue
        if layer.params["int8_scale_term"] > REQUANTIZE or layer.outputs[0] in keep:
            continue
        found = _int8_readers(readers, layer.outputs[0])
        if not found:
            continue
        scales = {input_scale(x) for x in found}
        if len(scales) != 1:  # one blob, one calibration: a broken invariant
            raise RuntimeError(f"{layer.name}: its readers disagree on the input scale {scales}")
        layer.params["int8_scale_term"] += REQUANTIZE
        layer.weights.append(np.array([scales.pop()], np.float32))
        changed.append(layer.name)
    return changed


def quantize_layers(layers: list[NcnnLayer], input_scales: Mapping[str, float],
                    keep: frozenset[str] = frozenset()) -> list[str]:
    """Make each layer named in `input_scales` int8 (in place), then fuse requantize; returns
    the names of the layers that requantize their output."""
    by_name = {x.name: x for x in layers}
    unknown = set(input_scales) - set(by_name)
    if unknown:
        raise RuntimeError(f"input scales for layers that do not exist: {sorted(unknown)}")
    for name, scale in input_scales.items():
        quantize_layer(by_name[name], scale)
    return fuse_requantize(layers, keep)


class Calibration(Protocol):
    """What make_int8 needs of a calibration (`calibrate.NcnnCalibration` is the real one)."""

    def __call__(self, param_text: str, weights: bytes,
                 layer_inputs: dict[str, str]) -> dict[str, float | None]:
        """{layer: input scale, or None when its input was zero on every calibration image},
        measured on the float model (its .param text and .bin bytes)."""

    def describe(self) -> dict:
        """The calibration as the manifest records it (method, images, ...)."""


def make_int8(layers: list[NcnnLayer], calibration: Calibration,
              keep: frozenset[str] = frozenset()) -> dict:
    """Quantise the Convolution/ConvolutionDepthWise layers in place, calibrated on the float
    model these layers make, and return the manifest's approximation entry for it.

    Two kinds of layer stay float. One whose input was zero on every calibration image has no
    scale. One whose output is in `keep` (a graph output: a raw tensor users extract and the
    check compares with Gluon, which a decode reads next) stays float so that tensor carries no
    quantisation error of its own layer: a YOLOv3's three prediction convs, whose tw/th go
    straight into exp. On the demo YOLOv3 (500 held-out images, 100 calibration images) that
    took int8 mAP from 0.7810 with every convolution int8 to 0.7912 (fp32 0.8065) for 3 of its
    convolutions, and from 0.7865 to 0.7928 and 0.7866 to 0.7924 with two other calibration
    sets, though the raw outputs' rms error against fp32 falls by only 1-2 %; on
    yolo3_darknet53_voc the int8 model is as fast as ncnn2int8's (BENCHMARKS.md).
    An SSD's graph outputs are Concats, so no SSD layer is kept float by this: there keeping
    the 12 box/class predictors float moved the demo's mAP by -0.001 (noise) and on
    ssd_512_resnet50_v1_voc cut the raw error by 12 % for 2.5 % more time; the first
    convolution float moved mAP by -0.002 and cost 8 % for nothing, so it stays int8."""
    split_of = {b: x.inputs[0] for x in layers if x.type == tables.SPLIT_TYPE for b in x.outputs}
    quantizable = [x for x in layers if x.type in QUANTIZABLE_TYPES]
    kept = {x.name: f"its output {x.outputs[0]} is a graph output, extracted as float"
            for x in quantizable if x.outputs[0] in keep}
    # a Split's copies hold its input's values: calibrate each blob once
    targets = {x.name: split_of.get(x.inputs[0], x.inputs[0]) for x in quantizable
               if x.name not in kept}
    scales = calibration(format_param(layers), format_bin(layers), targets)
    chosen = {n: s for n, s in scales.items() if s is not None}
    kept.update({n: "its input was zero on every calibration image"
                 for n, s in scales.items() if s is None})
    requantized = quantize_layers(layers, chosen, keep)
    return {
        "what": "ncnn int8 (--ncnn-int8): Convolution/ConvolutionDepthWise weights int8 with a "
                "scale per output channel (per group for ConvolutionDepthWise), their inputs "
                "int8 with one calibrated scale per layer; bias and accumulation as ncnn's "
                "int8 kernels do them",
        "where": f"{len(chosen)} of {len(quantizable)} Convolution/ConvolutionDepthWise layers",
        "float_layers": kept,
        "requantized_layers": len(requantized),
        "calibration": calibration.describe(),
        "runtimes": ["ncnn"],
    }


def _table_float(value: float) -> str:
    return np.format_float_scientific(np.float32(value), unique=True, trim="-")


def scale_table(layers: list[NcnnLayer]) -> str:
    """The int8 layers' scales as ncnn2table writes its table (`NAME_param_0 w...` lines, then
    `NAME s` lines), so ncnn's ncnn2int8 can rebuild the model from the float one with them."""
    quantized = [x for x in layers if x.type in QUANTIZABLE_TYPES and is_int8(x)]
    weights = [" ".join([f"{x.name}_param_0", *map(_table_float, int8_scales(x)[0])])
               for x in quantized]
    inputs = [f"{x.name} {_table_float(input_scale(x))}" for x in quantized]
    return "\n".join(weights + inputs) + "\n" if quantized else ""
