"""The converted caffe-ssd model, run by OpenCV DNN's Caffe importer."""

from __future__ import annotations

import numpy as np
from google.protobuf import text_format

from ...verify.blobs import detection_fields, detections_blob, output_blobs, raw_blobs
from ...verify.images import network_input
from ..interface import Runner
from . import caffe_ssd_pb2 as pb


class OpenCVRunner(Runner):
    """OpenCV DNN on NAME.prototxt + NAME.caffemodel; Winograd off unless asked (it adds
    rounding error that would hide a converter bug; users deploy with it on, so it is optional)."""

    name = "opencv"
    title = "OpenCV DNN (caffe-ssd)"

    def __init__(self, prototxt: str, caffemodel: str, manifest: dict,
                 winograd: bool = False) -> None:

        self.files = (prototxt, caffemodel)
        self.winograd = bool(winograd)
        self.net = self._load()
        self.manifest = manifest
        parsed = text_format.Parse(open(prototxt).read(), pb.NetParameter())
        # For internal blobs (bisection): OpenCV's importer registers a single-top layer under
        # its top's name when the two differ (a conv writing its folded BatchNorm's blob); others
        # keep the layer name. The manifest's blobs need no map: each is written by a layer of
        # its own name (the head's `after_passes` names them so).
        known = set(self.net.getLayerNames())
        self.producer = {top: (top if top in known else layer.name)
                         for layer in parsed.layer for top in layer.top}

    def _load(self):
        import cv2

        net = cv2.dnn.readNetFromCaffe(*self.files)
        if hasattr(net, "enableWinograd"):
            net.enableWinograd(self.winograd)
        return net

    def forward(self, rgb: np.ndarray, blobs: list[str], net=None) -> dict[str, np.ndarray]:
        net = net or self.net
        net.setInput(network_input(rgb, self.manifest), self.manifest["blobs"]["input"])
        layers = [self.producer[b] for b in blobs]
        outs = net.forward(layers)
        return dict(zip(blobs, outs))

    def run(self, rgb: np.ndarray) -> dict:
        """See `ssdconv.backend.interface.Runner`; detections (a detector's) are
        DetectionOutput's 7-value rows (image, label, score, box), the empty ones (score 0)
        dropped."""
        detections = detections_blob(self.manifest)
        raw = raw_blobs(self.manifest)
        names = output_blobs(self.manifest)
        self.net.setInput(network_input(rgb, self.manifest), self.manifest["blobs"]["input"])
        outs = dict(zip(names, self.net.forward(names)))
        result = {role: outs[blob][0] for role, blob in raw.items()}
        if detections:
            det = outs[detections].reshape(-1, 7)
            det = det[det[:, 2] > 0]
            result.update(detection_fields(det[:, 1:7], self.manifest["label_offset"]))
        return result

    def timed(self, rgb: np.ndarray):
        """`run`'s forward and fetch (its blobs as OpenCV returns them), the input prepared
        beforehand: OpenCV's own latency (bench/speed.py)."""
        x, blob, names = network_input(rgb, self.manifest), self.manifest["blobs"]["input"], \
            output_blobs(self.manifest)

        def forward():
            self.net.setInput(x, blob)
            return self.net.forward(names)
        return forward

    def blobs(self, rgb: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        """The named blobs; those OpenCV cannot hand out (fused away) are left out."""
        import cv2

        names = [n for n in names if n in self.producer]
        # a fresh net, asked for every blob at once: OpenCV plans fusion and in-place ReLUs at
        # the first forward, so a net that already ran hands out fused (post-ReLU) buffers
        try:
            return self.forward(rgb, names, net=self._load())
        except cv2.error:
            out = {}
            for n in names:
                try:
                    out.update(self.forward(rgb, [n], net=self._load()))
                except cv2.error:
                    continue
            return out
