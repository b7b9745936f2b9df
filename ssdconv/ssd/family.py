"""GluonCV SSD behind the detector-family seam (`ssdconv.family.interface`).

This module only wires SSD's parts to the interface: recognising and proving the head
(`match`, `anchors`, `specs`), synthesising the caffe-ssd tail (`synth`), the check's priors
stage and comparable-score rule (`check`), and the zoo facts (`zoo`). Nothing outside
`ssdconv/ssd/` knows any of it; `ssdconv.family.registered` names this module.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from ..family.interface import (
    GLUON,
    STOCK,
    DetectorFamily,
    DetectorHead,
    Head,
    HeadlessCut,
    NoMatch,
    Proof,
    SeedHint,
    StageResult,
)
from ..headless import HEADLESS_EVAL
from . import zoo
from .anchors import default_input_size, prove_priors
from .check import comparable_score, priors_stage
from .headless import ssd_cut
from .match import HeadMatch, decoder_form, match_head
from .priorbox import PRIOR_TOL
from .synth import BLOBS, name_layers_after_blobs, synthesise_gluon, synthesise_tail

# Seeded weights (ssdconv.mxnet.seeded): predictor outputs scaled so box offsets stay near 1
# and class logits spread enough that some detections score high, with a background logit bias
# so most anchors are background, as in a trained detector.
LOC_STD = 0.5
CONF_STD = 2.0
BACKGROUND_BIAS = 4.0


class SsdHead(DetectorHead):
    """A matched GluonCV SSD head (`HeadMatch`) and its proven `HeadSpec` (`spec`)."""

    def __init__(self, match: HeadMatch, source) -> None:
        self.match = match
        self.spec = match.spec
        self.source = source
        self.decoder = decoder_form(source)  # the gluon head reproduces its exp rounding

    @property
    def family(self) -> DetectorFamily:
        return FAMILY

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def walk_roots(self) -> list[int]:
        return [self.match.loc_concat.index, self.match.conf_softmax.index]

    def synthesise(self, graph, blob_of, form: str = STOCK) -> None:
        if form == GLUON:
            synthesise_gluon(graph, self.match, blob_of, self.decoder)
        else:
            synthesise_tail(graph, self.match, blob_of)

    def after_passes(self, graph) -> None:
        name_layers_after_blobs(graph)

    def prove(self) -> Proof:
        figures = prove_priors(self.spec)
        approximations = []
        if figures["caffe_int_cast_max_error"] > PRIOR_TOL:
            approximations.append({
                "what": "caffe-ssd casts PriorBox sizes to int; no integer scale k <= 1000 makes "
                        "these sizes integral",
                "where": "PriorBox", "max_prior_error": figures["caffe_int_cast_max_error"],
                "runtimes": ["caffe-ssd"]})
        return Proof(figures=figures, approximations=tuple(approximations))

    def manifest_section(self, proof: Proof) -> dict:
        spec = self.spec
        return {
            "label_offset": 1,
            "blobs": dict(BLOBS),
            "detection_output": {
                "nms_threshold": spec.nms.nms_threshold, "top_k": spec.nms.topk,
                "keep_top_k": spec.nms.post_nms, "confidence_threshold": spec.nms.class_thresh,
                "variance": list(spec.decoder.stds),
            },
            "priors": {
                "levels": [{"feature": [lv.height, lv.width], "anchors_per_cell": lv.per_cell,
                            "step": [lv.step_h, lv.step_w], "offset": lv.offset,
                            "groups": len(lv.groups),
                            "int_scale": [g.int_scale for g in lv.groups]} for lv in spec.levels],
                "proof": proof.figures,
            },
        }

    def summary(self, proof: Proof) -> str:
        return f"priors reproduce anchors to {proof.figures['float_max_error']:.1e}"

    def describe(self, proof: Proof) -> list[str]:
        spec = self.spec
        lines = [f"{spec.num_classes} classes, input {spec.image_h}x{spec.image_w}, "
                 f"{spec.num_priors} priors in {len(spec.levels)} levels"]
        for lv in spec.levels:
            groups = ", ".join(
                f"min {g.min_size:g}" + (f" max {g.max_size:g}" if g.max_size else "")
                + (f" ratios {[round(r, 4) for r in g.aspect_ratios]}" if g.aspect_ratios else "")
                + (" (min square dropped)" if g.drop_first else "")
                + (f" x{g.int_scale}" if g.int_scale > 1 else "") for g in lv.groups)
            lines.append(f"  level {lv.index}: {lv.height}x{lv.width}, {lv.per_cell} anchors/cell,"
                         f" step {lv.step_h:g}x{lv.step_w:g}, offset {lv.offset:g}: {groups}")
        nms = spec.nms
        lines.append(f"decoder stds {spec.decoder.stds}; NMS threshold {nms.nms_threshold:g}, "
                     f"top-k {nms.topk}, keep {nms.post_nms}, class threshold "
                     f"{nms.class_thresh:g}")
        lines.append(f"priors reproduce anchors to {proof.figures['float_max_error']:.1e} "
                     f"(OpenCV/ncnn) and {proof.figures['caffe_int_cast_max_error']:.1e} "
                     "(caffe-ssd int cast)")
        return lines

    def raw_outputs(self) -> dict[str, tuple[int, int]]:
        return {"loc": (self.match.loc_concat.index, 0),
                "conf": (self.match.conf_softmax.index, 0)}

    def comparable_score(self, raw32: dict[str, np.ndarray], gluon_scores) -> float:
        nms = self.spec.nms
        return comparable_score(raw32["conf"], self.spec.num_classes,
                                {"confidence_threshold": nms.class_thresh, "top_k": nms.topk,
                                 "keep_top_k": nms.post_nms}, gluon_scores)

    def nms_threshold(self) -> float | None:
        return self.spec.nms.nms_threshold

    @cached_property
    def _anchors(self) -> np.ndarray:
        return self.spec.anchors_normalised()

    def check_stages(self, runtime: dict) -> list[StageResult]:
        if "priors" not in runtime:  # a gluon head decodes against the anchors themselves
            return []
        return [priors_stage(runtime["priors"], self._anchors, self.spec.decoder.stds)]

    def headless_cut(self, layout: str) -> HeadlessCut:
        return ssd_cut(self, self.source, layout)

    def seeding_hints(self) -> list[SeedHint]:
        loc = [SeedHint(conv.index, LOC_STD) for conv in self.match.loc_convs]
        conf = [SeedHint(conv.index, CONF_STD, bias_start=0,
                         bias_step=self.spec.num_classes + 1, bias_add=BACKGROUND_BIAS)
                for conv in self.match.conf_convs]
        return sorted(loc + conf, key=lambda h: h.conv)


class SsdFamily(DetectorFamily):
    """GluonCV's SSDs: anchors -> PriorBox, box/class predictors, softmax, DetectionOutput."""

    name = "ssd"
    kind = "an SSD detector"
    zoo_modules = ("gluoncv.model_zoo.ssd",)
    eval_variants = (HEADLESS_EVAL,)

    def recognise(self, source) -> Head | NoMatch:
        found = match_head(source)
        return found if isinstance(found, NoMatch) else SsdHead(found, source)

    def default_input_size(self, nodes, params) -> tuple[int, int] | NoMatch:
        size = default_input_size(nodes, params)
        if size is None:
            return NoMatch("no anchor constant (a 5-D parameter read by slice_like)")
        return size

    def zoo_input_size(self, net) -> tuple[int, int]:
        return zoo.zoo_input_size(net)

    def saved_class_count(self, net, saved: dict) -> int | None:
        return zoo.saved_class_count(net, saved)

    def store_name(self, zoo_name: str) -> str:
        return zoo.store_name(zoo_name)


FAMILY = SsdFamily()
