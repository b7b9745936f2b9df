"""insightface RetinaFace behind the family seam (`ssdconv.family.interface`).

This module wires RetinaFace's parts to the interface: recognising its outputs (`match`), its
anchors (`anchors`, options in `options`), the float64 decodes (`decode`) and the faces stage
(`check`). The converted model ends at the nine raw outputs under the source's names, the
preprocessing is the source's (RGB pixels 0..255, no mean, no scale); nothing outside
`ssdconv/retinaface/` knows any of it; `ssdconv.family.registered` names this module.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..backend.ncnn.example import register_example
from ..errors import UserError
from ..family.interface import (
    STOCK,
    DetectorFamily,
    Head,
    HeadlessCut,
    NoMatch,
    Proof,
    SeedHint,
)
from .anchors import StrideAnchors, base_anchors, parse_scales
from .check import FaceCheck
from .decode import Faces, Level
from .example import example_files
from .match import FaceLevel, looks_like_retinaface, match_levels
from .options import DEFAULT_ANCHORS, NAME

KINDS = ("cls", "bbox", "landmark")
# what each prediction conv of a headless RetinaFace holds (the manifest's `headless.outputs`)
HEADLESS_HOLDS = {
    "cls": "face scores before softmax: channels background of each anchor, then face of each "
           "anchor (insightface reshapes to 2 x A*H x W and softmaxes over the first axis)",
    "bbox": "box deltas dx, dy, dw, dh per anchor",
    "landmark": "five landmarks' x, y deltas per anchor",
}
# seeded weights (ssdconv.mxnet.seeded): the face logits spread, with a background bias so a
# few anchors score high (as a trained detector on a photo), deltas of order 0.3
CLS_STD = 2.0
FACE_BIAS = -4.0
BBOX_STD = 0.3
LANDMARK_STD = 0.5
# insightface's model is bound at 640 x 640 (facts §12.1.5); any size runs
DEFAULT_SIZE = (640, 640)


def role(kind: str, stride: int) -> str:
    return f"{kind}_stride{stride}"


class RetinaFaceHead(Head):
    """A recognised RetinaFace: its levels (`FaceLevel`, graph order) and their anchors."""

    def __init__(self, source, levels: list[FaceLevel]) -> None:
        self.source = source
        self.levels = levels
        self.anchors = self._anchors(DEFAULT_ANCHORS)
        self.score_threshold = 0.8
        self.nms = 0.4

    def _anchors(self, text: str) -> list[StrideAnchors]:
        """The configured anchors per level, checked against the predictors."""
        given = {a.stride: a for a in parse_scales(text)}
        out = []
        for lv in self.levels:
            a = given.get(lv.stride)
            if a is None:
                raise UserError(f"--retinaface-anchors {text!r} names no scales for stride "
                                f"{lv.stride} (output {self.source.nodes[lv.cls].name}); give "
                                "STRIDE:SCALE,... for every stride")
            if a.count != lv.anchors:
                raise UserError(f"--retinaface-anchors gives stride {lv.stride} {a.count} "
                                f"anchor(s) but its predictors have {lv.anchors} "
                                f"({self.source.nodes[lv.cls_conv].name}: "
                                f"{2 * lv.anchors} channels); give {lv.anchors} scales")
            out.append(a)
        return out

    def configure(self, options) -> None:
        self.anchors = self._anchors(options.retinaface_anchors)
        self.score_threshold = options.retinaface_score
        self.nms = options.retinaface_nms

    @property
    def family(self) -> DetectorFamily:
        return FAMILY

    @property
    def raw_pixels(self) -> bool:
        return True

    def outputs(self) -> dict[str, tuple[int, int]]:
        """Role -> (source node, output) of every raw output, strides in graph order."""
        out = {}
        for lv in self.levels:
            for kind, index in zip(KINDS, (lv.cls, lv.bbox, lv.landmark)):
                if index is not None:
                    out[role(kind, lv.stride)] = (index, 0)
        return out

    @property
    def walk_roots(self) -> list[int]:
        return [i for i, _ in self.outputs().values()]

    def synthesise(self, graph, blob_of: Callable[..., str], form: str = STOCK) -> None:
        blobs = {r: blob_of(i, k) for r, (i, k) in self.outputs().items()}
        graph.outputs = list(blobs.values())
        graph.roles = {"input": self.source.input_name, **blobs}

    def after_passes(self, graph) -> None:
        """Each output written by a layer of its name (OpenCV's `forward` names layers)."""
        graph.name_producers_after(graph.outputs)

    def prove(self) -> Proof:
        return Proof(figures={"levels": [
            {"stride": lv.stride, "feature": [lv.height, lv.width], "anchors": lv.anchors,
             "base_anchors": base_anchors(a).tolist()}
            for lv, a in zip(self.levels, self.anchors)]})

    def manifest_section(self, proof: Proof) -> dict:
        names = {r: self.source.nodes[i].name for r, (i, _) in self.outputs().items()}
        shapes = {r: list(self.source.shape(i, k)) for r, (i, k) in self.outputs().items()}
        return {
            "blobs": {"input": self.source.input_name, **names},
            "outputs": [{"name": names[r], "role": r, "shape": shapes[r], "vector": False}
                        for r in names],
            "retinaface": {
                "anchors": [{"stride": a.stride, "scales": list(a.scales),
                             "base_size": a.base_size, "ratios": list(a.ratios)}
                            for a in self.anchors],
                "levels": proof.figures["levels"],
                "landmarks": self.levels[0].landmark is not None,
                "decode": {"score_threshold": self.score_threshold, "nms_threshold": self.nms,
                           "reference": "insightface retinaface.py RetinaFace.detect (net3): "
                                        "+1 widths, boxes clipped before the threshold, "
                                        "cpu_nms suppressing at IoU >= nms_threshold"},
            },
        }

    def summary(self, proof: Proof) -> str:
        strides = "/".join(str(lv.stride) for lv in self.levels)
        return f"RetinaFace, strides {strides}, raw outputs under the source's names"

    def describe(self, proof: Proof) -> list[str]:
        marks = "with" if self.levels[0].landmark is not None else "without"
        lines = [f"a RetinaFace face detector, {len(self.levels)} strides, {marks} landmarks, "
                 f"input {self.source.image_size[0]}x{self.source.image_size[1]} RGB 0..255"]
        for lv, a in zip(self.levels, self.anchors):
            lines.append(f"  stride {lv.stride}: {lv.height}x{lv.width}, {lv.anchors} anchors "
                         f"(scales {', '.join(f'{s:g}' for s in a.scales)}, base "
                         f"{a.base_size}), outputs {self.source.nodes[lv.cls].name}, "
                         f"{self.source.nodes[lv.bbox].name}"
                         + (f", {self.source.nodes[lv.landmark].name}"
                            if lv.landmark is not None else ""))
        lines.append(f"decode (the check's, insightface's): score >= {self.score_threshold:g}, "
                     f"NMS IoU {self.nms:g}")
        return lines

    def raw_outputs(self) -> dict[str, tuple[int, int]]:
        return self.outputs()

    def headless_cut(self, layout: str) -> HeadlessCut:
        """The nine prediction convs (class scores before insightface's reshape-softmax, boxes,
        landmarks per stride); nchw only. No C tail is generated for RetinaFace yet: the
        manifest's `retinaface` section holds its anchors and decode settings."""
        if layout != "nchw":
            raise UserError(f"--headless-layout {layout}: a RetinaFace's headless model is nchw "
                            "only (its prediction convs as they are); drop --headless-layout")
        outputs, described = {}, []
        for lv in self.levels:
            for kind, index in zip(KINDS, (lv.cls_conv, lv.bbox, lv.landmark)):
                if index is not None:
                    outputs[role(kind, lv.stride)] = (index, 0)
                    described.append({"role": role(kind, lv.stride),
                                      "shape": list(self.source.shape(index, 0)),
                                      "holds": HEADLESS_HOLDS[kind]})
        return HeadlessCut(outputs=outputs, meaning={"outputs": described, "tail": None})

    def kind_checks(self, manifest: dict) -> list:
        return [FaceCheck(self)]

    def levels_from(self, raw: dict) -> list[Level]:
        """The decode's levels from raw tensors by role (flat or not; batch axis dropped)."""
        def tensor(kind: str, lv: FaceLevel, index: int | None):
            if index is None:
                return None
            _, c, h, w = self.source.shape(index)
            return np.asarray(raw[role(kind, lv.stride)]).reshape(c, h, w)

        return [Level(a, tensor("cls", lv, lv.cls), tensor("bbox", lv, lv.bbox),
                      tensor("landmark", lv, lv.landmark))
                for lv, a in zip(self.levels, self.anchors)]

    def faces(self, levels: list[Level], decode) -> Faces:
        return decode(levels, self.source.image_size, self.score_threshold, self.nms)

    def seeding_hints(self) -> list[SeedHint]:
        hints = []
        for lv in self.levels:
            hints.append(SeedHint(lv.cls_conv, CLS_STD, bias_start=lv.anchors, bias_step=1,
                                  bias_add=FACE_BIAS))
            hints.append(SeedHint(lv.bbox, BBOX_STD, centre=True))
            if lv.landmark is not None:
                hints.append(SeedHint(lv.landmark, LANDMARK_STD, centre=True))
        return hints


class RetinaFaceFamily(DetectorFamily):
    name = NAME
    kind = "a RetinaFace face detector"
    zoo_modules = ()

    def recognise(self, source) -> Head | NoMatch:
        levels = match_levels(source)
        if isinstance(levels, NoMatch):
            return levels
        return RetinaFaceHead(source, levels)

    def default_input_size(self, nodes, params) -> tuple[int, int] | NoMatch:
        if looks_like_retinaface(nodes):
            return DEFAULT_SIZE
        return NoMatch("no face classifier chain (Reshape (0, 2, -1, 0) -> channel softmax)")

    def zoo_input_size(self, net) -> tuple[int, int]:
        return DEFAULT_SIZE

    def saved_class_count(self, net, saved: dict) -> int | None:
        return None


FAMILY = RetinaFaceFamily()
register_example(NAME, example_files)
