"""The runners of a conversion: one way for verify, eval and the bench to run converted files.

A runner is made from the `Conversion` whose files it runs (the manifest beside them says what
they are, e.g. fp16 ncnn weights), never assembled field by field, so the staged check, the demo
accuracy and bench/fidelity.py run exactly the same thing for the same settings.

Every runner's `run(rgb)` returns the same dict, read from the manifest's `blobs` alone (no
runner knows a detector family): `det_labels`, `det_scores`, `det_boxes` (normalised corners)
parsed from the `detections` blob in its backend's row format, and every other blob but the
input by its role, per image (batch axis dropped), as the runtime computed it.
"""

from __future__ import annotations

RUNTIMES = ("opencv", "ncnn")


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


def raw_blobs(manifest: dict) -> dict[str, str]:
    """The manifest's blobs other than `input` and `detections`, by role (`blobs_by_role`)."""
    return {k: b for k, b in blobs_by_role(manifest).items() if k not in ("input", "detections")}


def detection_fields(rows, label_offset: int) -> dict:
    """`det_labels`, `det_scores`, `det_boxes` from rows (label, score, x0, y0, x1, y1)."""
    return {"det_labels": rows[:, 0].astype(int) - label_offset, "det_scores": rows[:, 1],
            "det_boxes": rows[:, 2:6]}


def runners_for(conversion, runtimes: tuple[str, ...] = RUNTIMES, winograd: bool = False,
                threads: int = 1, ncnn_defaults: bool = False) -> list:
    """One runner per runtime asked for whose files the conversion wrote, in RUNTIMES order.

    `winograd` turns OpenCV's Winograd convolutions on (off by default: their rounding would
    hide a converter bug). `threads` is ncnn's thread count (OpenCV's is process-wide and left
    as it is). `ncnn_defaults` runs ncnn with its own default options, fp16 storage and
    arithmetic where the CPU has them, as deployed; otherwise ncnn computes in fp32.
    """
    unknown = set(runtimes) - set(RUNTIMES)
    if unknown:
        raise ValueError(f"unknown runtime(s) {sorted(unknown)}; choose from {RUNTIMES}")
    files, manifest = conversion.files, conversion.manifest
    runners: list = []
    if "opencv" in runtimes and "prototxt" in files:
        from .opencv_runner import OpenCVRunner

        runners.append(OpenCVRunner(files["prototxt"], files["caffemodel"], manifest, winograd))
    if "ncnn" in runtimes and "param" in files:
        from .ncnn_runner import NcnnRunner

        runners.append(NcnnRunner(files["param"], files["bin"], manifest, threads,
                                  exact=not ncnn_defaults))
    return runners
