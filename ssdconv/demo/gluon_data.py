"""The shapes data as a Gluon dataset, in the form GluonCV's detection transforms expect.

GluonCV's SSD transforms take (image NDArray HWC uint8, label ndarray (N, 5+)) with label
columns x1, y1, x2, y2, class id, as its VOC and COCO datasets return. Rendering happens in
`__getitem__`, so a training run can draw as many fresh images as it likes (`start` moves the
window along the split's seed stream) and no image is ever stored.
"""

from __future__ import annotations

import numpy as np
from mxnet import gluon, nd

from .shapes_dataset import CLASSES, make_sample


class ShapesDetection(gluon.data.Dataset):
    """Images `start .. start + length - 1` of one split of the shapes data set."""

    def __init__(self, split: str, length: int, start: int = 0):
        self.split = split
        self.length = int(length)
        self.start = int(start)
        self.classes = list(CLASSES)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        if not 0 <= i < self.length:
            raise IndexError(i)
        image, boxes, labels = make_sample(self.split, self.start + i)
        label = np.hstack([boxes, labels[:, None].astype(np.float32)]).astype(np.float32)
        return nd.array(image, dtype=np.uint8), label
