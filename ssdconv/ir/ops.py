"""The IR op vocabulary: for each op, its attributes and weight roles.

This table is the contract between the frontend (which writes IR) and the emitters (which read
it). Semantics follow Caffe's (NCHW, batch 1) unless a note says otherwise. Every attribute is
always present on a node (the frontend fills defaults), so emitters never guess. `validate`
checks each node against it (attributes, their choices, the input count) and the shape rules
check what they compute from (axes, orders, slice points); a graph breaking it is a bug in
ssdconv, an internal error in every backend (see `ssdconv.backend`).

| op | attrs | weights | notes |
|---|---|---|---|
| Input | shape (tuple) | | one per graph input |
| Identity | | | a no-op (Dropout, copy); drop_noops removes it unless it writes a graph output (caffe writes that one as an exact Power copy, ncnn refuses it) |
| Conv | num_output, kernel (kh,kw), stride (sh,sw), pad (ph,pw), dilation (dh,dw), group, bias (bool) | weight (O, I/group, kh, kw), bias (O) if bias | |
| InnerProduct | num_output, bias (bool) | weight (O, K), bias (O) if bias | y = x' W^T (+ b) with x' the input flattened from axis 1 in C-major order (Caffe's), K = prod(shape[1:]); output (1, O) |
| BatchNorm | eps | mean, var, gamma, beta (C each) | y = (x-mean)/sqrt(var+eps)*gamma+beta; gamma already 1 under fix_gamma; on a (1, K) blob per element |
| Scale | bias (bool) | scale (C), bias (C) if bias | per-channel y = x*scale(+bias) along axis 1; on a (1, K) blob that is per element. With a second input s of shape (1, N) (x of shape (1, N, ...)): y = x * s[n] over the remaining axes, no weights, bias False |
| ReLU | negative_slope (optional, default 0) | | y = x if x > 0 else slope * x (LeakyReLU when slope != 0) |
| PReLU | | slope (C) or (1,) shared by every channel | y = x if x > 0 else slope[c] * x, c along axis 1 (on a (1, K) blob: per element) |
| ELU | alpha | | y = x if x > 0 else alpha * (exp(x) - 1) |
| TanH | | | y = tanh(x) |
| Clip | min, max | | y = min(max(x,min),max); ReLU6 is Clip(0,6) |
| Pool | method ('max'/'avg'), kernel, stride, pad, global_pool (bool), round ('floor'/'ceil'), count_include_pad (bool) | | output size rounding as named; 'ceil' is Caffe's rule |
| Eltwise | operation ('sum'/'prod'/'max'), coeffs (tuple, empty = all 1) | | coeffs only with 'sum', one per input |
| Concat | axis | | |
| Permute | order (tuple incl. batch axis) | | |
| ShuffleChannel | group | | on (1, C, H, W), C = group * K: output channel k * group + g is input channel g * K + k (MXNet's reshape (0, -4, group, -1, -2), swapaxes 1, 2, reshape (0, -3, -2)) |
| Flatten | axis, end_axis | | Caffe semantics |
| Reshape | dims (tuple incl. batch; 0 = copy, -1 = infer) | | |
| Softmax | axis | | |
| Normalize | across_spatial, channel_shared, eps | scale (C) | x/sqrt(sum_c x^2 + eps)*scale; across_spatial: the sum runs over every non-batch axis (also on a (1, K) blob) |
| Slice | axis, slice_points (tuple) | | several outputs, Caffe semantics |
| Power | power, scale, shift | | y = (shift + scale*x)^power |
| Sigmoid | | | y = 1/(1+exp(-x)) |
| Exp | | | y = e^x |
| Upsample | scale (int >= 2) | | nearest neighbour on (1,C,H,W): y[c,i,j] = x[c,i//s,j//s], output (1,C,H*s,W*s) |
| PriorBox | min_size, max_size (None or float), aspect_ratios (tuple; a 1 or a repeat is dropped as caffe-ssd drops it, `ssdconv.ssd.priorbox`), flip, clip, variance (4), step_h, step_w, offset, img_h, img_w, int_scale (integer >= 1) | | inputs (feature, image), the image read for its size only; sizes are floats in pixels; int_scale = k: caffe-ssd writes sizes*k, step*k, variance*k and a Power 1/k after (its int cast) |
| DetectionOutput | num_classes, share_location, background_label_id, nms_threshold, top_k, keep_top_k, confidence_threshold, code_type ('CORNER'/'CENTER_SIZE'/'CORNER_SIZE') | | inputs (loc flat, conf flat softmaxed, priors (1, 2, 4N)) |
| SsdDetections | num_classes, stds (4), decoder ('box_decode'/'minimal_opset': how the model decodes, which rounds exp differently), nms_threshold, nms_topk, post_nms, class_threshold | anchors (A, 4) pixel cx, cy, w, h as the model computes them | GluonCV's SSD post-processing itself (a "gluon" head, for targets that express it exactly: ONNX): inputs loc (1, 4A) and the class logits (1, A, C+1) before the softmax, in GluonCV's anchor order; its softmax, box decoder with `stds`, the per-class `> class_threshold` mask, MXNet's box_nms (global top-k, per-class NMS) and the first `post_nms` rows; outputs ids (1, P, 1), scores (1, P, 1), bboxes (1, P, 4) in input pixels, -1 padded, exactly GluonCV's three outputs. Optional attr nms ('box_nms', the default, or 'none': stop before box_nms, for runtimes without NMS): outputs boxes (1, A, 4) decoded corners in input pixels and scores (1, A, C), the softmax foreground scores after the `> class_threshold` mask (0 where GluonCV zeroes them) |
| YoloDetections | num_classes, anchors (per input: (w, h) pairs in pixels), strides (per input), offsets (per input: (H, W, 2) grid offsets x, y as the model holds them), nms_threshold, nms_topk, post_nms, valid_threshold | | GluonCV's YOLOv3 post-processing itself (a "gluon" head): inputs the raw prediction convs (1, A(5+C), H, W) in GluonCV's level order; its decode, rows in its order, MXNet's box_nms, the first `post_nms` rows; outputs ids, scores, bboxes as SsdDetections. Optional attr nms as SsdDetections: with 'none', outputs boxes (1, N, 4) (corners, pixels, not clipped) and scores (1, N, C) (confidence x class score), N = every level's H*W*A boxes, levels in input order, cell-major then anchor |
| Yolov3DetectionOutput | num_class, num_box (anchors per input), confidence_threshold, nms_threshold, biases (tuple: every anchor's w,h in input pixels), mask (tuple: anchor index per (input, box), input after input), anchors_scale (tuple: each input's stride) | | ncnn's own YOLOv3 head, ncnn only (`ssdconv.yolo.native` models its arithmetic, which is not GluonCV's); inputs: one or more raw prediction convs (1, num_box*(5+num_class), H, W), channel a*(5+C)+k with k = tx,ty,tw,th,obj,classes; output (1, N, 6) rows (label+1, score, x1, y1, x2, y2) normalised, N at most every box of every input, fewer in fact (none when nothing passes) |
"""

from __future__ import annotations

# Per op: "attrs" every node carries, "weights" roles, and where fixed, "choices" (attr -> the
# values it may take), "inputs" (how many blobs it reads) and "shape_only_inputs" (positions of
# inputs read for their shape alone: a pass may change their values, not their shape).
OP_SPECS: dict[str, dict] = {
    "Input": {"attrs": ("shape",), "weights": ()},
    "Identity": {"attrs": (), "weights": ()},
    "Conv": {
        "attrs": ("num_output", "kernel", "stride", "pad", "dilation", "group", "bias"),
        "weights": ("weight", "bias"),
    },
    "InnerProduct": {"attrs": ("num_output", "bias"), "weights": ("weight", "bias")},
    "BatchNorm": {"attrs": ("eps",), "weights": ("mean", "var", "gamma", "beta")},
    "Scale": {"attrs": ("bias",), "weights": ("scale", "bias")},
    "ReLU": {"attrs": (), "weights": ()},  # negative_slope optional, default 0
    "PReLU": {"attrs": (), "weights": ("slope",)},
    "ELU": {"attrs": ("alpha",), "weights": ()},
    "TanH": {"attrs": (), "weights": ()},
    "Clip": {"attrs": ("min", "max"), "weights": ()},
    "Pool": {
        "attrs": ("method", "kernel", "stride", "pad", "global_pool", "round", "count_include_pad"),
        "weights": (),
        "choices": {"method": ("max", "avg"), "round": ("floor", "ceil")},
    },
    "Eltwise": {
        "attrs": ("operation", "coeffs"),
        "weights": (),
        "choices": {"operation": ("sum", "prod", "max")},
    },
    "Concat": {"attrs": ("axis",), "weights": ()},
    "Permute": {"attrs": ("order",), "weights": ()},
    "ShuffleChannel": {"attrs": ("group",), "weights": ()},
    "Flatten": {"attrs": ("axis", "end_axis"), "weights": ()},
    "Reshape": {"attrs": ("dims",), "weights": ()},
    "Softmax": {"attrs": ("axis",), "weights": ()},
    "Normalize": {"attrs": ("across_spatial", "channel_shared", "eps"), "weights": ("scale",)},
    "Slice": {"attrs": ("axis", "slice_points"), "weights": ()},
    "Power": {"attrs": ("power", "scale", "shift"), "weights": ()},
    "Sigmoid": {"attrs": (), "weights": ()},
    "Exp": {"attrs": (), "weights": ()},
    "Upsample": {"attrs": ("scale",), "weights": ()},
    "PriorBox": {
        "attrs": (
            "min_size", "max_size", "aspect_ratios", "flip", "clip", "variance",
            "step_h", "step_w", "offset", "img_h", "img_w", "int_scale",
        ),
        "weights": (),
        "inputs": 2,
        "shape_only_inputs": (1,),
    },
    "DetectionOutput": {
        "attrs": (
            "num_classes", "share_location", "background_label_id", "nms_threshold", "top_k",
            "keep_top_k", "confidence_threshold", "code_type",
        ),
        "weights": (),
        "choices": {"code_type": ("CORNER", "CENTER_SIZE", "CORNER_SIZE")},
        "inputs": 3,
    },
    "SsdDetections": {
        "attrs": ("num_classes", "stds", "decoder", "nms_threshold", "nms_topk", "post_nms",
                  "class_threshold"),
        "weights": ("anchors",),
        "inputs": 2,
        "choices": {"decoder": ("box_decode", "minimal_opset")},
    },
    "YoloDetections": {
        "attrs": ("num_classes", "anchors", "strides", "offsets", "nms_threshold", "nms_topk",
                  "post_nms", "valid_threshold"),
        "weights": (),
    },
    # Any number (>= 1) of inputs: validate's contract checks the count against mask and
    # anchors_scale, which have one entry per input.
    "Yolov3DetectionOutput": {
        "attrs": (
            "num_class", "num_box", "confidence_threshold", "nms_threshold", "biases", "mask",
            "anchors_scale",
        ),
        "weights": (),
    },
}
