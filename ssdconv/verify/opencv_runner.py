"""The converted caffe-ssd model, run by OpenCV DNN's Caffe importer."""

from __future__ import annotations

import numpy as np
from google.protobuf import text_format

from ..backend.caffe import caffe_ssd_pb2 as pb
from .images import network_input


class OpenCVRunner:
    """OpenCV DNN on NAME.prototxt + NAME.caffemodel; Winograd off unless asked (it adds
    rounding error that would hide a converter bug; users deploy with it on, so it is optional)."""

    name = "opencv"

    def __init__(self, prototxt: str, caffemodel: str, manifest: dict,
                 winograd: bool = False) -> None:
        import cv2

        self.net = cv2.dnn.readNetFromCaffe(prototxt, caffemodel)
        if hasattr(self.net, "enableWinograd"):
            self.net.enableWinograd(bool(winograd))
        self.manifest = manifest
        parsed = text_format.Parse(open(prototxt).read(), pb.NetParameter())
        self.producer = {top: layer.name for layer in parsed.layer for top in layer.top}

    def forward(self, rgb: np.ndarray, blobs: list[str]) -> dict[str, np.ndarray]:
        self.net.setInput(network_input(rgb, self.manifest), self.manifest["blobs"]["input"])
        layers = [self.producer[b] for b in blobs]
        outs = self.net.forward(layers)
        return dict(zip(blobs, outs))

    def run(self, rgb: np.ndarray) -> dict:
        b = self.manifest["blobs"]
        outs = self.forward(rgb, [b["detections"], b["loc"], b["conf"], b["priors"]])
        det = outs[b["detections"]].reshape(-1, 7)
        det = det[det[:, 2] > 0]
        return {"loc": outs[b["loc"]].reshape(-1), "conf": outs[b["conf"]].reshape(-1),
                "priors": outs[b["priors"]].reshape(2, -1),
                "det_labels": det[:, 1].astype(int) - self.manifest["label_offset"],
                "det_scores": det[:, 2], "det_boxes": det[:, 3:7]}

    def blobs(self, rgb: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        names = [n for n in names if n in self.producer]
        return self.forward(rgb, names)
