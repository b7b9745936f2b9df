"""The demo detector: a GluonCV SSD on a thin MobileNetV2 (ReLU6) backbone, 256 x 256 input.

Why this shape of network: it must train from scratch on two CPU cores in under an hour, stay a
few MB, and still exercise what the converter has to get right on real mobile detectors
(ReLU6, depthwise convolutions, BatchNorm with a non-default eps, fix_gamma BatchNorm in
GluonCV's extra layers, six anchor levels). The shapes are 20-160 px in a 256 px image and the
training crops stretch them up to 2:1, so there is a stride-8 level for the small ones and
only aspect ratios 1, 2 and 1/2. The last level has step 256, so the input size of the
exported symbol is known from its anchors alone (GluonCV's convention).

Why width x0.5 and not x0.25: in the same hour the x0.25 net saw 53k images and stalled at
val mAP 0.81 (its loss flat while the learning rate annealed), while x0.5, 1.5x slower per
step, was at 0.81 after 22k images and at 0.896 after 46k, the end of its hour
(samples/demo/train_log.csv). Widths that are not multiples of 8 (x0.35) cost as much per step
as x0.5 on MKL-DNN.
"""

from __future__ import annotations

import warnings

from .shapes_dataset import CLASSES, IMAGE_SIZE

MULTIPLIER = 0.5
BN_EPS = 2e-3
# Expanded (ReLU6) outputs inside the MobileNetV2 blocks at strides 8, 16 and 32.
FEATURES = ["features_linearbottleneck6_relu60_relu6",
            "features_linearbottleneck13_relu60_relu6",
            "features_linearbottleneck16_relu61_relu6"]
EXTRA_FILTERS = [128, 128, 64]  # strides 64, 128, 256
SIZES = [16, 32, 64, 112, 160, 208, 256]
RATIOS = [[1, 2, 0.5]] * 6
STEPS = [8, 16, 32, 64, 128, 256]
# ImageNet mean/std in 0..1 units, as SSDDefaultTrainTransform and SSDDefaultValTransform use.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def build_shapes_ssd(classes: list[str] | None = None, multiplier: float = MULTIPLIER,
                     input_size: int = IMAGE_SIZE):
    """A fresh (uninitialised) SSD; call `init_weights` before training.

    The anchor constants are allocated for the first level's map (32 x 32), not GluonCV's
    default 128 x 128: they are stored in the params file and would otherwise be most of it.
    A fresh name scope gives every build the same names (ssd0, mobilenetv20), so weights
    saved from one build load into another in the same process.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mxnet as mx
        from gluoncv.model_zoo.mobilenet import get_mobilenet_v2
        from gluoncv.model_zoo.ssd import SSD

        with mx.name.NameManager():
            base = get_mobilenet_v2(multiplier, pretrained=False,
                                    norm_kwargs={"epsilon": BN_EPS})
            return SSD(base, input_size, features=FEATURES, num_filters=EXTRA_FILTERS,
                       sizes=SIZES, ratios=RATIOS, steps=STEPS,
                       classes=list(classes or CLASSES), pretrained=False, reduce_ratio=0.5,
                       min_depth=32, anchor_alloc_size=max(32, input_size // STEPS[0]))


def init_weights(net, small: str = "convpredictor") -> None:
    """He-normal convolutions, and N(0, 0.01) for the predictors (weights named `*small*`).

    With He-scaled predictors too, the first logits are huge and training sat on the
    "everything is background" plateau: val mAP 0.001 after 640 iterations, against 0.27 with
    small predictors (same data, schedule and seed).
    """
    import mxnet as mx

    xavier = mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2)
    normal = mx.init.Normal(0.01)
    for p in net.collect_params().values():
        if p.name.endswith("weight"):
            p.init = normal if small in p.name else xavier
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net.initialize()


def param_count(net) -> int:
    """Number of stored values (weights and BatchNorm statistics) after a forward pass."""
    return sum(p.data().size for p in net.collect_params().values())
