"""The converted ONNX model in its two runtimes: onnxruntime and OpenVINO (CPU, float32).

Both return what every runner returns (`ssdconv.backend.interface.Runner`), read from the
manifest's `onnx.blobs`: the raw tensors by role and, for a detector, GluonCV's own ids, scores
and bboxes, in GluonCV's row order (the gluon head), so the check compares them row for row.
A model written with `--onnx-nms none` (`onnx.nms`) has no detections: its runners return
`pre_nms_boxes`, `pre_nms_scores` (the `boxes`, `scores` outputs) and GluonCV's pre-NMS rows
made from them by the manifest's recipe (`pre_nms.gluon_rows`).
"""

from __future__ import annotations

import numpy as np

from ...family.interface import GLUON_OUTPUTS
from ...verify.blobs import blobs_by_role
from ...verify.images import network_input
from ..interface import Runner
from .pre_nms import ROLES as PRE_NMS_ROLES
from .pre_nms import gluon_rows


def _section_blobs(manifest: dict) -> dict[str, str]:
    return blobs_by_role({"blobs": manifest["onnx"]["blobs"]})


def gluon_detections(outs: dict[str, np.ndarray], blobs: dict[str, str], width: int,
                     height: int) -> dict:
    """`det_labels`, `det_scores`, `det_boxes` (normalised) from GluonCV's three outputs, the
    -1 rows dropped and the order kept."""
    ids, scores, bboxes = (np.asarray(outs[blobs[k]]).reshape(-1, d)
                           for k, d in zip(GLUON_OUTPUTS, (1, 1, 4)))
    keep = ids[:, 0] >= 0
    scale = np.array([width, height, width, height], np.float32)
    return {"det_labels": ids[keep, 0].astype(int), "det_scores": scores[keep, 0],
            "det_boxes": bboxes[keep] / scale}


class _OnnxRunner(Runner):
    row_for_row = True

    def __init__(self, path: str, manifest: dict) -> None:
        self.path = path
        self.manifest = manifest
        self.blobs_by_role = _section_blobs(manifest)
        self.pre_nms = manifest["onnx"].get("nms", "box_nms") == "none"
        # a detector's outputs (GluonCV's three, or the pre-NMS pair): read apart from the raw
        # tensors; a model without them (its head no detector) has raw tensors only
        self.detects = not self.pre_nms and all(r in self.blobs_by_role for r in GLUON_OUTPUTS)
        self.heads = list(PRE_NMS_ROLES if self.pre_nms else
                          GLUON_OUTPUTS if self.detects else ())
        self.raw = {r: b for r, b in self.blobs_by_role.items()
                    if r not in ("input", *self.heads)}
        _, _, self.height, self.width = manifest["input_shape"]

    def _forward(self, x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _feed(self, rgb: np.ndarray) -> tuple[np.ndarray, list[str]]:
        x = network_input(rgb, self.manifest).astype(np.float32)
        return x, [self.blobs_by_role[k] for k in self.heads] + list(self.raw.values())

    def run(self, rgb: np.ndarray) -> dict:
        x, names = self._feed(rgb)
        outs = self._forward(x, names)
        result = {role: outs[blob][0] for role, blob in self.raw.items()}
        if self.pre_nms:
            boxes, scores = (outs[self.blobs_by_role[k]][0] for k in PRE_NMS_ROLES)
            section = self.manifest["onnx"]["pre_nms"]
            result.update(dict(zip(PRE_NMS_ROLES, (boxes, scores))),
                          pre_nms_rows=gluon_rows(boxes, scores, section),
                          pre_nms_threshold=section["mask_threshold"])
        elif self.detects:
            result.update(gluon_detections(outs, self.blobs_by_role, self.width, self.height))
        return result

    def blobs(self, rgb: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        """Internal blobs are not graph outputs of the written model: none are handed out."""
        return {}

    def timed(self, rgb: np.ndarray):
        x, names = self._feed(rgb)
        return lambda: self._forward(x, names)


class OnnxRuntimeRunner(_OnnxRunner):
    name = "onnxruntime"
    title = "onnxruntime (ONNX)"

    def __init__(self, path: str, manifest: dict, threads: int = 1) -> None:
        import onnxruntime as ort

        super().__init__(path, manifest)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    def _forward(self, x, names):
        input_name = self.session.get_inputs()[0].name
        return dict(zip(names, self.session.run(names, {input_name: x})))


class OpenVinoRunner(_OnnxRunner):
    """OpenVINO's CPU plugin in float32 (its default here would be bf16 on an AVX512_BF16 CPU).

    OpenVINO's CPU NonMaxSuppression suppresses at IoU == threshold (`>=`), MXNet only above it;
    the file holds the float32 threshold (exact in onnxruntime). The manifest's
    `onnx.openvino_iou_threshold` names the initializer and the value that make OpenVINO's rule
    equal to MXNet's on float32 IoUs (the next float32 above the threshold); this runner loads
    the file with that value, as a user deploying on OpenVINO should (measured exact:
    tests/test_onnx_box_nms.py)."""

    name = "openvino"
    title = "OpenVINO (ONNX)"

    def __init__(self, path: str, manifest: dict, threads: int = 1) -> None:
        import onnx
        import openvino as ov
        from onnx import numpy_helper

        super().__init__(path, manifest)
        model = onnx.load(path)
        for init in model.graph.initializer:
            value = manifest["onnx"]["openvino_iou_threshold"].get(init.name)
            if value is not None:
                init.CopyFrom(numpy_helper.from_array(np.array(value, np.float32), init.name))
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
        self.compiled = core.compile_model(core.read_model(model.SerializeToString(), b""),
                                           "CPU", config)
        self.request = self.compiled.create_infer_request()  # one, reused as a deployment would

    def _forward(self, x, names):
        self.request.infer({0: x})
        return {n: self.request.get_tensor(n).data.copy() for n in names}
