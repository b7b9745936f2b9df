"""int8 calibration: the input scale of each convolution, from the float ncnn model's own
activations on calibration images, the way ncnn's `ncnn2table` computes it by default (KL).

Why it runs the converted float model (in the ncnn package) and not Gluon: the scales must fit
the tensors the int8 layers will really see, after ncnn's own fusions, exactly as ncnn2table sees
them. Images are preprocessed as the manifest says (`images.network_input`), so calibration and
deployment feed the network the same numbers.

The method (ncnn tools/quantize/ncnn2table.cpp `quantize_KL`, re-derived here):

1. absmax: the largest |x| of each calibrated blob over all images.
2. a histogram of |x| in 2048 bins over [0, absmax] per blob, zeros left out (so a ReLU's
   zeros do not swamp it).
3. for every clip point T = 128 ... 2047 bins: P = the histogram up to T with the clipped tail
   added to its last bin; Q = the first T bins squeezed into 128 levels and spread back (each
   level's mass spread evenly over the bins it covers, fractional bins by their overlap); both
   plus 1e-4 per bin; the KL divergence sum P log(P / Q). The T with the smallest divergence
   (the first, on ties) wins.
4. threshold = (T + 0.5) * absmax / 2048 and the layer's input scale = 127 / threshold.

ncnn2table does the arithmetic in float32 and this module in float64, so a near tie between two
clip points may fall the other way; the scale then differs by one bin, 1 / (T + 0.5) of it (at
most 0.8 %). On the demo model (100 images) and ssd_512_resnet50_v1_voc the tables equal
ncnn2table's to its six printed decimals.

Why KL and not another rule (measured, 100 training images): against KL's mAP 0.8994 (fp32
0.8998) on 300 held-out demo images, absmax (no clipping), the 99.99th and the 99.999th
percentile of |x| gave 0.9001, 0.8990 and 0.9007, i.e. noise; their raw loc error was 0.85x,
0.71x and 0.78x KL's on the demo (ReLU6: little to clip) but 1.12x, 0.96x and 1.02x on
ssd_512_resnet50_v1_voc (ReLU). None is better on both, and KL is ncnn's own default.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ...verify.images import load_rgb, network_input

METHOD = "kl"
HISTOGRAM_BINS = 2048
TARGET_BINS = 128
KL_EPS = 1e-4
INT8_MAX = 127


@dataclass
class BlobStats:
    """What calibration keeps of one blob: its largest |x| and the histogram of |x|."""

    absmax: float
    histogram: np.ndarray  # int64 counts, HISTOGRAM_BINS bins over [0, absmax], zeros excluded


def histogram(values: np.ndarray, absmax: float) -> np.ndarray:
    """ncnn2table's bin counts of |values| (bin = min(int(|x| / absmax * 2048), 2047))."""
    v = np.abs(np.asarray(values, np.float32).ravel())
    v = v[v != 0]
    index = np.minimum((v / np.float32(absmax) * np.float32(HISTOGRAM_BINS)).astype(np.int64),
                       HISTOGRAM_BINS - 1)
    return np.bincount(index, minlength=HISTOGRAM_BINS).astype(np.int64)


def kl_divergences(hist: np.ndarray) -> np.ndarray:
    """The KL divergence of every clip point T = TARGET_BINS .. HISTOGRAM_BINS-1 (index T-128).

    Squeezing and spreading by fractional overlaps is linear interpolation of cumulative mass:
    the histogram's cumulative mass interpolated at the level edges gives each level's mass, and
    the levels' cumulative mass interpolated at the bin edges gives what each bin gets back."""
    p = np.asarray(hist, np.float64)
    p = p / p.sum()
    cum = np.concatenate([[0.0], np.cumsum(p)])
    bin_edges = np.arange(HISTOGRAM_BINS + 1, dtype=np.float64)
    level_index = np.arange(TARGET_BINS + 1, dtype=np.float64)
    out = np.empty(HISTOGRAM_BINS - TARGET_BINS)
    for t in range(TARGET_BINS, HISTOGRAM_BINS):
        level_edges = level_index * (t / TARGET_BINS)
        level_cum = np.interp(level_edges, bin_edges, cum)
        expand = np.diff(np.interp(bin_edges[:t + 1], level_edges, level_cum)) + KL_EPS
        clip = p[:t] + KL_EPS
        clip[-1] += 1.0 - cum[t]  # the clipped tail goes to the last kept bin
        out[t - TARGET_BINS] = np.dot(clip, np.log(clip / expand))
    return out


def kl_threshold_bins(hist: np.ndarray) -> int:
    """The clip point T (in bins) with the smallest KL divergence, the first on ties."""
    return TARGET_BINS + int(np.argmin(kl_divergences(hist)))


def input_scale(stats: BlobStats) -> float | None:
    """127 / threshold for one blob; None when it was zero on every image (nothing to scale)."""
    if not stats.absmax > 0 or not stats.histogram.any():
        return None
    threshold = (kl_threshold_bins(stats.histogram) + 0.5) * stats.absmax / HISTOGRAM_BINS
    return float(np.float32(INT8_MAX / threshold))


def collect(run: Callable[[np.ndarray, list[str]], dict[str, np.ndarray]], blobs: Sequence[str],
            inputs: Callable[[], Iterable[np.ndarray]]) -> dict[str, BlobStats]:
    """Two passes over the inputs, as ncnn2table: absmax per blob, then histograms.

    `run(x, blobs)` runs the float model on one network input and returns those blobs;
    `inputs()` yields the network inputs afresh for each pass."""
    blobs = list(dict.fromkeys(blobs))
    absmax = dict.fromkeys(blobs, 0.0)
    for x in inputs():
        for b, v in run(x, blobs).items():
            absmax[b] = max(absmax[b], float(np.abs(v).max(initial=0.0)))
    hist = {b: np.zeros(HISTOGRAM_BINS, np.int64) for b in blobs}
    for x in inputs():
        for b, v in run(x, blobs).items():
            if absmax[b] > 0:
                hist[b] += histogram(v, absmax[b])
    return {b: BlobStats(absmax[b], hist[b]) for b in blobs}


class NcnnCalibration:
    """Calibration of a float ncnn model on image files: what `--ncnn-int8 CALIB` runs.

    Called with the float model (param text, .bin bytes) and {layer name: input blob}, it returns
    {layer name: input scale or None}. ncnn runs with fp16 off and one thread, as ncnn2table
    runs it.
    `sources` are the paths the user gave (folders or images), for the manifest."""

    def __init__(self, images: Sequence[str], preprocess: dict, input_blob: str,
                 input_shape: Sequence[int], sources: Sequence[str] = ()) -> None:
        self.images = list(images)
        self.sources = list(sources) or list(images)
        self.preprocess = dict(preprocess)
        self.input_blob = input_blob
        self.height, self.width = int(input_shape[-2]), int(input_shape[-1])

    def inputs(self) -> Iterable[np.ndarray]:
        for path in self.images:
            rgb = load_rgb(path, self.height, self.width)
            yield np.ascontiguousarray(network_input(rgb, self.preprocess)[0])

    def describe(self) -> dict:
        return {"method": f"{METHOD} (ncnn2table's default)", "images": len(self.images),
                "sources": self.sources, "histogram_bins": HISTOGRAM_BINS,
                "preprocessing": "resized to the input (bilinear), then (pixel - mean) * scale "
                                 "in channel_order, as this manifest says"}

    def __call__(self, param_text: str, weights: bytes,
                 layer_inputs: dict[str, str]) -> dict[str, float | None]:
        import tempfile

        import ncnn

        from .runner import extract_blobs

        net = ncnn.Net()
        net.opt.num_threads = 1  # as ncnn2table's extractors; more threads only spin here
        net.opt.use_fp16_packed = False
        net.opt.use_fp16_storage = False
        net.opt.use_fp16_arithmetic = False
        with tempfile.TemporaryDirectory() as tmp:  # the package loads binary models from files
            param, binfile = os.path.join(tmp, "float.param"), os.path.join(tmp, "float.bin")
            with open(param, "w") as f:
                f.write(param_text)
            with open(binfile, "wb") as f:
                f.write(weights)
            if net.load_param(param) != 0 or net.load_model(binfile) != 0:
                raise RuntimeError("ncnn cannot load the float model to calibrate")

        def run(x: np.ndarray, blobs: list[str]) -> dict[str, np.ndarray]:
            ex = net.create_extractor()  # light mode, as ncnn2table: blobs come in graph order
            ex.input(self.input_blob, ncnn.Mat(x))
            return extract_blobs(ex, blobs, " while calibrating")

        stats = collect(run, list(layer_inputs.values()), self.inputs)
        scales = {b: input_scale(s) for b, s in stats.items()}
        return {layer: scales[blob] for layer, blob in layer_inputs.items()}
