"""The synthetic shapes data behind the trained demo model: deterministic per (split, index),
splits disjoint, boxes tight around each object's visible pixels, classes balanced.

A wrong box here would cap the demo model's mAP and blame the converter for it, so tightness is
checked against the very masks the boxes came from, and against the pixels in the image."""

from __future__ import annotations

import numpy as np
import pytest

from ssdconv.demo.shapes_dataset import (
    CLASSES,
    IMAGE_SIZE,
    MAX_IOU,
    MAX_OBJECTS,
    box_iou,
    make_sample,
    render,
)

N = 40


def test_same_index_same_sample():
    for split in ("train", "test"):
        a, b = make_sample(split, 7), make_sample(split, 7)
        for x, y in zip(a, b):
            assert np.array_equal(x, y)


def test_splits_and_indices_differ():
    images = {split: make_sample(split, 3)[0] for split in ("train", "val", "test")}
    assert not np.array_equal(images["train"], images["val"])
    assert not np.array_equal(images["train"], images["test"])
    assert not np.array_equal(images["val"], images["test"])
    assert not np.array_equal(make_sample("test", 3)[0], make_sample("test", 4)[0])


def test_bad_split_or_index():
    with pytest.raises(ValueError):
        make_sample("training", 0)
    with pytest.raises(ValueError):
        make_sample("train", -1)


def test_types_and_ranges():
    for i in range(N):
        image, boxes, labels = make_sample("val", i)
        assert image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and image.dtype == np.uint8
        assert boxes.dtype == np.float32 and boxes.shape == (len(labels), 4)
        assert 1 <= len(labels) <= MAX_OBJECTS
        assert labels.min() >= 0 and labels.max() < len(CLASSES)
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= IMAGE_SIZE).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all()


def test_boxes_tight_around_visible_pixels():
    """Each box is the exact extent of its mask: all four edges touch a mask pixel."""
    for i in range(N):
        s = render("train", i)
        for box, mask in zip(s.boxes.astype(int), s.masks):
            x1, y1, x2, y2 = box
            assert mask[y1:y2, x1:x2].sum() == mask.sum(), "mask pixels outside the box"
            assert mask[y1, x1:x2].any() and mask[y2 - 1, x1:x2].any()
            assert mask[y1:y2, x1].any() and mask[y1:y2, x2 - 1].any()


def test_masks_are_what_the_image_shows():
    """Objects are disjoint, at least 60 % visible (sizes stay within 20..160 px), and the
    pixels on each box edge really differ from the background just outside the object."""
    for i in range(N):
        s = render("test", i)
        assert (s.masks.sum(axis=0) <= 1).all()
        for box, mask in zip(s.boxes, s.masks):
            extent = max(box[2] - box[0], box[3] - box[1])
            assert 10 <= extent <= 162
            assert mask.sum() > 0.3 * (box[2] - box[0]) * (box[3] - box[1]) * 0.5
        for a in range(len(s.boxes)):
            for b in range(a + 1, len(s.boxes)):
                # visible boxes only shrink under occlusion, so this bound is loose but real
                assert box_iou(s.boxes[a], s.boxes[b]) < max(MAX_IOU, 0.5)


def test_object_colour_stands_out():
    """Mean object colour differs from the mean of a ring of pixels just outside it."""
    import cv2

    diffs = []
    for i in range(N):
        s = render("val", i)
        image = s.image.astype(np.float32)
        others = s.masks.any(axis=0)
        for mask in s.masks:
            ring = cv2.dilate(mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
            ring &= ~others
            if ring.sum() < 20:
                continue
            diffs.append(np.linalg.norm(image[mask].mean(0) - image[ring].mean(0)))
    assert np.median(diffs) > 40


def test_class_balance():
    counts = np.zeros(len(CLASSES), int)
    for i in range(200):
        counts += np.bincount(make_sample("train", i)[2], minlength=len(CLASSES))
    share = counts / counts.sum()
    assert counts.sum() > 400
    assert (np.abs(share - 0.25) < 0.06).all(), counts


def test_write_split(tmp_path):
    import json

    import cv2

    from ssdconv.demo.shapes_dataset import write_split

    path = write_split("val", 3, str(tmp_path), start=5)
    data = json.load(open(path))
    assert data["classes"] == CLASSES and len(data["images"]) == 3
    rec = data["images"][1]
    assert rec["index"] == 6
    image, boxes, labels = make_sample("val", 6)
    assert np.allclose(rec["boxes"], boxes) and rec["labels"] == labels.tolist()
    on_disk = cv2.cvtColor(cv2.imread(str(tmp_path / rec["file"])), cv2.COLOR_BGR2RGB)
    assert np.array_equal(on_disk, image)
