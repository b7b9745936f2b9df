"""The runners of a conversion: one way for verify, eval and the bench to run converted files.

A runner is made from the conversion whose files it runs (the manifest beside them says what
they are, e.g. fp16 ncnn weights), by the backend that wrote them, never assembled field by
field, so the staged check, the demo accuracy and the bench run exactly the same thing for the
same settings. What `run` returns: `ssdconv.backend.interface.Runner`.
"""

from __future__ import annotations

from ..backend import backends
from ..backend.interface import Runner, RunSettings
from .blobs import blobs_by_role, detection_fields, raw_blobs

__all__ = ["blobs_by_role", "detection_fields", "raw_blobs", "runners_for", "runtime_names"]


def runtime_names() -> tuple[str, ...]:
    """Every runtime of the registered backends, in their order."""
    return tuple(r for b in backends() for r in b.runtimes)


def runners_for(conversion, runtimes: tuple[str, ...] | None = None, winograd: bool = False,
                threads: int = 1, deployed: bool = False) -> list[Runner]:
    """One runner per runtime asked for (None: every one) whose files the conversion wrote, in
    the backends' order. `deployed` runs each runtime with its own default precision options,
    as deployed (`RunSettings.deployed`); the head may put each through its post-processing
    (`Head.runners`: a headless detector's C tail)."""
    known = set(runtime_names())
    unknown = set(runtimes or ()) - known
    if unknown:
        raise ValueError(f"unknown runtime(s) {sorted(unknown)}; choose from {sorted(known)}")
    settings = RunSettings(winograd=winograd, threads=threads, deployed=deployed)
    runners: list[Runner] = []
    for b in backends():
        asked = b.runtimes if runtimes is None else tuple(r for r in b.runtimes
                                                          if r in runtimes)
        if asked and b.wrote(conversion.files):
            runners += b.load_runners(conversion.files, conversion.manifest, settings, asked)
    return conversion.head.runners(runners)
