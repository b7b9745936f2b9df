"""The converted ncnn model, run by the ncnn Python package."""

from __future__ import annotations

import numpy as np

from ...verify.blobs import detection_fields, detections_blob, output_blobs, raw_blobs
from ...verify.images import network_input
from ..interface import Runner

NOTES = {
    "fp16": "ncnn-fp16 stores convolution weights in half precision: its figures show what that "
            "costs and are not judged against the exact tolerances.",
    "int8": "ncnn-int8 runs its convolutions in int8 (calibrated scales, see the manifest's "
            "approximations): its figures show what that costs and are not judged against the "
            "exact tolerances.",
}


def extract_blobs(ex, blobs: list[str], during: str = "") -> dict[str, np.ndarray]:
    """The named blobs from an ncnn extractor that has its input; a failed extract (an unknown
    or unreachable blob) raises RuntimeError saying which, and `during` what."""
    out = {}
    for b in blobs:
        rc, mat = ex.extract(b)
        if rc != 0:
            raise RuntimeError(f"ncnn extract({b}) returned {rc}{during}")
        out[b] = np.array(mat)
    return out


class NcnnRunner(Runner):
    """ncnn on NAME.param + NAME.bin, light mode off (several blobs read).

    `exact` (the default) turns ncnn's fp16 packing, storage and arithmetic off, so the check
    measures the converter; without it ncnn runs with its defaults, as deployed. The name says
    which weights it runs: "ncnn-int8" when the manifest says the convolutions are int8 (ncnn
    runs them int8 either way: `use_int8_inference` stays on), "-fp16" when float weights were
    stored as fp16.
    """

    def __init__(self, param: str, binfile: str, manifest: dict, threads: int = 1,
                 exact: bool = True) -> None:
        import ncnn

        stored = manifest.get("ncnn", {})
        lossy = [k for k in ("int8", "fp16") if stored.get(k)]
        self.name = "-".join(["ncnn", *lossy])
        self.title = " ".join(["ncnn", *lossy])
        self.informational = bool(lossy)
        self.note = "\n".join(NOTES[k] for k in reversed(lossy))
        self.ncnn = ncnn
        self.net = ncnn.Net()
        self.net.opt.num_threads = threads
        if exact:
            self.net.opt.use_fp16_packed = False
            self.net.opt.use_fp16_storage = False
            self.net.opt.use_fp16_arithmetic = False
        if self.net.load_param(param) != 0 or self.net.load_model(binfile) != 0:
            raise RuntimeError(f"ncnn cannot load {param} / {binfile}")
        self.manifest = manifest

    def _input(self, rgb: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(network_input(rgb, self.manifest)[0])  # Mat borrows it

    def _extract(self, x: np.ndarray, blobs: list[str]) -> dict[str, np.ndarray]:
        ex = self.net.create_extractor()
        ex.set_light_mode(False)
        ex.input(self.manifest["blobs"]["input"], self.ncnn.Mat(x))
        return extract_blobs(ex, blobs)

    def forward(self, rgb: np.ndarray, blobs: list[str]) -> dict[str, np.ndarray]:
        return self._extract(self._input(rgb), blobs)

    def run(self, rgb: np.ndarray) -> dict:
        """See `ssdconv.backend.interface.Runner`; detections (a detector's) are ncnn's 6-value
        rows (label, score, box), none at all when nothing was found."""
        detections = detections_blob(self.manifest)
        raw = raw_blobs(self.manifest)
        outs = self.forward(rgb, output_blobs(self.manifest))
        result = {role: outs[blob] for role, blob in raw.items()}  # ncnn has no batch axis
        if detections:
            det = outs[detections]
            det = det.reshape(-1, 6) if det.size else np.zeros((0, 6), np.float32)
            result.update(detection_fields(det, self.manifest["label_offset"]))
        return result

    def timed(self, rgb: np.ndarray):
        """`run`'s extraction (the same blobs, as ncnn returns them), the input prepared
        beforehand: ncnn's own latency (bench/speed.py)."""
        x, names = self._input(rgb), output_blobs(self.manifest)
        return lambda: self._extract(x, names)

    def blobs(self, rgb: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        out = {}
        for n in names:
            try:
                out.update(self.forward(rgb, [n]))
            except RuntimeError:
                continue
        return out
