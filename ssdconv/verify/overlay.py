"""Side-by-side overlay images: one panel per runtime with its boxes, class names and scores.

People trust what they can see: the same detections drawn from Gluon, OpenCV and ncnn next to
each other show at a glance that the conversion kept them.
"""

from __future__ import annotations

import numpy as np

PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 190), (0, 128, 128)]


def draw_panel(rgb: np.ndarray, boxes_px: np.ndarray, labels, scores, classes: list[str],
               title: str, min_score: float) -> np.ndarray:
    """One runtime's detections over the image (RGB uint8), with a title bar."""
    import cv2

    img = np.ascontiguousarray(rgb.copy())
    for box, lab, score in zip(boxes_px, labels, scores):
        if score < min_score:
            continue
        colour = PALETTE[int(lab) % len(PALETTE)]
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(img, (x1, y1), (x2, y2), colour, 2)
        name = classes[int(lab)] if 0 <= int(lab) < len(classes) else str(lab)
        text = f"{name} {score:.2f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        y = max(th + 2, y1)
        cv2.rectangle(img, (x1, y - th - 3), (x1 + tw + 2, y), colour, -1)
        cv2.putText(img, text, (x1 + 1, y - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                    cv2.LINE_AA)
    bar = np.full((22, img.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, title, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, img], axis=0)


def side_by_side(panels: list[np.ndarray], gap: int = 6) -> np.ndarray:
    h = max(p.shape[0] for p in panels)
    spacer = np.full((h, gap, 3), 255, np.uint8)
    parts = []
    for p in panels:
        if p.shape[0] < h:
            p = np.concatenate([p, np.full((h - p.shape[0], p.shape[1], 3), 255, np.uint8)])
        parts += [p, spacer]
    return np.concatenate(parts[:-1], axis=1)


def write_png(path: str, rgb: np.ndarray) -> None:
    import cv2

    from ..fileio import atomic_write

    ok, buf = cv2.imencode(".png", rgb[:, :, ::-1])
    if not ok:
        raise RuntimeError(f"cannot encode {path}")
    atomic_write(path, buf.tobytes())
