"""The original model, run by MXNet: float32 as users run it, float64 as the exact reference."""

from __future__ import annotations

import json

import numpy as np

from ..family.interface import DetectorHead, Head
from ..mxnet.run import run_outputs


class GluonRunner:
    """Runs the source graph with GluonCV's preprocessing ((pixel/255 - mean)/std, RGB); the
    raw tensors it reports are those the head names (`Head.raw_outputs`), for any head; the
    detections only for a detector head's network (`DetectorHead`), which ends in them."""

    def __init__(self, graph, head: Head, mean_rgb, std_rgb, layout: str = "NCHW") -> None:
        self.graph = graph
        self.head = head
        self.mean = np.asarray(mean_rgb, np.float64)
        self.std = np.asarray(std_rgb, np.float64)
        self.layout = layout

    @classmethod
    def for_conversion(cls, conversion) -> GluonRunner:
        """The reference for a conversion: its model, with the preprocessing it was made for.

        A model whose graph normalises its own input gets raw pixels in its own layout."""
        from ..convert import source_preprocessing

        model, head = conversion.model, conversion.head
        if model.adapter is not None:  # the graph's own arithmetic: raw pixels in
            return cls(model.graph, head, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), model.adapter.layout)
        mean, std, _, layout = source_preprocessing(model, head, conversion.options)
        return cls(model.graph, head, mean, std, layout)

    def input(self, rgb: np.ndarray, dtype=np.float32) -> np.ndarray:
        x = (rgb.astype(np.float64) / 255.0 - self.mean / 255.0) / (self.std / 255.0)
        if self.layout == "NHWC":
            return x[None].astype(dtype)
        return x.transpose(2, 0, 1)[None].astype(dtype)

    def _raw_nodes(self) -> tuple[list[str], list[tuple[int, int]]]:
        raw = self.head.raw_outputs()
        return list(raw), list(raw.values())

    def _nms_node(self):
        """The graph's one `_contrib_box_nms` (GluonCV's SSD and YOLOv3 both end in one), or
        None: its input is every candidate NMS chose from."""
        nms = [n for n in self.graph.nodes if n.op == "_contrib_box_nms"]
        return nms[0] if len(nms) == 1 else None

    @staticmethod
    def _candidates(node, rows: np.ndarray) -> dict:
        """box_nms's input rows as detections (label, score, corner box px), valid rows only:
        what the check's tie analysis accepts as a box Gluon itself proposed."""
        a = node.attrs
        rows = rows.reshape(-1, rows.shape[-1])
        ids = a.int("id_index")
        score = rows[:, a.int("score_index")]
        labels = rows[:, ids] if ids >= 0 else np.zeros(len(rows))
        keep = (score > a.float("valid_thresh")) & (labels >= 0)
        start = a.int("coord_start")
        return {"det_labels": labels[keep].astype(int), "det_scores": score[keep],
                "det_boxes": rows[keep, start:start + 4]}

    def _float64_symbol(self) -> str:
        """The graph's symbol with every op that makes a float32 constant (GluonCV's YOLOv3
        `_arange` class ids, say) making it in float64: else MXNet refuses to run the tail
        after the raw tensors in float64 (a float32 input meets a float64 one)."""
        if "float64_symbol" not in self.graph.cache:
            data = json.loads(self.graph.symbol_json)
            for node in data["nodes"]:
                attrs = node.get("attrs", {})
                if node["op"] != "null" and attrs.get("dtype") == "float32":
                    attrs["dtype"] = "float64"
            self.graph.cache["float64_symbol"] = json.dumps(data)
        return self.graph.cache["float64_symbol"]

    @property
    def detects(self) -> bool:
        """Whether the graph ends in detections: GluonCV's three outputs (ids, scores, boxes)
        that a detector head's network returns."""
        return isinstance(self.head, DetectorHead)

    @staticmethod
    def _detections(ids: np.ndarray, scores: np.ndarray, boxes: np.ndarray) -> dict:
        """GluonCV's three outputs (batch axis dropped) as detections, the -1 rows dropped."""
        keep = ids[:, 0] >= 0
        return {"det_labels": ids[keep, 0].astype(int), "det_scores": scores[keep, 0],
                "det_boxes": boxes[keep]}

    def detect(self, rgb: np.ndarray) -> dict:
        """float32 detections only (labels, scores, boxes in input pixels), as users run it."""
        if not self.detects:
            raise RuntimeError("detections of a network whose head is no detector")
        outs, _ = run_outputs(self.graph, list(self.graph.heads), self.input(rgb, np.float32))
        return self._detections(*(o[0] for o in outs[:3]))

    def run(self, rgb: np.ndarray, pre_nms: bool = False) -> dict:
        """For one image: the head's raw tensors by role, flat, in float32 (`raw32`) and in
        float64 (`raw64`): what every conversion is checked on. For a detector head also the
        float32 detections, and (when the graph ends in one box_nms) the `candidates` NMS chose
        them from; with `pre_nms`, box_nms's input rows [R, 6] themselves, in float32
        (`pre_nms32`) and float64 (`pre_nms64`), for a model converted without NMS."""
        keys, nodes = self._raw_nodes()
        nms = self._nms_node() if self.detects else None
        extra = [nms.inputs[0]] if nms is not None else []
        if pre_nms and nms is None:
            raise RuntimeError("the Gluon graph has no single box_nms whose input rows the "
                               "pre-NMS model could be compared with")
        x32 = self.input(rgb, np.float32)
        tail = list(self.graph.heads) + extra if self.detects else []
        outs, _ = run_outputs(self.graph, nodes + tail, x32)
        x64 = self.input(rgb, np.float64)
        if pre_nms:
            outs64, _ = run_outputs(self.graph, nodes + extra, x64, dtype="float64",
                                    symbol_json=self._float64_symbol())
        else:
            outs64, _ = run_outputs(self.graph, nodes, x64, dtype="float64")
        out = {
            "raw32": {k: o.reshape(-1) for k, o in zip(keys, outs)},
            "raw64": {k: o.reshape(-1) for k, o in zip(keys, outs64)},
        }
        if not self.detects:
            return out
        out.update(self._detections(*(o[0] for o in outs[len(nodes):len(nodes) + 3])))
        if nms is not None:
            out["candidates"] = self._candidates(nms, outs[-1][0])
        if pre_nms:
            out["pre_nms32"] = outs[-1].reshape(-1, outs[-1].shape[-1])
            out["pre_nms64"] = outs64[-1].reshape(-1, outs64[-1].shape[-1])
        return out

    def internals(self, rgb: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        """float32 outputs of the named source nodes (for per-layer bisection)."""
        index = {n.name: n.index for n in self.graph.nodes}
        wanted = [n for n in names if n in index]
        outs, _ = run_outputs(self.graph, [(index[n], 0) for n in wanted], self.input(rgb))
        return dict(zip(wanted, outs))
