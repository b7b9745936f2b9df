"""ncnn layer type names, param ids and enum values, as data.

Why a table: ncnn reads every layer parameter by a bare integer id whose meaning, value type and
default live only in `src/layer/<layer>.cpp` (checked against Tencent/ncnn a4d2ea1d4, the source
of the 1.0.20261020 wheel). Keeping them in one place lets the converters speak in field names
("kernel_w", "pad_mode") and lets the writer check that each field exists and has the right type.

The value type matters, not just the id: ncnn keeps int and float params in a union and a float
field written as "6" (no '.') is read back as the bit pattern of the int 6. So every field says
whether it is an int, a float, an int array or a float array.
"""

from __future__ import annotations

INT = "int"
FLOAT = "float"
INT_ARRAY = "int_array"
FLOAT_ARRAY = "float_array"

#: ncnn's "not given" marker, used e.g. for PriorBox image size read from bottom[1].
UNSET = -233

#: The ncnn layer type written for each IR op, when the op has one natural counterpart.
#: Converters may choose another type for special cases (a grouped Conv, a partial Flatten).
LAYER_TYPES: dict[str, str] = {
    "Input": "Input",
    "Conv": "Convolution",
    "InnerProduct": "InnerProduct",
    "BatchNorm": "BatchNorm",
    "Scale": "Scale",
    "ReLU": "ReLU",
    "PReLU": "PReLU",
    "ELU": "ELU",
    "TanH": "TanH",
    "Clip": "Clip",
    "Pool": "Pooling",
    "Eltwise": "Eltwise",
    "Concat": "Concat",
    "Permute": "Permute",
    "ShuffleChannel": "ShuffleChannel",
    "Flatten": "Flatten",
    "Reshape": "Reshape",
    "Softmax": "Softmax",
    "Normalize": "Normalize",
    "Slice": "Slice",
    "Power": "Power",
    "Sigmoid": "Sigmoid",
    "Exp": "Exp",
    "Upsample": "Interp",
    "PriorBox": "PriorBox",
    "DetectionOutput": "DetectionOutput",
    "Yolov3DetectionOutput": "Yolov3DetectionOutput",
}

#: Conv with group > 1 (ncnn's ConvolutionDepthWise handles any group count, not only depthwise).
GROUPED_CONV_TYPE = "ConvolutionDepthWise"
#: Fan-out: ncnn lets each blob be read by one layer only.
SPLIT_TYPE = "Split"

_CONV_FIELDS: dict[str, tuple[int, str]] = {
    "num_output": (0, INT),
    "kernel_w": (1, INT),
    "dilation_w": (2, INT),
    "stride_w": (3, INT),
    "pad_left": (4, INT),
    "bias_term": (5, INT),
    "weight_data_size": (6, INT),
    "kernel_h": (11, INT),
    "dilation_h": (12, INT),
    "stride_h": (13, INT),
    "pad_top": (14, INT),
    "pad_right": (15, INT),
    "pad_bottom": (16, INT),
    "pad_value": (18, FLOAT),
    "int8_scale_term": (8, INT),
    "activation_type": (9, INT),
    "activation_params": (10, FLOAT_ARRAY),
}

_SHAPE_FIELDS: dict[str, tuple[int, str]] = {
    "w": (0, INT),
    "h": (1, INT),
    "c": (2, INT),
    "d": (11, INT),
}

#: Per ncnn layer type: field name -> (param id, value type).
PARAMS: dict[str, dict[str, tuple[int, str]]] = {
    "Input": dict(_SHAPE_FIELDS),
    "Convolution": dict(_CONV_FIELDS),
    "ConvolutionDepthWise": {**_CONV_FIELDS, "group": (7, INT)},
    "InnerProduct": {"num_output": (0, INT), "bias_term": (1, INT), "weight_data_size": (2, INT)},
    "BatchNorm": {"channels": (0, INT), "eps": (1, FLOAT)},
    "Scale": {"scale_data_size": (0, INT), "bias_term": (1, INT)},
    "ReLU": {"slope": (0, FLOAT)},
    "PReLU": {"num_slope": (0, INT)},
    "ELU": {"alpha": (0, FLOAT)},
    "TanH": {},
    "Clip": {"min": (0, FLOAT), "max": (1, FLOAT)},
    "Pooling": {
        "pooling_type": (0, INT),
        "kernel_w": (1, INT),
        "stride_w": (2, INT),
        "pad_left": (3, INT),
        "global_pooling": (4, INT),
        "pad_mode": (5, INT),
        "avgpool_count_include_pad": (6, INT),
        "adaptive_pooling": (7, INT),
        "out_w": (8, INT),
        "kernel_h": (11, INT),
        "stride_h": (12, INT),
        "pad_top": (13, INT),
        "pad_right": (14, INT),
        "pad_bottom": (15, INT),
        "out_h": (18, INT),
    },
    "Eltwise": {"op_type": (0, INT), "coeffs": (1, FLOAT_ARRAY)},
    "Concat": {"axis": (0, INT)},
    "Permute": {"order_type": (0, INT)},
    "ShuffleChannel": {"group": (0, INT), "reverse": (1, INT)},
    "Flatten": {},
    "Reshape": dict(_SHAPE_FIELDS),
    "Softmax": {"axis": (0, INT), "fixbug0": (1, INT)},
    "Normalize": {
        "across_spatial": (0, INT),
        "channel_shared": (1, INT),
        "eps": (2, FLOAT),
        "scale_data_size": (3, INT),
        "across_channel": (4, INT),
        "eps_mode": (9, INT),
    },
    "Slice": {"slices": (0, INT_ARRAY), "axis": (1, INT)},
    "Power": {"power": (0, FLOAT), "scale": (1, FLOAT), "shift": (2, FLOAT)},
    "Sigmoid": {},
    "Exp": {"base": (0, FLOAT), "scale": (1, FLOAT), "shift": (2, FLOAT)},
    "Interp": {
        "resize_type": (0, INT),
        "height_scale": (1, FLOAT),
        "width_scale": (2, FLOAT),
        "output_height": (3, INT),
        "output_width": (4, INT),
    },
    "PriorBox": {
        "min_sizes": (0, FLOAT_ARRAY),
        "max_sizes": (1, FLOAT_ARRAY),
        "aspect_ratios": (2, FLOAT_ARRAY),
        "variance0": (3, FLOAT),
        "variance1": (4, FLOAT),
        "variance2": (5, FLOAT),
        "variance3": (6, FLOAT),
        "flip": (7, INT),
        "clip": (8, INT),
        "image_width": (9, INT),
        "image_height": (10, INT),
        "step_width": (11, FLOAT),
        "step_height": (12, FLOAT),
        "offset": (13, FLOAT),
        "step_mmdetection": (14, INT),
        "center_mmdetection": (15, INT),
    },
    "DetectionOutput": {
        "num_class": (0, INT),
        "nms_threshold": (1, FLOAT),
        "nms_top_k": (2, INT),
        "keep_top_k": (3, INT),
        "confidence_threshold": (4, FLOAT),
        "variance0": (5, FLOAT),
        "variance1": (6, FLOAT),
        "variance2": (7, FLOAT),
        "variance3": (8, FLOAT),
    },
    # mask is read as `static_cast<int>(mask[i])` from a float Mat: written as floats (6.0), since
    # an element without '.' or 'e' is stored as the int's bit pattern (src/paramdict.cpp).
    "Yolov3DetectionOutput": {
        "num_class": (0, INT),
        "num_box": (1, INT),
        "confidence_threshold": (2, FLOAT),
        "nms_threshold": (3, FLOAT),
        "biases": (4, FLOAT_ARRAY),
        "mask": (5, FLOAT_ARRAY),
        "anchors_scale": (6, FLOAT_ARRAY),
    },
    "Split": {},
}

#: Values of the `activation_type` field: the activation a Convolution/ConvolutionDepthWise
#: (or InnerProduct) applies to its own output (src/layer/fused_activation.h). Its
#: `activation_params` are [slope] for leaky_relu, [min, max] for clip, [alpha, beta] for
#: hardswish, none otherwise.
ACTIVATION_TYPES: dict[str, int] = {
    "none": 0, "relu": 1, "leaky_relu": 2, "clip": 3, "sigmoid": 4, "mish": 5, "hardswish": 6,
}
#: Layer types that can carry a fused activation: those whose params have `activation_type`.
ACTIVATION_HOSTS: tuple[str, ...] = tuple(t for t, f in PARAMS.items() if "activation_type" in f)

#: Layer types whose first weight buffer ncnn loads with `mb.load(n, 0)`: it starts with a 4-byte
#: storage flag and may be stored as float16. Every other buffer is raw float32 (type 1).
FLAGGED_WEIGHT_TYPES = frozenset({"Convolution", "ConvolutionDepthWise", "InnerProduct"})
#: Storage flags ncnn's ModelBin recognises in front of a type-0 buffer.
WEIGHT_FLAG_FP32 = 0
WEIGHT_FLAG_FP16 = 0x01306B47
WEIGHT_FLAG_INT8 = 0x000D4B38

POOL_TYPES: dict[str, int] = {"max": 0, "avg": 1}
#: Pooling pad_mode: 0 pads the tail so the last partial window exists (plain ceil, no Caffe
#: "last window starts inside" rule); 1 uses exactly the pads given (floor).
POOL_PAD_MODES: dict[str, int] = {"full": 0, "valid": 1}
ELTWISE_OPS: dict[str, int] = {"prod": 0, "sum": 1, "max": 2}
#: Interp resize_type 1: nearest, source index (int)(y * (1.f / height_scale)) (interp.cpp).
INTERP_NEAREST = 1
#: Exp base -1 means e (exp.cpp).
EXP_BASE_E = -1.0
#: Normalize eps_mode 0 is x / sqrt(sum x^2 + eps), the Caffe and MXNet formula.
NORMALIZE_EPS_MODE_CAFFE = 0

#: ncnn field names of a shape, in the order of a caffe shape without batch (outer first).
#: ncnn Mats have at most 4 axes: c, d, h, w.
SHAPE_FIELDS_BY_RANK: dict[int, tuple[str, ...]] = {
    1: ("w",),
    2: ("h", "w"),
    3: ("c", "h", "w"),
    4: ("c", "d", "h", "w"),
}

#: Permute order_type per rank (batch excluded). Key: for output w, h, (d), c in that order, the
#: input axis it comes from, as written in ncnn's permute.cpp comments ("3 = c w h").
PERMUTE_ORDER_TYPES: dict[int, dict[str, int]] = {
    1: {"w": 0},
    2: {"wh": 0, "hw": 1},
    3: {"whc": 0, "hwc": 1, "wch": 2, "cwh": 3, "hcw": 4, "chw": 5},
    4: {
        "whdc": 0, "hwdc": 1, "wdhc": 2, "dwhc": 3, "hdwc": 4, "dhwc": 5,
        "whcd": 6, "hwcd": 7, "wchd": 8, "cwhd": 9, "hcwd": 10, "chwd": 11,
        "wdch": 12, "dwch": 13, "wcdh": 14, "cwdh": 15, "dcwh": 16, "cdwh": 17,
        "hdcw": 18, "dhcw": 19, "hcdw": 20, "chdw": 21, "dchw": 22, "cdhw": 23,
    },
}
