"""GluonCV YOLOv3 behind the detector-family seam (`ssdconv.family.interface`).

This module only wires YOLOv3's parts to the interface: recognising the head (`match`),
proving its decode (`decode`), synthesising the stock-layer tail (`synth`), the check's decode
stage and comparable-score rule (`check`), and the zoo facts (`zoo`). Nothing outside
`ssdconv/yolo/` knows any of it; `ssdconv.family.registered` names this module.
"""

from __future__ import annotations

import numpy as np

from ..backend.interface import EvalVariant
from ..errors import UserError
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
from .check import comparable_score, decode_stage
from .decode import prove
from .headless import yolo_cut
from .match import match_head
from .native import check_native_input, native_detections, native_params
from .options import NAME
from .spec import YoloSpec
from .synth import (
    BLOBS,
    name_layers_after_blobs,
    synthesise_gluon,
    synthesise_native,
    synthesise_tail,
)

# Seeded weights (ssdconv.mxnet.seeded): prediction outputs centred (box sizes near the
# anchors') and spread so sizes vary and some class scores are high, with an objectness bias so
# most boxes are background, as in a trained detector.
PREDICTION_STD = 1.5
OBJECTNESS_BIAS = -5.0
OBJECTNESS_CHANNEL = 4  # channel a*(5+C)+k: k = tx, ty, tw, th, objectness, classes...


class YoloHead(DetectorHead):
    """A recognised GluonCV YOLOv3 head (`YoloSpec`) in its source graph."""

    def __init__(self, source, spec: YoloSpec) -> None:
        self.source = source
        self.spec = spec
        self._raw_blobs: list[str] | None = None  # set by synthesise: the walk names them
        self.native = False  # --yolo-head native: ncnn's Yolov3DetectionOutput

    def configure(self, options) -> None:
        self.native = options.yolo_head == "native"
        if not self.native:
            return
        if tuple(options.targets) != ("ncnn",):
            raise UserError("--yolo-head native writes ncnn's Yolov3DetectionOutput, which "
                            "caffe-ssd has no layer for: give --target ncnn (and convert the "
                            "caffe model in another run, without --yolo-head native)")
        spec = self.spec
        self._native_attrs()  # unequal anchor counts: refused here, before any work
        check_native_input([(lv.height, lv.width) for lv in spec.levels],
                           [lv.stride for lv in spec.levels], spec.image_w, spec.image_h)

    def _native_attrs(self) -> dict:
        spec = self.spec
        return native_params([lv.anchors for lv in spec.levels],
                             [lv.stride for lv in spec.levels], spec.num_classes,
                             spec.nms.valid_threshold, spec.nms.nms_threshold)

    @property
    def family(self) -> DetectorFamily:
        return FAMILY

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def walk_roots(self) -> list[int]:
        return [lv.conv for lv in self.spec.levels]

    @property
    def raw_blobs(self) -> list[str]:
        """The IR blobs of the prediction convs, in GluonCV's order (stride 32, 16, 8)."""
        if self._raw_blobs is None:
            raise RuntimeError("YoloHead.raw_blobs before synthesise: the walk names them")
        return self._raw_blobs

    def synthesise(self, graph, blob_of, form: str = STOCK) -> None:
        self._raw_blobs = [blob_of(lv.conv) for lv in self.spec.levels]
        source = self.source.nodes[self.spec.nms_node].name
        if form == GLUON:
            synthesise_gluon(graph, self.spec, self.raw_blobs, source)
        elif self.native:
            synthesise_native(graph, self.raw_blobs, self._native_attrs(), source)
        else:
            synthesise_tail(graph, self.spec, self.raw_blobs, source=source)

    def approximations(self) -> list[dict]:
        if not self.native:
            return []
        return [{"what": "ncnn's Yolov3DetectionOutput (--yolo-head native): one label per box "
                         "(argmax), class-agnostic NMS, its own confidence formula "
                         "1/(1+e^-obj*(1+e^-cls)), no top-k; checked against that layer's "
                         "arithmetic, its distance from GluonCV's detections reported",
                 "where": BLOBS["detections"], "runtimes": ["ncnn"]}]

    def reference_detections(self, gluon: dict) -> tuple[dict, float] | None:
        if not self.native:
            return None
        spec = self.spec
        raws = [gluon["raw32"][f"outputs.{i}"].reshape(
            -1, lv.height, lv.width) for i, lv in enumerate(spec.levels)]
        attrs = self._native_attrs()
        rows = native_detections(raws, input_w=spec.image_w, input_h=spec.image_h, **attrs)
        unit = np.array([spec.image_w, spec.image_h, spec.image_w, spec.image_h], np.float64)
        ref = {"det_labels": rows[:, 0].astype(int) - 1, "det_scores": rows[:, 1],
               "det_boxes": rows[:, 2:6].astype(np.float64) * unit}
        return ref, float(spec.nms.valid_threshold)

    def after_passes(self, graph) -> None:
        name_layers_after_blobs(graph)

    def prove(self) -> Proof:
        return Proof(figures=prove(self.source, self.spec))

    def _levels(self) -> list[dict]:
        return [{"feature": [lv.height, lv.width], "stride": lv.stride,
                 "anchors": [list(a) for a in lv.anchors]} for lv in self.spec.levels]

    def manifest_section(self, proof: Proof) -> dict:
        spec, nms = self.spec, self.spec.nms
        # a headless cut (never synthesised: `ssdconv.headless`) names its own blobs
        blobs = {"input": BLOBS["input"], "outputs": list(self._raw_blobs or ()),
                 "boxes": BLOBS["boxes"], "scores": BLOBS["scores"],
                 "detections": BLOBS["detections"]}
        if self.native:  # ncnn's layer reads the raw outputs: no decoded blobs to check
            del blobs["boxes"], blobs["scores"]
        return {
            "label_offset": 1,
            "blobs": blobs,
            "detection_output": {
                "nms_threshold": nms.nms_threshold, "top_k": nms.topk,
                "keep_top_k": nms.post_nms, "confidence_threshold": nms.valid_threshold},
            "yolo": {
                "anchors": [[list(a) for a in lv.anchors] for lv in spec.levels],
                "strides": [lv.stride for lv in spec.levels],
                "levels": self._levels(),
                "head": "native" if self.native else "exact",
                "proof": proof.figures,
            },
        }

    def summary(self, proof: Proof) -> str:
        return (f"decode reproduces GluonCV's rows to "
                f"{proof.figures['decode_max_rel_error']:.1e}")

    def describe(self, proof: Proof) -> list[str]:
        spec, nms = self.spec, self.spec.nms
        lines = [f"{spec.num_classes} classes, input {spec.image_h}x{spec.image_w}, "
                 f"{spec.num_boxes} boxes in {len(spec.levels)} levels (YOLOv3)"]
        for lv in spec.levels:
            anchors = ", ".join(f"{w:g}x{h:g}" for w, h in lv.anchors)
            lines.append(f"  level {lv.index}: {lv.height}x{lv.width}, stride {lv.stride:g}, "
                         f"anchors {anchors}")
        lines.append(f"NMS threshold {nms.nms_threshold:g}, top-k {nms.topk}, keep "
                     f"{nms.post_nms}, score threshold {nms.valid_threshold:g}")
        lines.append(f"decode reproduces GluonCV's pre-NMS rows to "
                     f"{proof.figures['decode_max_rel_error']:.1e} (relative)")
        return lines

    def raw_outputs(self) -> dict[str, tuple[int, int]]:
        return {f"outputs.{i}": (lv.conv, 0) for i, lv in enumerate(self.spec.levels)}

    def comparable_score(self, raw32: dict[str, np.ndarray], gluon_scores) -> float:
        return comparable_score(raw32, self.spec, gluon_scores)

    def nms_threshold(self) -> float | None:
        return self.spec.nms.nms_threshold  # native: class-agnostic, the same threshold

    def check_stages(self, runtime: dict) -> list[StageResult]:
        if self.native or "boxes" not in runtime:  # no decoded blobs: native or gluon head
            return []
        return [decode_stage(runtime, self.spec)]

    def headless_cut(self, layout: str) -> HeadlessCut:
        return yolo_cut(self, layout)

    def seeding_hints(self) -> list[SeedHint]:
        return [SeedHint(lv.conv, PREDICTION_STD, bias_start=OBJECTNESS_CHANNEL,
                         bias_step=5 + self.spec.num_classes, bias_add=OBJECTNESS_BIAS,
                         centre=True)
                for lv in self.spec.levels]


class YoloFamily(DetectorFamily):
    """GluonCV's YOLOv3s: three prediction convs, a sigmoid/exp decode, per-class box_nms."""

    name = NAME
    kind = "a YOLOv3 detector"
    eval_variants = (EvalVariant("ncnn-native", {"yolo_head": "native"}, target="ncnn"),
                     HEADLESS_EVAL)
    zoo_modules = ("gluoncv.model_zoo.yolo.yolo3",)  # not .darknet: its classifier backbone

    def recognise(self, source) -> Head | NoMatch:
        found = match_head(source)
        return found if isinstance(found, NoMatch) else YoloHead(source, found)

    def default_input_size(self, nodes, params) -> tuple[int, int] | NoMatch:
        return zoo.symbol_input_size(nodes, params)

    def zoo_input_size(self, net) -> tuple[int, int]:
        return zoo.zoo_input_size(net)

    def saved_class_count(self, net, saved: dict) -> int | None:
        return zoo.saved_class_count(net, saved)


FAMILY = YoloFamily()
