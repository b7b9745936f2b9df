"""Frozen descriptions of an SSD head, read from the model and proven before anything is written.

The tail of a GluonCV SSD (anchors, box decoder, per-class decoder, box_nms) is not translated op
by op: it is recognised, summarised in these specs, and re-synthesised as caffe-ssd PriorBox and
DetectionOutput layers. Keeping the summary in plain dataclasses makes it printable, testable and
independent of both MXNet and the target format.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .prior_counts import priors_per_cell


@dataclass(frozen=True)
class PriorGroup:
    """One PriorBox layer: the consecutive anchor slots of a level it reproduces.

    `drop_first` says the layer's leading min_size square is not one of the model's anchors and
    is sliced away per cell (LiteAnchorGenerator's ratio anchors come without it).
    """

    min_size: float
    max_size: float | None
    aspect_ratios: tuple[float, ...]
    drop_first: bool
    int_scale: int

    @property
    def per_cell(self) -> int:
        """Priors the PriorBox layer emits per cell, the dropped min square included."""
        return priors_per_cell(self.max_size, self.aspect_ratios, flip=False)


@dataclass(frozen=True)
class AnchorLevel:
    """The anchors of one feature level, in pixels (cx, cy, w, h) as the model computes them."""

    index: int
    height: int
    width: int
    anchors: np.ndarray  # (H, W, K, 4) float64 pixel cx, cy, w, h
    step_h: float
    step_w: float
    offset: float
    groups: tuple[PriorGroup, ...]

    @property
    def per_cell(self) -> int:
        """The model's anchors per cell (what the level's PriorBox groups together keep)."""
        return int(self.anchors.shape[2])

    def normalised(self, img_h: int, img_w: int) -> np.ndarray:
        """The anchors as normalised corners (H*W*K, 4), in the model's order."""
        a = self.anchors.reshape(-1, 4)
        return np.stack([(a[:, 0] - a[:, 2] / 2) / img_w, (a[:, 1] - a[:, 3] / 2) / img_h,
                         (a[:, 0] + a[:, 2] / 2) / img_w, (a[:, 1] + a[:, 3] / 2) / img_h],
                        axis=1)


@dataclass(frozen=True)
class DecoderSpec:
    """Box decoding: CENTER_SIZE with these variances (GluonCV's stds)."""

    stds: tuple[float, float, float, float]


@dataclass(frozen=True)
class NmsSpec:
    """GluonCV's NMS settings as read from the graph (box_nms attrs and the slice after it)."""

    nms_threshold: float  # 1.0 when the model has NMS switched off
    topk: int  # -1: every candidate
    post_nms: int  # -1: every detection
    class_thresh: float


@dataclass(frozen=True)
class HeadSpec:
    """Everything needed to write PriorBox + DetectionOutput for a model."""

    num_classes: int  # foreground classes (GluonCV ids 0..C-1)
    image_h: int
    image_w: int
    levels: tuple[AnchorLevel, ...]
    decoder: DecoderSpec
    nms: NmsSpec

    @property
    def num_priors(self) -> int:
        return sum(lv.height * lv.width * lv.per_cell for lv in self.levels)

    def anchors_normalised(self) -> np.ndarray:
        """All anchors as normalised corners (N, 4), in the model's order."""
        return np.concatenate([lv.normalised(self.image_h, self.image_w) for lv in self.levels],
                              axis=0)
