"""VOC07 mAP@0.5 of a Gluon detector on a split of the shapes data, with GluonCV's own metric.

One function serves the per-epoch validation in training and the final test figure, for the
demo SSD and the demo YOLOv3, so all these numbers are computed the same way: the family's
GluonCV val transform (SSDDefaultValTransform or YOLO3DefaultValTransform: resize + ImageNet
normalisation), the net's own decoding and NMS (both output ids, scores, boxes), boxes clipped
to the image, VOC07MApMetric (11-point AP).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from .model import MEAN, STD
from .shapes_dataset import CLASSES, IMAGE_SIZE


@dataclass
class MapResult:
    """mAP over the classes and the AP of each class, on `images` images."""

    map: float
    per_class: dict[str, float]
    images: int


def load_exported(prefix: str):
    """The exported net (`PREFIX-symbol.json` + `PREFIX-0000.params`) as a Gluon SymbolBlock.

    Evaluating this, not the training-time block, measures exactly what ssdconv converts.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mxnet import gluon

        return gluon.SymbolBlock.imports(f"{prefix}-symbol.json", ["data"],
                                         f"{prefix}-0000.params")


def evaluate_map(net, split: str = "test", count: int = 1000, start: int = 0,
                 batch_size: int = 16, input_size: int = IMAGE_SIZE,
                 progress: bool = False, transform=None) -> MapResult:
    """VOC07 mAP@0.5 of `net` (outputs ids, scores, boxes) on images start..start+count-1.

    `transform` is the (image, label) val transform; default: the SSD's.
    """
    import mxnet as mx
    from gluoncv.data.batchify import Pad, Stack, Tuple
    from gluoncv.data.transforms.presets.ssd import SSDDefaultValTransform
    from gluoncv.utils.metrics.voc_detection import VOC07MApMetric

    from .gluon_data import ShapesDetection

    if transform is None:
        transform = SSDDefaultValTransform(input_size, input_size, mean=MEAN, std=STD)
    dataset = ShapesDetection(split, count, start).transform(transform)
    loader = mx.gluon.data.DataLoader(dataset, batch_size, shuffle=False, last_batch="keep",
                                      batchify_fn=Tuple(Stack(), Pad(pad_val=-1)))
    metric = VOC07MApMetric(iou_thresh=0.5, class_names=CLASSES)
    batches = loader
    if progress:
        from tqdm import tqdm

        batches = tqdm(loader, desc=f"eval {split}", unit="batch", leave=False)
    for x, y in batches:
        ids, scores, boxes = net(x.as_in_context(mx.cpu()))  # batchify stacks into cpu_shared
        boxes = boxes.clip(0, input_size)
        metric.update(boxes, ids, scores, y.slice_axis(axis=-1, begin=0, end=4),
                      y.slice_axis(axis=-1, begin=4, end=5))
    names, values = metric.get()
    per_class = {n: float(v) for n, v in zip(names[:-1], values[:-1])}
    return MapResult(map=float(values[-1]), per_class=per_class, images=count)
