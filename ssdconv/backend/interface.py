"""What a backend is made of: the one interface the shared code calls for a target.

A backend turns the IR into files a runtime loads, and checks them there. Convert, verify, eval,
the option table and the command line ask the registered backends (`ssdconv.backend.backends`)
and name none of them; a new target is a folder of its own plus one line in
`ssdconv.backend.registered`. A backend module must stay cheap to import (the command line
reads every backend's options at start-up): its writer and runtimes are imported when used.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..option import Option

if TYPE_CHECKING:
    from ..ir.graph import Graph


@dataclass
class Written:
    """What a backend wrote into the staging folder: the files' paths (by extension), its
    manifest section (None: none), the manifest `approximations` it took (a lossy option) and
    `choices` (one line per non-obvious but exact decision)."""

    files: dict[str, str]
    section: dict | None = None
    approximations: list[dict] = field(default_factory=list)
    choices: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunSettings:
    """How to run converted files: `winograd` turns OpenCV's Winograd convolutions on (off by
    default: their rounding would hide a converter bug); `threads` is the runtime's thread
    count where it has one per net; `deployed` runs a runtime with its own default precision
    options (ncnn's fp16 storage and arithmetic where the CPU has them), as deployed, instead
    of exact float32."""

    winograd: bool = False
    threads: int = 1
    deployed: bool = False


class Runner(ABC):
    """A converted model loaded in one runtime.

    `run(rgb)` returns, for one RGB image at the network's size, the manifest's blobs by role
    (`ssdconv.verify.blobs`): every blob but the input and the detections by its role, batch
    axis dropped (the raw tensors every conversion is checked on); and when the manifest names
    a `detections` blob (a detector's), `det_labels`, `det_scores`, `det_boxes` (normalised
    corners) from it in the runtime's row format. `informational` marks a lossy option the
    user chose (fp16, int8): the check reports its figures and judges none, and `note` says why
    in the report.
    """

    name: str  # the runtime's row name: "opencv", "ncnn-int8", ...
    title: str  # for overlays: "OpenCV DNN (caffe-ssd)"
    informational: bool = False
    note: str = ""
    #: its detections are GluonCV's rows in GluonCV's order (a "gluon" head), compared row for
    #: row; otherwise matched above the head's comparable score
    row_for_row: bool = False
    #: the model ends before NMS (`--onnx-nms none`): `run` returns `pre_nms_rows` [R, 6], the
    #: rows GluonCV's box_nms reads (id, score, x1, y1, x2, y2 px, GluonCV's order), compared
    #: with Gluon's own row for row, and no detections
    pre_nms: bool = False

    @abstractmethod
    def run(self, rgb: np.ndarray) -> dict: ...

    @abstractmethod
    def blobs(self, rgb: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        """The named internal blobs the runtime can hand out (for per-layer bisection); those
        it cannot (fused away) are left out."""

    def timed(self, rgb: np.ndarray) -> Callable[[], object]:
        """One forward pass on this image with the preprocessing done beforehand: what a
        latency measurement times (bench/speed.py). By default the whole `run`; a runner whose
        input preparation is separable overrides it, so its latency is the runtime's alone."""
        return lambda: self.run(rgb)


@dataclass(frozen=True)
class EvalVariant:
    """An extra `ssdconv eval` row: the model converted for one backend alone with `options`
    changed; `calibrated` rows get the calibration images as `--ncnn-int8` would. A backend's
    own rows are for that backend; a family's name theirs (`target`)."""

    name: str
    options: dict[str, Any]
    calibration_option: str | None = None  # the option that takes the calibration folder
    target: str | None = None  # a family's row: the backend it converts for


class Backend(ABC):
    """One target (see the module docstring). Subclasses set the class attributes."""

    name: str  # the target's name: --target NAME, the manifest section's key
    runtimes: tuple[str, ...]  # its runtimes (a runner each); a lossy option renames the row
    extensions: tuple[str, ...]  # the model files it writes, NAME.EXT, the first its key
    options: tuple[Option, ...] = ()  # its options, for the one option table
    eval_variants: tuple[EvalVariant, ...] = ()
    head_form: str = "stock"  # the head form it writes (`ssdconv.family.interface.HEAD_FORMS`)

    def wrote(self, files: dict[str, str]) -> bool:
        """Whether a conversion's files (by extension) hold this backend's model."""
        return all(ext in files for ext in self.extensions)

    def load_runners(self, files: dict[str, str], manifest: dict, settings: RunSettings,
                     runtimes: tuple[str, ...] | None = None) -> list[Runner]:
        """`runners`, with a file a runtime cannot load (missing, truncated, corrupt, of another
        model) a one-line UserError naming the files and the runtime."""
        from ..errors import UserError
        from ..mxnet.messages import one_line

        made = []
        for runtime in runtimes or self.runtimes:
            try:
                made += self.runners(files, manifest, settings, (runtime,))
            except Exception as exc:  # each runtime's own error type
                paths = ", ".join(files[e] for e in self.extensions if e in files)
                raise UserError(f"{runtime} cannot load {paths} ({one_line(exc)}); convert "
                                "again or pass the files this manifest was written with") \
                    from None
        return made

    def prepare(self, options, name: str | None) -> Any:
        """Check what this backend's options ask for before any work (a UserError: nothing is
        converted yet) and return what `write` needs of it (None by default). `name` is the
        output stem, None when checked before it is known."""
        return None

    @abstractmethod
    def write(self, graph: Graph, staging: Path, name: str, options, prepared: Any) -> Written:
        """Write `name`.* into `staging` from the IR of its head form (`graph.roles` names the
        head's blobs by role); refuse (an UnsupportedError listing every node it cannot write
        exactly) before writing a byte."""

    def finish(self, manifest: dict, staging: Path, name: str, prepared: Any) -> None:
        """Write files made from the finished manifest (a generated example program) into
        `staging`; nothing by default."""
        return None

    def approximations(self, options) -> list[dict]:
        """Manifest approximations the options imply before anything is written."""
        return []

    def npu_lint(self, files: dict[str, str], input_shape: list[int]) -> list[str] | None:
        """The written model's breaches of what NPU toolchains accept
        (`ssdconv.headless.constraints`), one line each; None: this format is not an NPU
        toolchain's input, so it is not linted."""
        return None

    @abstractmethod
    def runners(self, files: dict[str, str], manifest: dict, settings: RunSettings,
                runtimes: tuple[str, ...] | None = None) -> list[Runner]:
        """Its runners of the conversion's files (those of `runtimes` when given)."""
