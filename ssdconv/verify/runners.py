"""The runners of a conversion: one way for verify, eval and the bench to run converted files.

A runner is made from the `Conversion` whose files it runs (the manifest beside them says what
they are, e.g. fp16 ncnn weights), never assembled field by field, so the staged check, the demo
accuracy and bench/fidelity.py run exactly the same thing for the same settings.
"""

from __future__ import annotations

RUNTIMES = ("opencv", "ncnn")


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
