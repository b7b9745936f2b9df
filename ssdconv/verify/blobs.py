"""A manifest's blobs by role, and the detection fields a detector's runner returns.

Every runner's `run(rgb)` returns the same dict (`ssdconv.backend.interface.Runner`), read from
the manifest's `blobs` alone (no runner knows a family): the raw tensors by role for any model,
and the detection fields when the manifest names a `detections` blob (a detector's); these
helpers are that one reading, shared by the runners, the check and the bench.
"""

from __future__ import annotations

import numpy as np


def blobs_by_role(manifest: dict) -> dict[str, str]:
    """Every blob of the manifest's `blobs` by role; a role naming a list of blobs gives one
    entry per blob, `ROLE.0`, `ROLE.1`, ... (the names the check and the bench use)."""
    out = {}
    for role, blob in manifest["blobs"].items():
        if isinstance(blob, list):
            out.update({f"{role}.{i}": b for i, b in enumerate(blob)})
        else:
            out[role] = blob
    return out


DETECTIONS = "detections"  # the role of a detector's detection rows


def raw_blobs(manifest: dict) -> dict[str, str]:
    """The manifest's blobs other than `input` and `detections`, by role (`blobs_by_role`)."""
    return {k: b for k, b in blobs_by_role(manifest).items() if k not in ("input", DETECTIONS)}


def detections_blob(manifest: dict) -> str | None:
    """The blob of the detection rows; None: the model has none (its head is no detector)."""
    return manifest["blobs"].get(DETECTIONS)


def output_blobs(manifest: dict) -> list[str]:
    """The blobs a runner's `run` fetches: the detections (a detector's), then the raw
    tensors."""
    detections = detections_blob(manifest)
    return [*([detections] if detections else []), *raw_blobs(manifest).values()]


def detection_fields(rows: np.ndarray, label_offset: int) -> dict:
    """`det_labels`, `det_scores`, `det_boxes` from rows (label, score, x0, y0, x1, y1)."""
    return {"det_labels": rows[:, 0].astype(int) - label_offset, "det_scores": rows[:, 1],
            "det_boxes": rows[:, 2:6]}
