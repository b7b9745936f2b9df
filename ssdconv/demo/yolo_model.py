"""The demo YOLOv3: GluonCV's `YOLOV3` on a thin MobileNet (v1) backbone, 256 x 256 input.

Why this shape of network: like the demo SSD (model.py) it must train from scratch on two CPU
cores in about an hour and stay a few MB, and it is the model the YOLOv3 converter is proven on,
so it has what the zoo's `yolo3_mobilenet*` models have: GluonCV's own YOLOV3 block with its
neck (YOLODetectionBlockV3: conv + BatchNorm + LeakyReLU 0.1), the 2x nearest upsample GluonCV
builds from two `repeat`s followed by `slice_like`, a MobileNet backbone with depthwise
convolutions, ReLU and BatchNorm, three output levels at strides 8, 16 and 32 cut where
`yolo3_mobilenet*_custom` cuts them (features[:33], [33:69], [69:-2]), and the decode and
per-class `box_nms` head. 256 is a multiple of 32, so the crops are no-ops as in the zoo at 416.

The anchors are not the zoo's (those are for 416 px COCO objects up to 373 px): they are
k-means (IoU distance, 9 clusters) of 3,234 boxes of the shapes train split after GluonCV's
YOLO3DefaultTrainTransform, whose expansions and crops spread the 15-161 px shapes to 5-256 px.
Mean best-anchor IoU 0.80 on those boxes and 0.85 on val boxes, against 0.69 for the zoo anchors.
The shapes are rotated at random, so the clusters are nearly square; the small w != h
differences are kept as k-means gave them (a converter that swapped w and h would show).

The offset (grid) constants are allocated for the stride-8 map of a 256 image (32 x 32) rather
than GluonCV's default 128 x 128: they are stored in the params file, three times.

Why MobileNet x0.5 with neck channels (64, 48, 32): on these two shared cores a step is
largely bound by the data worker (rendering, GluonCV's augmentation and target generation take
33 ms per image, 0.53 s of a 16-image batch), so width costs less time than it seems. Measured
s/it at batch 16 (10-15 timed steps, `train_yolo_demo.py --iters`, load average 4-6, so +-30 %):
x0.25 neck (128, 64, 32) 1.23 (6.2 MB); x0.5 (128, 64, 32) 1.04-1.34 (8.8 MB); x0.25
(96, 64, 32) 0.79-1.15 (4.5 MB); x0.5 (64, 32, 16) 0.86-1.32 (4.8 MB); x0.25 (64, 32, 16) 0.94
(2.3 MB). In 4-minute trials x0.5 (64, 32, 16) reached val mAP 0.02 while x0.25 (96, 64, 32)
was still at 0.00, and the demo SSD already showed x0.5 learning much faster than x0.25. The
neck of 16 channels at stride 8 (3x3 convs of 16 -> 32) looked thin for the smallest shapes, so
the chosen net widens it to 32 (and 48 at stride 16) for 5.3 MB and little compute; the deepest
block, the most parameters per channel (8 x 8 map, 3x3 convs of c -> 2c), stays at 64.
"""

from __future__ import annotations

import warnings

from .model import MEAN, STD
from .shapes_dataset import CLASSES, IMAGE_SIZE

__all__ = ["ANCHORS", "MEAN", "STD", "MULTIPLIER", "NECK_CHANNELS", "STRIDES",
           "build_shapes_yolo3", "init_yolo_weights", "val_transform"]

# Width of the MobileNet backbone and the neck channels per YOLO block (deepest first, as
# GluonCV's YOLOV3 takes them; each block's 3x3 convs have twice this many).
MULTIPLIER = 0.5
NECK_CHANNELS = (64, 48, 32)
STRIDES = (8, 16, 32)
# (w, h) pairs per level, stride 8 first (GluonCV's order; YOLOV3 reverses it internally).
ANCHORS = ([10, 10, 16, 16, 24, 25],
           [33, 34, 45, 45, 57, 59],
           [78, 78, 106, 109, 148, 157])
# Where yolo3_mobilenet*_custom cuts GluonCV's MobileNet features: strides 8, 16 and 32.
STAGE_CUTS = ((0, 33), (33, 69), (69, -2))
OBJ_PRIOR = 0.01  # initial objectness of every anchor box (init_yolo_weights)


def build_shapes_yolo3(classes: list[str] | None = None, multiplier: float = MULTIPLIER,
                       neck_channels: tuple[int, ...] = NECK_CHANNELS,
                       input_size: int = IMAGE_SIZE):
    """A fresh (uninitialised) YOLOv3; call `init_yolo_weights` before training.

    A fresh name scope gives every build the same names (yolov30, mobilenet0), so weights
    saved from one build load into another in the same process.
    """
    if input_size % 32:
        raise ValueError(f"input_size must be a multiple of 32 (the deepest stride), "
                         f"got {input_size}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mxnet as mx
        from gluoncv.model_zoo.mobilenet import get_mobilenet
        from gluoncv.model_zoo.yolo.yolo3 import YOLOV3

        with mx.name.NameManager():
            base = get_mobilenet(multiplier, pretrained=False)
            stages = [base.features[a:b] for a, b in STAGE_CUTS]
            grid = input_size // STRIDES[0]
            return YOLOV3(stages, list(neck_channels), [list(a) for a in ANCHORS],
                          list(STRIDES), classes=list(classes or CLASSES),
                          alloc_size=(grid, grid))


def init_yolo_weights(net, obj_prior: float = OBJ_PRIOR) -> None:
    """He-normal convolutions, N(0, 0.01) for the three prediction convs (see model.py), and
    the objectness biases at logit(`obj_prior`) (0: left at zero, GluonCV's default).

    Why the objectness prior: at zero bias every one of the 4,032 anchor boxes of a 256 image
    starts at objectness 0.5, so the objectness loss (summed over boxes) starts near 2,800 per
    image against ~15 for the rest, and the first iterations only learn "no object". A prior
    of 0.01, as RetinaNet's focal-loss paper sets its classifier, starts it near 60.
    """
    import math

    import mxnet as mx

    from .model import init_weights

    init_weights(net, small="yolooutputv3")
    if not obj_prior:
        return
    net(mx.nd.zeros((1, 3, 32, 32)))  # finish the deferred initialisation
    for output in net.yolo_outputs:
        bias = output.prediction.bias
        values = bias.data().asnumpy()
        per_anchor = 5 + len(net.classes)
        values[4::per_anchor] = -math.log((1 - obj_prior) / obj_prior)
        bias.set_data(mx.nd.array(values))


def val_transform(input_size: int = IMAGE_SIZE):
    """GluonCV's YOLO3DefaultValTransform at the demo's size and normalisation."""
    from gluoncv.data.transforms.presets.yolo import YOLO3DefaultValTransform

    return YOLO3DefaultValTransform(input_size, input_size, mean=MEAN, std=STD)
