"""Seeded synthetic detection data: circles, squares, triangles and stars on busy backgrounds.

Why synthetic: nothing (weights or data sets) can be downloaded here, yet the demo needs a
detector that really detects, so that a conversion can be shown to keep *accuracy* (mAP) and
not only bit-level agreement. The task is easy enough to learn from scratch on a CPU in under
an hour, and hard enough (texture, clutter, occlusion, objects from 20 to 160 px) that a broken
conversion shows up as lost mAP.

Every sample is a pure function of (split, index): its random generator is seeded from the
generator version, the split and the index. The splits are separate seed streams, so the test
split is never trained on, however many training images are drawn.

Boxes are pixel-edge coordinates (x1, y1, x2, y2) of the *visible* pixels of each shape
(x2 = last column + 1), so each box edge touches a pixel of its object. Objects never leave
the image, overlap each other with box IoU < 0.3, and keep at least 60 % of their pixels.
"""

from __future__ import annotations

import functools
import json
import math
import os
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from ..shipped import SAMPLES_DIR

CLASSES = ["circle", "square", "triangle", "star"]
SPLITS = ("train", "val", "test")
IMAGE_SIZE = 256
MIN_EXTENT, MAX_EXTENT = 20.0, 160.0  # diameter of the circle each shape is inscribed in, px
MAX_OBJECTS = 5
MAX_IOU = 0.3
MIN_VISIBLE = 0.6
MIN_CONTRAST = 80.0  # RGB distance between an object's colour and the background under it
# Bump when the generator changes: it is part of every seed, so old and new data never mix.
GENERATOR_VERSION = 2
# An explicit list, not a glob: a photo added to samples/ must not silently change the data.
# astronaut.jpg and grace_hopper.jpg are left out: their flags are full of unlabelled stars.
PHOTOS = ("cameraman.jpg", "cat.jpg", "coffee_cup.jpg", "rocket_launch.jpg")
_SHIFT = 4  # cv2 drawing in 1/16 px, so shapes are placed with sub-pixel precision


@dataclass
class Sample:
    """One rendered image with its ground truth; `masks` are the visible pixels per object."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    boxes: np.ndarray  # (N, 4) float32 x1, y1, x2, y2
    labels: np.ndarray  # (N,) int64 class ids 0..3
    masks: np.ndarray  # (N, H, W) bool


def sample_rng(split: str, index: int) -> np.random.Generator:
    """The generator for one sample: (version, split, index) are the seed's entropy."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    entropy = [GENERATOR_VERSION, zlib.crc32(split.encode()), int(index)]
    return np.random.default_rng(np.random.SeedSequence(entropy))


# --- backgrounds -------------------------------------------------------------------------------

def _gradient(rng: np.random.Generator, s: int) -> np.ndarray:
    c0, c1 = rng.uniform(0, 255, (2, 3))
    a = rng.uniform(0, 2 * math.pi)
    axis = np.arange(s, dtype=np.float32) / s
    t = axis[None, :] * math.cos(a) + axis[:, None] * math.sin(a)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    return c0.astype(np.float32) + t[..., None] * (c1 - c0).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, s: int) -> np.ndarray:
    n = int(rng.integers(2, 14))
    grid = rng.uniform(0, 255, (n, n, 3)).astype(np.float32)
    return np.clip(cv2.resize(grid, (s, s), interpolation=cv2.INTER_CUBIC), 0, 255)


def _blobs(rng: np.random.Generator, s: int) -> np.ndarray:
    """Soft coloured ellipses: clutter with no sharp edge, so it never looks like a shape."""
    img = np.ascontiguousarray(_gradient(rng, s), dtype=np.float32)
    for _ in range(int(rng.integers(3, 12))):
        centre = (int(rng.integers(0, s)), int(rng.integers(0, s)))
        axes = (int(rng.integers(8, 90)), int(rng.integers(8, 90)))
        colour = [float(c) for c in rng.uniform(0, 255, 3)]
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
    sigma = float(rng.uniform(5, 14))
    return cv2.GaussianBlur(img, (0, 0), sigma)


def _stripes(rng: np.random.Generator, s: int) -> np.ndarray:
    c0, c1 = rng.uniform(0, 255, (2, 3))
    a = rng.uniform(0, math.pi)
    period = rng.uniform(6, 48)
    axis = np.arange(s, dtype=np.float32)
    wave = np.sin(2 * math.pi * (axis[None, :] * math.cos(a) + axis[:, None] * math.sin(a))
                  / period + rng.uniform(0, 2 * math.pi))
    if rng.uniform() < 0.4:  # hard-edged stripes, softened a little
        wave = cv2.GaussianBlur(np.sign(wave).astype(np.float32), (0, 0), rng.uniform(0.8, 2.5))
    t = (wave + 1) / 2
    return c0.astype(np.float32) + t[..., None] * (c1 - c0).astype(np.float32)


@functools.cache
def _photo_pixels(name: str) -> np.ndarray:
    path = SAMPLES_DIR / name
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"background photo {path} is missing; the shapes data set uses "
                                f"the photos in samples/ ({', '.join(PHOTOS)})")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _photo(rng: np.random.Generator, s: int) -> np.ndarray:
    img = _photo_pixels(PHOTOS[int(rng.integers(0, len(PHOTOS)))])
    h, w = img.shape[:2]
    side = int(rng.uniform(0.3, 1.0) * min(h, w))
    y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = cv2.resize(img[y0:y0 + side, x0:x0 + side], (s, s), interpolation=cv2.INTER_AREA)
    if rng.uniform() < 0.5:
        crop = crop[:, ::-1]
    return crop.astype(np.float32)


_BACKGROUNDS = (_gradient, _smooth_noise, _blobs, _stripes, _photo)
_BACKGROUND_P = (0.15, 0.2, 0.2, 0.15, 0.3)


def _background(rng: np.random.Generator, s: int) -> np.ndarray:
    kind = _BACKGROUNDS[int(rng.choice(len(_BACKGROUNDS), p=_BACKGROUND_P))]
    img = kind(rng, s)
    if rng.uniform() < 0.35:  # blend a second texture in
        other = _BACKGROUNDS[int(rng.choice(len(_BACKGROUNDS), p=_BACKGROUND_P))](rng, s)
        alpha = rng.uniform(0.25, 0.6)
        img = (1 - alpha) * img + alpha * other
    return np.ascontiguousarray(img, dtype=np.float32)


# --- shapes ------------------------------------------------------------------------------------

def _vertices(cls: int, cx: float, cy: float, r: float, theta: float,
              inner: float) -> np.ndarray | None:
    """Polygon vertices (K, 2) of a class-`cls` shape inscribed in a circle of radius r."""
    if cls == 0:
        return None
    if cls == 3:
        k = np.arange(10)
        radii = np.where(k % 2 == 0, r, r * inner)
        angles = theta + k * math.pi / 5
    else:
        n = 4 if cls == 1 else 3
        radii = np.full(n, r)
        angles = theta + np.arange(n) * 2 * math.pi / n
    return np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)


def _shape_mask(s: int, cls: int, cx: float, cy: float, r: float, theta: float,
                inner: float) -> np.ndarray:
    mask = np.zeros((s, s), np.uint8)
    k = 1 << _SHIFT
    pts = _vertices(cls, cx, cy, r, theta, inner)
    if pts is None:
        cv2.circle(mask, (round(cx * k), round(cy * k)), round(r * k), 1, -1, cv2.LINE_8, _SHIFT)
    else:
        cv2.fillPoly(mask, [np.round(pts * k).astype(np.int32)], 1, cv2.LINE_8, shift=_SHIFT)
    return mask.astype(bool)


def _box(mask: np.ndarray) -> np.ndarray | None:
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if len(xs) == 0:
        return None
    return np.array([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1], np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (x1, y1, x2, y2) boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / area)


def _colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A random colour that stands out from the mean background colour under the object."""
    ref = under.mean(axis=0)
    candidates = rng.uniform(0, 255, (8, 3))
    dist = np.linalg.norm(candidates - ref, axis=1)
    ok = np.flatnonzero(dist >= MIN_CONTRAST)
    return candidates[ok[0] if len(ok) else int(np.argmax(dist))]


def _paint(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray) -> None:
    """Fill the mask with a contrasting colour, sometimes shaded and outlined."""
    colour = _colour(rng, img[mask])
    if rng.uniform() < 0.5:  # a linear lighting ramp across the object
        s = img.shape[0]
        a = rng.uniform(0, 2 * math.pi)
        yy, xx = np.nonzero(mask)
        t = (xx * math.cos(a) + yy * math.sin(a)) / s
        ramp = (t - t.mean())[:, None] * rng.uniform(0, 120)
        img[yy, xx] = np.clip(colour + ramp, 0, 255)
    else:
        img[mask] = colour
    if rng.uniform() < 0.3:  # an inner outline in another colour
        width = int(rng.integers(1, 4))
        kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
        inside = cv2.erode(mask.astype(np.uint8), kernel).astype(bool)
        img[mask & ~inside] = _colour(rng, img[mask])


def _place(rng: np.random.Generator, s: int) -> tuple[int, float, float, float, float, float]:
    cls = int(rng.integers(0, len(CLASSES)))
    extent = rng.uniform(MIN_EXTENT, MAX_EXTENT)
    r = extent / 2
    cx, cy = rng.uniform(r + 1, s - r - 1, 2)
    return cls, float(cx), float(cy), r, float(rng.uniform(0, 2 * math.pi)), \
        float(rng.uniform(0.38, 0.5))


def render(split: str, index: int, size: int = IMAGE_SIZE) -> Sample:
    """Render sample `index` of `split` with its per-object visible masks (for tests/plots)."""
    rng = sample_rng(split, index)
    img = _background(rng, size)
    owner = np.full((size, size), -1, np.int16)  # which object each pixel shows
    classes: list[int] = []
    full_boxes: list[np.ndarray] = []
    areas: list[int] = []
    wanted = int(rng.integers(1, MAX_OBJECTS + 1))
    for _ in range(60):
        if len(classes) == wanted:
            break
        cls, cx, cy, r, theta, inner = _place(rng, size)
        mask = _shape_mask(size, cls, cx, cy, r, theta, inner)
        box = _box(mask)
        if box is None or any(box_iou(box, b) >= MAX_IOU for b in full_boxes):
            continue
        covered = owner[mask]
        if any(np.count_nonzero(owner == i) - np.count_nonzero(covered == i)
               < MIN_VISIBLE * areas[i] for i in range(len(classes))):
            continue
        _paint(rng, img, mask)
        owner[mask] = len(classes)
        classes.append(cls)
        full_boxes.append(box)
        areas.append(int(mask.sum()))
    if rng.uniform() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.0))
    noise = rng.standard_normal(img.shape, dtype=np.float32)
    img = img + noise * np.float32(rng.uniform(0, 10))
    image = np.clip(np.round(img), 0, 255).astype(np.uint8)
    masks = np.stack([owner == i for i in range(len(classes))]) if classes else \
        np.zeros((0, size, size), bool)
    boxes = np.stack([_box(m) for m in masks]).astype(np.float32) if classes else \
        np.zeros((0, 4), np.float32)
    return Sample(image=image, boxes=boxes, labels=np.array(classes, np.int64), masks=masks)


def make_sample(split: str, index: int,
                size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image uint8 HWC RGB, boxes float32 (N, 4) x1 y1 x2 y2 in px, labels int64 (N,))."""
    sample = render(split, index, size)
    return sample.image, sample.boxes, sample.labels


def write_split(split: str, count: int, directory: str, start: int = 0,
                ext: str = "png") -> str:
    """Write images `start..start+count-1` of a split as files plus `annotations.json`.

    For looking at the data or feeding another tool; training and evaluation render on the
    fly. Returns the path of the JSON file (boxes in pixels, labels as class ids and names).
    """
    os.makedirs(directory, exist_ok=True)
    records = []
    for index in range(start, start + count):
        image, boxes, labels = make_sample(split, index)
        name = f"{split}_{index:06d}.{ext}"
        cv2.imwrite(os.path.join(directory, name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        records.append({"file": name, "index": index, "boxes": boxes.tolist(),
                        "labels": labels.tolist(), "names": [CLASSES[i] for i in labels]})
    path = os.path.join(directory, "annotations.json")
    with open(path, "w") as f:
        json.dump({"split": split, "classes": CLASSES, "generator_version": GENERATOR_VERSION,
                   "box_format": "x1,y1,x2,y2 pixel edges", "images": records}, f, indent=1)
    return path
