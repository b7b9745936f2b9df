"""The original model, run by MXNet: float32 as users run it, float64 as the exact reference."""

from __future__ import annotations

import numpy as np

from ..mxnet.run import run_outputs
from ..ssd.match import HeadMatch


class GluonRunner:
    """Runs the source graph with GluonCV's preprocessing ((pixel/255 - mean)/std, RGB)."""

    def __init__(self, graph, head: HeadMatch, mean_rgb, std_rgb, layout: str = "NCHW") -> None:
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

    def _raw_nodes(self):
        return [(self.head.loc_concat.index, 0), (self.head.conf_softmax.index, 0)]

    def detect(self, rgb: np.ndarray) -> dict:
        """float32 detections only (labels, scores, boxes in input pixels), as users run it."""
        outs, _ = run_outputs(self.graph, list(self.graph.heads), self.input(rgb, np.float32))
        ids, scores, boxes = (o[0] for o in outs[:3])
        keep = ids[:, 0] >= 0
        return {"det_labels": ids[keep, 0].astype(int), "det_scores": scores[keep, 0],
                "det_boxes": boxes[keep]}

    def run(self, rgb: np.ndarray) -> dict:
        """float32 loc/conf/detections and float64 loc/conf for one image."""
        x32 = self.input(rgb, np.float32)
        outs, _ = run_outputs(self.graph, self._raw_nodes() + list(self.graph.heads), x32)
        loc32, conf32 = outs[0].reshape(-1), outs[1].reshape(-1)
        ids, scores, boxes = (o[0] for o in outs[2:5])
        x64 = self.input(rgb, np.float64)
        outs64, _ = run_outputs(self.graph, self._raw_nodes(), x64, dtype="float64")
        keep = ids[:, 0] >= 0
        return {
            "loc32": loc32, "conf32": conf32,
            "loc64": outs64[0].reshape(-1), "conf64": outs64[1].reshape(-1),
            "det_labels": ids[keep, 0].astype(int), "det_scores": scores[keep, 0],
            "det_boxes": boxes[keep],
        }

    def internals(self, rgb: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        """float32 outputs of the named source nodes (for per-layer bisection)."""
        index = {n.name: n.index for n in self.graph.nodes}
        wanted = [n for n in names if n in index]
        outs, _ = run_outputs(self.graph, [(index[n], 0) for n in wanted], self.input(rgb))
        return dict(zip(wanted, outs))
