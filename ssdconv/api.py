"""The Python API: convert a live GluonCV detector (or a zoo name / exported symbol) in one call.

    from ssdconv.api import convert_net
    result = convert_net(net, "out", input_size=(512, 512), verify_images=["a.jpg"])
    assert result.report.ok

Everything the CLI does is reachable here, with the same errors (`ssdconv.errors.UserError`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .convert import Conversion, Options, convert
from .models import load_model, load_net
from .verify.check import CheckReport, run_check
from .verify.images import list_images


@dataclass
class Result:
    conversion: Conversion
    report: CheckReport | None

    @property
    def files(self) -> dict[str, str]:
        return self.conversion.files

    @property
    def manifest(self) -> dict:
        return self.conversion.manifest


def _finish(conversion: Conversion, verify_images) -> Result:
    report = None
    if verify_images:
        report = run_check(conversion, list_images(list(verify_images)))
    return Result(conversion, report)


def convert_net(net, out_dir: str | os.PathLike, input_size: tuple[int, int],
                name: str = "model", classes: list[str] | None = None,
                targets: tuple[str, ...] = ("caffe", "ncnn"),
                verify_images: list[str] | None = None, **options) -> Result:
    """Convert an initialised GluonCV detector HybridBlock; optionally verify on images."""
    opts = Options(targets=targets, **options)
    model = load_net(net, input_size, name=name, classes=classes)
    return _finish(convert(model, out_dir, opts, name=name), verify_images)


def convert_model(model: str, out_dir: str | os.PathLike, params: str | None = None,
                  seed: int | None = None, classes: list[str] | None = None,
                  input_size: tuple[int, int] | None = None,
                  targets: tuple[str, ...] = ("caffe", "ncnn"),
                  verify_images: list[str] | None = None, **options) -> Result:
    """Convert a zoo name or PREFIX-symbol.json, as `ssdconv convert` does: a zoo name needs
    `params`, `seed` or its file in GluonCV's model store (else a UserError, never random
    weights by default); `result.conversion.model.weights` says which was used."""
    opts = Options(targets=targets, **options)
    loaded = load_model(model, params=params, seed=seed, classes=classes, input_size=input_size)
    return _finish(convert(loaded, out_dir, opts), verify_images)
