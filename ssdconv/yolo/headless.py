"""A GluonCV YOLOv3 cut headless (`--headless`): its three raw prediction convs.

What NPU toolchains' YOLO examples run on the NPU (facts §13.1.6: rknn_model_zoo's YOLOv5
keeps the raw [1, A*(5+C), H, W] maps and decodes on the CPU, "this subgraph is not
quantification-friendly"): each level's prediction conv as it is, stride 32 first, channel
a*(5+C)+k with k = tx, ty, tw, th, objectness, classes. Sidecar: `NAME_anchors.txt`, the
anchors (w, h in input pixels) one value per line, levels in output order, as rknn_model_zoo's
`anchors_yolov5.txt`; strides and the NMS settings are in the manifest, the exact decode and
NMS in the generated C tail.
"""

from __future__ import annotations

from ..errors import UserError
from ..family.interface import HeadlessCut


def yolo_cut(head, layout: str) -> HeadlessCut:
    """The YOLOv3 `head` (a YoloHead) cut headless; nchw only (no transpose of its own to
    keep: a permuted layout would add a layer)."""
    if head.native:
        raise UserError("--yolo-head native writes a detection layer after the raw maps and "
                        "--headless cuts the model before it: drop one of them")
    if layout != "nchw":
        raise UserError(f"--headless-layout {layout}: a YOLOv3's headless model is nchw only "
                        "(its prediction convs as they are); drop --headless-layout")
    spec = head.spec
    k = 5 + spec.num_classes
    outputs = {f"outputs.{i}": (lv.conv, 0) for i, lv in enumerate(spec.levels)}
    described = [{"role": f"outputs.{i}", "level": i, "stride": lv.stride,
                  "shape": [1, lv.num_anchors * k, lv.height, lv.width],
                  "channels": f"a*{k} + k for anchor a < {lv.num_anchors}, k = tx, ty, tw, th, "
                              "objectness, then the class logits"}
                 for i, lv in enumerate(spec.levels)]

    def tail(name: str) -> dict[str, str]:
        from ..tail import c_prefix, yolo_tail_source

        return yolo_tail_source(c_prefix(name), stem=name, levels=spec.levels,
                                num_classes=spec.num_classes, nms=spec.nms, layout=layout)

    def sidecars(name: str) -> dict[str, bytes]:
        values = [v for lv in spec.levels for a in lv.anchors for v in a]
        return {f"{name}_anchors.txt": "".join(f"{float(v):.9g}\n" for v in values).encode()}

    meaning = {
        "outputs": described,
        "anchors": {"format": "_anchors.txt: w, h of every anchor in input pixels, one value "
                              "per line, levels in output order",
                    "per_level": [[list(a) for a in lv.anchors] for lv in spec.levels]},
        "tail": {"inputs": "the prediction maps of every level, in output order",
                 "rows": "GluonCV's rows (class id, score, x1, y1, x2, y2 in input pixels), "
                         "-1 rows after the last detection",
                 "computes": "sigmoid, GluonCV's YOLOv3 decode (grid offsets, strides, "
                             "anchors), class score times objectness, the valid threshold, "
                             "top-k over all classes, per-class NMS, post-NMS top-k, as MXNet "
                             "does in float32"},
    }
    return HeadlessCut(outputs=outputs, meaning=meaning, tail_inputs=(tuple(outputs),),
                       tail=tail, sidecars=sidecars)
