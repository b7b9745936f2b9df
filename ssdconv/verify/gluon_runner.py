"""The original model, run by MXNet: float32 as users run it, float64 as the exact reference."""

from __future__ import annotations

import numpy as np

from ..family.interface import Head
from ..mxnet.run import run_outputs


class GluonRunner:
    """Runs the source graph with GluonCV's preprocessing ((pixel/255 - mean)/std, RGB); the
    raw tensors it reports are those the head names (`Head.raw_outputs`)."""

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
        model, head, opts = conversion.model, conversion.head, conversion.options
        if model.adapter is not None:
            return cls(model.graph, head, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), model.adapter.layout)
        return cls(model.graph, head, opts.source_mean, opts.source_std)

    def input(self, rgb: np.ndarray, dtype=np.float32) -> np.ndarray:
        x = (rgb.astype(np.float64) / 255.0 - self.mean / 255.0) / (self.std / 255.0)
        if self.layout == "NHWC":
            return x[None].astype(dtype)
        return x.transpose(2, 0, 1)[None].astype(dtype)

    def _raw_nodes(self) -> tuple[list[str], list[tuple[int, int]]]:
        raw = self.head.raw_outputs()
        return list(raw), list(raw.values())

    def detect(self, rgb: np.ndarray) -> dict:
        """float32 detections only (labels, scores, boxes in input pixels), as users run it."""
        outs, _ = run_outputs(self.graph, list(self.graph.heads), self.input(rgb, np.float32))
        ids, scores, boxes = (o[0] for o in outs[:3])
        keep = ids[:, 0] >= 0
        return {"det_labels": ids[keep, 0].astype(int), "det_scores": scores[keep, 0],
                "det_boxes": boxes[keep]}

    def run(self, rgb: np.ndarray) -> dict:
        """For one image: the head's raw tensors by role, flat, in float32 (`raw32`) and in
        float64 (`raw64`), and the float32 detections."""
        keys, nodes = self._raw_nodes()
        x32 = self.input(rgb, np.float32)
        outs, _ = run_outputs(self.graph, nodes + list(self.graph.heads), x32)
        ids, scores, boxes = (o[0] for o in outs[len(nodes):len(nodes) + 3])
        x64 = self.input(rgb, np.float64)
        outs64, _ = run_outputs(self.graph, nodes, x64, dtype="float64")
        keep = ids[:, 0] >= 0
        return {
            "raw32": {k: o.reshape(-1) for k, o in zip(keys, outs)},
            "raw64": {k: o.reshape(-1) for k, o in zip(keys, outs64)},
            "det_labels": ids[keep, 0].astype(int), "det_scores": scores[keep, 0],
            "det_boxes": boxes[keep],
        }

    def internals(self, rgb: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        """float32 outputs of the named source nodes (for per-layer bisection)."""
        index = {n.name: n.index for n in self.graph.nodes}
        wanted = [n for n in names if n in index]
        outs, _ = run_outputs(self.graph, [(index[n], 0) for n in wanted], self.input(rgb))
        return dict(zip(wanted, outs))
