"""What a network family is made of: the one interface the shared code calls.

A family (SSD, YOLOv3, ...) is what a recognised graph's outputs are. Loading, the walker, the
op converters, the passes, the writers and the runners are shared and do not know which family
they carry; everything family-specific is asked of two objects:

* `DetectorFamily` (one per family, registered in `ssdconv.family.registered`): which GluonCV
  zoo builders are its own, whether a source graph is one of its kind (`recognise`), and what a
  model of its kind needs before it is a graph (input size, saved class count, store name);
* `Head` (one per recognised graph): where the walked part ends, the tail it synthesises in IR,
  the proof of the constants it derived, its manifest section and inspect lines, the raw
  tensors the check compares with float64 Gluon (the proof every conversion gets), its own
  check stages, and how seeded weights should look for it. A head whose network ends in
  detections is a `DetectorHead`: it adds its class count, its rule for which detections are
  comparable and its NMS threshold, and the check adds the detection stage for it.

"Not mine" is an answer (`NoMatch`, saying what was looked for), not an error: the seam tries
the next family and, when none recognises a graph, names what each looked for. A graph that is
a family's kind but cannot be converted is that family's UserError.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UserError

if TYPE_CHECKING:
    from ..backend.interface import EvalVariant
    from ..ir.graph import Graph
    from ..mxnet.source import SourceGraph, SourceNode


#: The head forms a target can ask a family for (`Backend.head_form`):
STOCK = "stock"  # the layers caffe-ssd and ncnn have (PriorBox, DetectionOutput, ...)
GLUON = "gluon"  # GluonCV's own post-processing as one IR op (SsdDetections, YoloDetections),
#                  exact row for row, for targets that express it (ONNX)
HEAD_FORMS = (STOCK, GLUON)
GLUON_OUTPUTS = ("ids", "scores", "bboxes")  # a gluon head's outputs: GluonCV's own three


@dataclass(frozen=True)
class HeadlessCut:
    """Where a headless model of a head ends (`--headless`), and what the CPU does after it.

    `outputs`: role -> (source node, output), in the model's output order (SSD: loc.0, conf.0,
    loc.1, ...): the raw tensors the NPU computes, checked against float64 Gluon like any raw
    tensor. `meaning`: the manifest's `headless` details (what each output holds, the
    constants the CPU needs). `tail_inputs`: the roles the generated C tail reads, one list per
    argument (SSD: the loc maps, then the conf maps), in order. `tail(name)`: the C tail's
    files by name (None: no tail is generated for this family yet); `sidecars(name)`: the
    constant files beside the model (priors, anchors, labels) by name."""

    outputs: dict[str, tuple[int, int]]
    meaning: dict
    tail_inputs: tuple[tuple[str, ...], ...] = ()
    tail: Callable[[str], dict[str, str]] | None = None
    sidecars: Callable[[str], dict[str, bytes]] | None = None


@dataclass(frozen=True)
class NoMatch:
    """A family's answer for something not of its kind: what it looked for and did not find."""

    missing: str


@dataclass(frozen=True)
class SeedHint:
    """How seeded random weights should look at one prediction conv to resemble a trained one.

    The conv's weights and bias are rescaled so its output over the calibration batch has
    standard deviation `std`; with `centre`, its bias then moves each output channel's mean to
    0 (YOLOv3: box sizes near the anchors'); then `bias[bias_start::bias_step] += bias_add`
    when `bias_step` (SSD: a background logit per anchor, so most anchors are background as
    in a trained net; YOLOv3: a negative objectness).
    """

    conv: int  # source node index of the Convolution
    std: float
    bias_start: int = 0
    bias_step: int = 0
    bias_add: float = 0.0
    centre: bool = False  # first move each output channel's mean over the batch to 0


@dataclass(frozen=True)
class Proof:
    """What `Head.prove` established: the measured figures (they go into the manifest section)
    and the approximations they imply (manifest `approximations` entries)."""

    figures: dict
    approximations: tuple[dict, ...] = ()


@dataclass(frozen=True)
class StageResult:
    """One stage of the check beyond the raw tensors (a family's own, or one a head's kind
    adds, e.g. detections), for one runtime and image."""

    title: str  # a word, printed as the stage's name
    ok: bool
    figures: dict  # the measured numbers, by name (bench and tests read them)
    text: str  # the report line after the stage's name
    details: tuple[str, ...] = ()  # report lines under that one (indented), e.g. unmatched rows
    note: str = ""  # a sentence the report prints once after every block, e.g. what a cut means
    result: object = None  # the comparison's whole result, for callers reading more than figures


class Head(ABC):
    """A recognised head in one source graph: what every conversion needs of it (see the module
    docstring). The check's base is its raw tensors (`raw_outputs`) against float64 MXNet;
    whatever else a network's outputs mean (detections) a subclass adds (`DetectorHead`)."""

    @property
    @abstractmethod
    def family(self) -> DetectorFamily:
        """The family that recognised this head."""

    @property
    @abstractmethod
    def walk_roots(self) -> list[int]:
        """Source node indices where the walked part ends: the walker translates their
        ancestors op by op, and `synthesise` replaces everything after them."""

    @abstractmethod
    def synthesise(self, graph: Graph, blob_of: Callable[..., str], form: str = STOCK) -> None:
        """Append the tail in IR ops to the walked `graph` in the head form a target asks for
        (`HEAD_FORMS`), set `graph.outputs` and `graph.roles` (the blobs by manifest role).
        `blob_of(index, out=0)` is the IR blob name of a source node's output. A form the
        family cannot write is a UserError."""

    @abstractmethod
    def after_passes(self, graph: Graph) -> None:
        """Last touches once the passes ran (e.g. layers named after the manifest's blobs)."""

    @abstractmethod
    def prove(self) -> Proof:
        """Check the constants the converter derived against the model's own; a UserError
        when they are not expressible."""

    @abstractmethod
    def manifest_section(self, proof: Proof) -> dict:
        """The family's part of the manifest: `blobs` (`input` and every output the check
        reads, by role) and the family's own keys (a detector's: `label_offset` too, and its
        `detections` blob among the blobs)."""

    @abstractmethod
    def summary(self, proof: Proof) -> str:
        """One clause for `ssdconv convert`'s last line (e.g. how well priors match)."""

    @abstractmethod
    def describe(self, proof: Proof) -> list[str]:
        """`ssdconv inspect`'s lines about the head; the first one completes `model NAME: `."""

    @abstractmethod
    def raw_outputs(self) -> dict[str, tuple[int, int]]:
        """The raw tensors the check compares with float64 Gluon, bounded by Gluon float32's
        own distance from it (every conversion's proof): role (a key of the manifest's
        `blobs`) -> (source node index, output)."""

    def check_stages(self, runtime: dict) -> list[StageResult]:
        """The family's own check stages on one runtime's outputs (the runner's dict: raw
        tensors by role, per image, batch axis dropped), run before the raw-tensor stage; none
        by default."""
        return []

    def seeding_hints(self) -> list[SeedHint]:
        """How seeded random weights should look at the prediction convs; none by default (a
        network without prediction convs is seeded as MXNet initialises it)."""
        return []

    def configure(self, options) -> None:
        """Take the conversion options this head reads (its family's own, `ssdconv.options`) before
        `synthesise`; a UserError for a combination it cannot write."""
        return None

    def approximations(self) -> list[dict]:
        """Manifest `approximations` entries the configured head implies (a lossy head
        option); none by default."""
        return []

    @property
    def raw_pixels(self) -> bool:
        """Whether the network takes raw RGB pixels 0..255 by its family's convention (no
        mean, no scale: insightface's RetinaFace): then that is the source preprocessing
        unless the options set one, and the converted model takes them too (no input pass
        folds a data BatchNorm into the mean or swaps RGB into the first convolution), as the
        family's own clients feed them. False by default (GluonCV's ImageNet normalisation)."""
        return False

    def headless_cut(self, layout: str) -> HeadlessCut:
        """The headless model of this head in `layout` (`values.HEADLESS_LAYOUTS`): a UserError by
        default (a network with no post-processing to cut, or a layout the family does not
        offer)."""
        raise UserError(f"--headless cuts a detector before its post-processing; this model is "
                        f"{self.family.kind}, which has none: drop --headless")

    def files(self, name: str) -> dict[str, bytes]:
        """Files the head adds beside the model files, by name (`name`: the output stem); none
        by default (a headless model's C tail and constants)."""
        return {}

    def runners(self, runners: list) -> list:
        """The runners the check, eval and the bench use for this head's conversion, given the
        runtimes' own (`Backend.runners`); those by default (a headless detector's put each
        runtime's maps through its generated C tail)."""
        return runners

    def kind_checks(self, manifest: dict) -> list:
        """The check's stages after the raw one that what the network's outputs mean adds
        (`ssdconv.verify.check.HeadCheck`s), e.g. a plain network's vectors' top-k and cosine;
        none by default. A `DetectorHead`'s detection stage the check adds itself."""
        return []


class DetectorHead(Head):
    """A head whose network ends in detections (label, score, box): the check adds the
    detection stage for it (`ssdconv.verify.detections`), the manifest gets its `classes` and
    `label_offset`, and overlays draw its boxes. Its manifest section names the `detections`
    blob (or a target's own detection outputs, `GLUON_OUTPUTS`)."""

    @property
    @abstractmethod
    def num_classes(self) -> int:
        """Foreground classes the model predicts (the manifest's `classes` must match)."""

    @abstractmethod
    def comparable_score(self, raw32: dict[str, np.ndarray], gluon_scores: np.ndarray) -> float:
        """The score above which Gluon's detections and the converted model's must agree,
        from Gluon's float32 raw tensors (by role, flat) and its detection scores."""

    def nms_threshold(self) -> float | None:
        """The IoU above which the model's NMS suppresses a box, for the check's analysis of
        float32 ties at NMS (`ssdconv.verify.compare.explain_nms_ties`); None (the default):
        the head has no such NMS, and every unmatched detection fails."""
        return None

    def reference_detections(self, gluon: dict) -> tuple[dict, float] | None:
        """The detections the converted model must reproduce, with the score above which they
        are comparable, when they are not GluonCV's own (a head written with another layer's
        semantics, e.g. YOLOv3's native ncnn head); None: GluonCV's (`gluon`, the Gluon
        runner's result for the image)."""
        return None


class DetectorFamily(ABC):
    """One detector family (see the module docstring). Subclasses set the three names."""

    name: str  # the manifest's `family`
    kind: str  # how messages call a model of this family, with its article: "an SSD detector"
    zoo_modules: tuple[str, ...]  # GluonCV modules whose zoo builders build this family
    # extra rows of `ssdconv eval` (`EvalVariant`s naming their target)
    eval_variants: tuple[EvalVariant, ...] = ()
    # how its GluonCV zoo builders are called: nothing is downloaded, no backbone either
    build_kwargs: dict = {"pretrained": False, "pretrained_base": False}

    @abstractmethod
    def recognise(self, source: SourceGraph) -> Head | NoMatch:
        """This family's head in `source`, or NoMatch when `source` is not of this family;
        a UserError when it is but cannot be converted."""

    @abstractmethod
    def default_input_size(self, nodes: list[SourceNode],
                           params: dict[str, np.ndarray]) -> tuple[int, int] | NoMatch:
        """The input size of an exported symbol of this family (no shapes are known yet), or
        NoMatch when the symbol is not of this family."""

    @abstractmethod
    def zoo_input_size(self, net) -> tuple[int, int]:
        """The input size a zoo net of this family was built for."""

    @abstractmethod
    def saved_class_count(self, net, saved: dict) -> int | None:
        """How many classes a `save_parameters` file (its arrays by name) was trained for, or
        None when it cannot tell (the caller's generic message then says enough)."""

    def store_name(self, zoo_name: str) -> str:
        """The name GluonCV's model store keeps a zoo model's weights under."""
        return zoo_name

    def builds(self, builder: Callable) -> bool:
        """Whether a GluonCV zoo builder function builds this family (by its module)."""
        module = getattr(builder, "__module__", "") or ""
        return any(module == m or module.startswith(m + ".") for m in self.zoo_modules)
