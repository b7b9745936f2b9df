"""The GluonCV classification zoo the plain family claims, by builder module.

A module is listed when every op its builders export is one ssdconv converts exactly (see the
README's op table); a model of an unlisted module (segmentation, pose, action, quantised) is
refused as no zoo model ssdconv converts. Classification builders take `pretrained` only (no
`pretrained_base`: they have no separate backbone), and ImageNet's 224 x 224 unless the
network's own fixed pooling says otherwise (Inception v3: 299).
"""

from __future__ import annotations

ZOO_MODULES: tuple[str, ...] = tuple(f"gluoncv.model_zoo.{m}" for m in (
    "alexnet", "densenet", "googlenet", "inception", "mobilenet", "mobilenetv3", "resnet",
    "resnext", "senet", "shufflenet", "squeezenet", "vgg",
))
BUILD_KWARGS = {"pretrained": False}
DEFAULT_SIZE = (224, 224)
# builders whose head pools a fixed window sized for another input (AvgPool2D(8) after 299 px)
SIZE_BY_NAME = {"inceptionv3": (299, 299)}
