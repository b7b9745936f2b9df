"""ncnnoptimize's rewrites, done by the converter: the ncnn layer list as ncnn's own optimizer
(`tools/ncnnoptimize.cpp`) would leave it, so running that tool afterwards finds nothing to do.

Why here and not in the IR passes: these rewrites use ncnn-only layer features (a Convolution's
fused `activation_type`); Caffe has no such field, so the IR keeps ReLU/Clip as nodes and only
the ncnn layer list loses them. The rewrites that also make sense for Caffe (Conv+BatchNorm,
Normalize+Scale, no-op layers) are IR passes (`ssdconv.passes`) and are not repeated here.

They run on the final list, after `insert_splits`, exactly where ncnnoptimize sees a model: every
blob then has at most one reader, and a blob read by several layers is read by its Split only, so
"the producer's output has exactly one reader and it is the layer being folded in" is a plain
reader count. Each rewrite keeps the producer's layer name and hands it the folded layer's output
blob, as ncnnoptimize does, so the value a blob name stands for never changes. Blobs in `keep`
(the graph inputs and outputs: the manifest's `blobs`) are never folded away.

Exactness: ncnn's x86 Convolution and ConvolutionDepthWise apply a fused activation after the
convolution has been computed, either by running the very ReLU/Clip layer they create from
`activation_type` (src/layer/fused_activation.h `create_activation_layer`) or in the packed
kernel with the same max/min/multiply per element, so the fused layer's output equals the two
separate layers' bit for bit (tests/test_ncnn_fuse.py checks it in the ncnn package).

ncnnoptimize rewrites that cannot fire on ssdconv's output, and why: every *_batchnorm, *_mul
and *_add fusion (fold_batchnorm folds Conv+BatchNorm in the IR with the same guard; ssdconv
writes no BinaryOp, MemoryData, InnerProduct, Deconvolution or Dropout), fuse_batchnorm_scale
(the IR's Scale comes only from a constant broadcast_mul, in GluonCV SSDs only after
L2Normalization, where it is folded into Normalize), Mish / HardSwish activations (no
converter writes those layers), Sigmoid (written for YOLO heads, after a Reshape or Slice, never
straight after a convolution in the graphs ssdconv builds; the fused kernel's sigmoid is not
checked to equal the Sigmoid layer's, so it is not fused), eliminate_split (Splits are written
only for two or more readers), eliminate_noop, *_after_global_pooling and
replace_convolution_with_innerproduct_* (global pooling is written as adaptive pooling, which
those rewrites do not match), replace_prelu_with_leaky_relu, replace_reduction_with_global_pooling.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from . import tables
from .writer import NcnnLayer

Rewrite = Callable[[list[NcnnLayer], frozenset[str]], int]


def _readers(layers: list[NcnnLayer]) -> dict[str, list[NcnnLayer]]:
    out: dict[str, list[NcnnLayer]] = {}
    for layer in layers:
        for blob in layer.inputs:
            out.setdefault(blob, []).append(layer)
    return out


def _producers(layers: list[NcnnLayer]) -> dict[str, NcnnLayer]:
    return {blob: layer for layer in layers for blob in layer.outputs}


def _sole_reader(readers: dict[str, list[NcnnLayer]], blob: str) -> NcnnLayer | None:
    uses = readers.get(blob, [])
    return uses[0] if len(uses) == 1 else None  # one entry per input slot


def _activation_of(layer: NcnnLayer) -> tuple[int, list[float]] | None:
    """(activation_type, activation_params) for a layer ncnn can fold, else None.

    ReLU with slope 0 is type relu, any other slope leaky_relu [slope]; Clip is clip [min, max]
    (ssdconv's ReLU6). The layer must be a plain one-in, one-out activation."""
    if len(layer.inputs) != 1 or len(layer.outputs) != 1:
        return None
    kinds = tables.ACTIVATION_TYPES
    if layer.type == "ReLU":
        slope = float(layer.params.get("slope", 0.0))
        return (kinds["relu"], []) if slope == 0.0 else (kinds["leaky_relu"], [slope])
    if layer.type == "Clip":
        return kinds["clip"], [float(layer.params["min"]), float(layer.params["max"])]
    return None


def _fuse_activation_into(host_type: str) -> Rewrite:
    def rewrite(layers: list[NcnnLayer], keep: frozenset[str]) -> int:
        """Fold a ReLU / leaky ReLU / Clip into the `host_type` layer before it.

        Guard: the host has one output, no fused activation yet (a second one would overwrite
        the first), its output is not in `keep`, and that output has exactly one reader, the
        activation (one input, one output)."""
        readers = _readers(layers)
        fused: set[int] = set()
        for host in layers:
            if host.type != host_type or len(host.outputs) != 1:
                continue
            if host.params.get("activation_type", 0) or host.outputs[0] in keep:
                continue
            act = _sole_reader(readers, host.outputs[0])
            spec = _activation_of(act) if act is not None else None
            if spec is None:
                continue
            host.params["activation_type"], params = spec
            if params:
                host.params["activation_params"] = params
            host.outputs = list(act.outputs)
            fused.add(id(act))
        layers[:] = [x for x in layers if id(x) not in fused]
        return len(fused)

    rewrite.__name__ = f"fuse_{host_type.lower()}_activation"
    return rewrite


def _is_identity_pooling(layer: NcnnLayer) -> bool:
    p = layer.params
    pads = ("pad_left", "pad_right", "pad_top", "pad_bottom")
    return (layer.type == "Pooling" and len(layer.inputs) == 1 and len(layer.outputs) == 1
            and not p.get("global_pooling", 0) and not p.get("adaptive_pooling", 0)
            and p.get("kernel_w") == 1 and p.get("kernel_h", p.get("kernel_w")) == 1
            and p.get("stride_w", 1) == 1 and p.get("stride_h", p.get("stride_w", 1)) == 1
            and all(p.get(k, 0) == 0 for k in pads))


def eliminate_pooling1x1(layers: list[NcnnLayer], keep: frozenset[str]) -> int:
    """Drop a max/average Pooling with a 1x1 window, stride 1 and no padding (an identity in
    every pad_mode); its producer writes the pooling's output blob instead.

    Guard: not global or adaptive; the pooling's input is not in `keep`, is written by a layer
    of this list and read by the pooling only."""
    readers = _readers(layers)
    producers = _producers(layers)
    dropped: set[int] = set()
    for pool in layers:
        if not _is_identity_pooling(pool):
            continue
        src = pool.inputs[0]
        if src in keep or src not in producers or _sole_reader(readers, src) is not pool:
            continue
        producer = producers[src]
        producer.outputs = [pool.outputs[0] if b == src else b for b in producer.outputs]
        producers[pool.outputs[0]] = producer
        dropped.add(id(pool))
    layers[:] = [x for x in layers if id(x) not in dropped]
    return len(dropped)


#: In run order. Eliminations first: ncnnoptimize fuses activations before it drops 1x1
#: poolings, so Conv -> Pooling 1x1 -> ReLU would leave it a ReLU to fuse on a second run.
REWRITES: list[tuple[str, Rewrite]] = [
    ("eliminate_pooling1x1", eliminate_pooling1x1),
    *((f"fuse_{t.lower()}_activation", _fuse_activation_into(t)) for t in tables.ACTIVATION_HOSTS),
]
REWRITE_NAMES: tuple[str, ...] = tuple(name for name, _ in REWRITES)


def fuse_layers(layers: list[NcnnLayer], keep: Collection[str],
                skip: Collection[str] = ()) -> tuple[list[NcnnLayer], dict[str, int]]:
    """Run every rewrite not named in `skip`; returns (the new list, {rewrite: count} for every
    rewrite run). The list passed in is left as it was, but fused layers are modified."""
    out = list(layers)
    protected = frozenset(keep)
    done = {}
    for name, rewrite in REWRITES:
        if name not in skip:
            done[name] = rewrite(out, protected)
    return out, done
