"""Load and size the images every runtime sees, so all compare on identical pixels."""

from __future__ import annotations

import os

import numpy as np

from ..errors import UserError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def list_images(paths: list[str]) -> list[str]:
    """Expand directories to the images inside them; a missing path or a file OpenCV cannot
    read as an image is a UserError (checked from the file's header, before any work)."""
    import cv2

    found: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            found += sorted(q for q in (os.path.join(p, f) for f in os.listdir(p))
                            if q.lower().endswith(IMAGE_EXTS) and os.path.isfile(q))
        elif os.path.isfile(p):
            found.append(p)
        else:
            raise UserError(f"image {p} does not exist")
    if not found:
        raise UserError(f"no images found in {', '.join(paths)}")
    for p in found:
        if not os.access(p, os.R_OK):
            raise UserError(f"image {p} cannot be read (permission denied)")
        if not cv2.haveImageReader(p):
            raise UserError(f"{p} is not an image OpenCV can read; pass JPEG, PNG, BMP, WebP "
                            "or TIFF files")
    return found


def load_rgb(path: str, height: int, width: int) -> np.ndarray:
    """An RGB uint8 image resized (bilinear) to the network input size."""
    import cv2

    level = cv2.getLogLevel()
    cv2.setLogLevel(2)  # errors only: a broken file is our one-line UserError, not a WARN too
    try:
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    finally:
        cv2.setLogLevel(level)
    if bgr is None:
        raise UserError(f"image {path} cannot be decoded; pass a JPEG or PNG file")
    bgr = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(bgr[:, :, ::-1])


def network_input(rgb: np.ndarray, manifest: dict) -> np.ndarray:
    """(1, 3, H, W) float32 = (pixel[channel_order] - mean) * scale, as the manifest says."""
    img = rgb if manifest["channel_order"] == "RGB" else rgb[:, :, ::-1]
    mean = np.asarray(manifest["mean"], np.float32)
    scale = np.asarray(manifest["scale"], np.float32)
    x = (img.astype(np.float32) - mean) * scale
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])
