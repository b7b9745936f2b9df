"""The ONNX target behind the backend seam: NAME.onnx with GluonCV's own post-processing (the
family's gluon head: its decode, per-class mask, global top-k, per-class NMS, first post_nms
rows, exactly), run by onnxruntime and OpenVINO (`runner`). With `--onnx-nms none` the model
ends before box_nms, at GluonCV's decoded boxes and per-class scores (`pre_nms`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ... import values
from ...family.interface import GLUON
from ...option import Option
from ..interface import Backend, Runner, RunSettings, Written

ONNX_NMS = ("box_nms", "none")  # `pre_nms.NMS_CHOICES` (this module stays cheap to import)


def onnx_nms(value) -> str:
    """box_nms (GluonCV's detections, exactly) or none (the boxes and per-class scores its
    box_nms reads, for runtimes without NonMaxSuppression/TopK)."""
    return values.choice(value, ONNX_NMS)


class OnnxBackend(Backend):
    name = "onnx"
    runtimes = ("onnxruntime", "openvino")
    extensions = ("onnx",)
    head_form = GLUON
    options = (
        Option("onnx_nms", "box_nms", onnx_nms,
               "ONNX post-processing: box_nms (default: GluonCV's detections, exactly) or none "
               "(end at the decoded boxes and per-class scores, without NonMaxSuppression/TopK, "
               "for runtimes that lack them; NMS is then yours, its parameters in the manifest)",
               flag="--onnx-nms", commands=("convert", "verify"), shapes_head=True,
               needs="chooses the ONNX model's post-processing"),
    )

    def write(self, graph, staging: Path, name: str, options, prepared) -> Written:
        from . import heads  # noqa: F401  (registers the gluon heads' lowerings)
        from .emit import write_onnx

        pre_nms = None
        if options.onnx_nms == "none":
            from .pre_nms import manifest_section, without_nms

            graph = without_nms(graph)
        info = write_onnx(graph, staging, name)
        if options.onnx_nms == "none":
            pre_nms = manifest_section(graph)
        section = {"opset": info["opset"], "node_count": info["node_count"],
                   "nms": options.onnx_nms, "blobs": dict(graph.roles),
                   "openvino_iou_threshold": openvino_thresholds(info["onnx"])}
        if pre_nms is not None:
            section["pre_nms"] = pre_nms
        return Written(files={"onnx": info["onnx"]}, section=section,
                       choices=list(info["choices"]))

    def npu_lint(self, files: dict[str, str], input_shape: list[int]) -> list[str] | None:
        from .npu_lint import lint

        return lint(files["onnx"])

    def runners(self, files: dict[str, str], manifest: dict, settings: RunSettings,
                runtimes: tuple[str, ...] | None = None) -> list[Runner]:
        from .runner import OnnxRuntimeRunner, OpenVinoRunner

        kinds = {"onnxruntime": OnnxRuntimeRunner, "openvino": OpenVinoRunner}
        return [kinds[r](files["onnx"], manifest, settings.threads)
                for r in (runtimes or self.runtimes)]


def openvino_thresholds(path: str) -> dict[str, float]:
    """Each NonMaxSuppression's IoU threshold initializer -> the value OpenVINO needs there.

    The file holds float32(t), which onnxruntime compares with `>` as MXNet does; OpenVINO's CPU
    plugin suppresses at `>=`, so there the next float32 above t gives MXNet's rule on float32
    IoUs (measured: tests/test_onnx_box_nms.py). The manifest records both, so a user
    deploying on OpenVINO sets this one value."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    names = [n.input[3] for n in model.graph.node
             if n.op_type == "NonMaxSuppression" and len(n.input) > 3]
    return {k: float(np.nextafter(np.float32(values[k]), np.float32(np.inf))) for k in names}


BACKEND = OnnxBackend()
