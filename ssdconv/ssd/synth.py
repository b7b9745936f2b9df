"""Synthesise the SSD tail in IR: priors, flattened softmax, DetectionOutput.

Given the walked backbone + head (loc concat, conf softmax) and a proven HeadSpec, this appends
per level the PriorBox layers (interleaved per cell when a level needs several), concatenates the
priors, flattens the softmax output and adds a DetectionOutput with every field explicit.
Blob names follow caffe-ssd's conventions so deployment code finds them where it expects, and
(`name_layers_after_blobs`) each is written by a layer of the same name, as in caffe-ssd's own
deploy prototxts: OpenCV's `net.forward(name)` takes a layer name, not a blob name.
"""

from __future__ import annotations

import numpy as np

from ..family.interface import GLUON_OUTPUTS
from ..ir.graph import Graph, Node
from ..registry import NameAllocator
from .match import HeadMatch
from .specs import AnchorLevel, HeadSpec

BLOBS = {
    "input": "data",
    "loc": "mbox_loc",
    "conf": "mbox_conf_flatten",
    "priors": "mbox_priorbox",
    "detections": "detection_out",
}
# The gluon head's blobs: GluonCV's three outputs, and the raw tensors it decodes.
GLUON_BLOBS = {"input": "data", **{k: k for k in GLUON_OUTPUTS}, "loc": "mbox_loc",
               "conf": "mbox_conf"}


def _rename_blob(graph: Graph, old: str, new: str) -> None:
    producer = graph.producer(old)
    producer.outputs = [new if b == old else b for b in producer.outputs]
    graph.replace_blob(old, new)


def _make_room(graph: Graph, names: list[str]) -> dict[str, str]:
    """Move the model's own blobs and nodes off the names the tail is about to write (a user's
    layer may be called `mbox_loc`); returns {old blob name: new}."""
    fresh = NameAllocator.for_graph(graph).fresh
    moved = {}
    for name in names:
        if graph.producer(name) is not None:
            moved[name] = fresh(name)
            _rename_blob(graph, name, moved[name])
        for node in graph.nodes:
            if node.name == name:
                node.name = fresh(name)
    return moved


def name_layers_after_blobs(graph: Graph) -> None:
    """Rename the node writing each manifest blob (BLOBS) to the blob's name.

    Run after the passes, which may change which node writes a blob. The names are free:
    `synthesise_tail` moved the model's own layers off them, and the input is the Input node
    the walker named after the input blob.
    """
    for blob in BLOBS.values():
        producer = graph.producer(blob)
        if producer is not None:
            producer.name = blob


def _priorbox_attrs(level: AnchorLevel, group, spec: HeadSpec) -> dict:
    return {
        "min_size": float(group.min_size),
        "max_size": float(group.max_size) if group.max_size else None,
        "aspect_ratios": tuple(float(r) for r in group.aspect_ratios),
        "flip": False,
        "clip": False,
        "variance": tuple(float(s) for s in spec.decoder.stds),
        "step_h": float(level.step_h),
        "step_w": float(level.step_w),
        "offset": float(level.offset),
        "img_h": spec.image_h,
        "img_w": spec.image_w,
        "int_scale": int(group.int_scale),
    }


def _level_priors(graph: Graph, level: AnchorLevel, feature: str, spec: HeadSpec,
                  source: str) -> str:
    """Append the layers producing this level's priors; return the blob holding them."""
    base = f"level{level.index}_priorbox"
    if len(level.groups) == 1 and not level.groups[0].drop_first:
        graph.nodes.append(Node(base, "PriorBox", [feature, BLOBS["input"]], [base],
                                _priorbox_attrs(level, level.groups[0], spec), source=source))
        return base
    parts = []
    for gi, group in enumerate(level.groups):
        pb = f"{base}_g{gi}"
        graph.nodes.append(Node(pb, "PriorBox", [feature, BLOBS["input"]], [pb],
                                _priorbox_attrs(level, group, spec), source=source))
        cells = f"{pb}_cells"
        graph.nodes.append(Node(cells, "Reshape", [pb], [cells],
                                {"dims": (1, 2, level.height * level.width,
                                          group.per_cell * 4)}, source=source))
        if group.drop_first:
            kept = f"{pb}_kept"
            graph.nodes.append(Node(f"{pb}_drop", "Slice", [cells], [f"{pb}_dropped", kept],
                                    {"axis": 3, "slice_points": (4,)}, source=source))
            cells = kept
        parts.append(cells)
    joined = f"{base}_cells"
    graph.nodes.append(Node(joined, "Concat", parts, [joined], {"axis": 3}, source=source))
    graph.nodes.append(Node(base, "Reshape", [joined], [base],
                            {"dims": (1, 2, level.height * level.width * level.per_cell * 4)},
                            source=source))
    return base


def synthesise_tail(graph: Graph, head: HeadMatch, ctx_blob) -> None:
    """Append priors, the flattened softmax and DetectionOutput; set the graph outputs."""
    spec = head.spec
    loc_blob = ctx_blob(head.loc_concat.index)
    softmax_blob = ctx_blob(head.conf_softmax.index)
    features = [ctx_blob(conv.inputs[0][0], conv.inputs[0][1]) for conv in head.loc_convs]
    moved = _make_room(graph, [b for role, b in BLOBS.items()
                               if role != "input" and b != loc_blob])
    loc_blob, softmax_blob = moved.get(loc_blob, loc_blob), moved.get(softmax_blob, softmax_blob)
    features = [moved.get(f, f) for f in features]
    _rename_blob(graph, loc_blob, BLOBS["loc"])
    graph.nodes.append(Node(BLOBS["conf"], "Flatten", [softmax_blob], [BLOBS["conf"]],
                            {"axis": 1, "end_axis": -1}, source=head.conf_softmax.name))
    level_blobs = []
    for level, conv, feature in zip(spec.levels, head.loc_convs, features):
        level_blobs.append(_level_priors(graph, level, feature, spec, conv.name))
    graph.nodes.append(Node(BLOBS["priors"], "Concat", level_blobs, [BLOBS["priors"]],
                            {"axis": 2}, source="anchors"))
    nms = spec.nms
    candidates = spec.num_priors * spec.num_classes
    keep = nms.post_nms if nms.post_nms > 0 else candidates
    top_k = nms.topk if nms.topk > 0 else candidates
    graph.nodes.append(Node(
        BLOBS["detections"], "DetectionOutput",
        [BLOBS["loc"], BLOBS["conf"], BLOBS["priors"]], [BLOBS["detections"]],
        {
            "num_classes": spec.num_classes + 1,
            "share_location": True,
            "background_label_id": 0,
            "nms_threshold": float(nms.nms_threshold),
            "top_k": int(top_k),
            "keep_top_k": int(keep),
            "confidence_threshold": float(nms.class_thresh),
            "code_type": "CENTER_SIZE",
        },
        source="box_nms"))
    graph.outputs = [BLOBS["detections"], BLOBS["loc"], BLOBS["conf"], BLOBS["priors"]]
    graph.roles = dict(BLOBS)


def synthesise_gluon(graph: Graph, head: HeadMatch, ctx_blob, decoder: str) -> None:
    """Append GluonCV's own post-processing as one SsdDetections node reading the raw loc
    (1, 4A) and the class logits (1, A, C+1) the softmax reads, both in the model's anchor
    order (`decoder`: the model's decoder form); set the outputs (GluonCV's ids, scores, bboxes,
    then the raw loc and softmax) and roles."""
    spec = head.spec
    loc_blob = ctx_blob(head.loc_concat.index)
    softmax_blob = ctx_blob(head.conf_softmax.index)
    logits_blob = ctx_blob(*head.conf_softmax.inputs[0][:2])
    moved = _make_room(graph, [b for role, b in GLUON_BLOBS.items()
                               if role != "input" and b not in (loc_blob, softmax_blob)])
    loc_blob, softmax_blob = moved.get(loc_blob, loc_blob), moved.get(softmax_blob, softmax_blob)
    for blob, name in ((loc_blob, GLUON_BLOBS["loc"]), (softmax_blob, GLUON_BLOBS["conf"])):
        if blob != name:
            _rename_blob(graph, blob, name)
    anchors = np.concatenate([lv.anchors.reshape(-1, 4) for lv in spec.levels], axis=0)
    nms = spec.nms
    logits_blob = moved.get(logits_blob, logits_blob)
    graph.nodes.append(Node(
        "gluon_detections", "SsdDetections", [GLUON_BLOBS["loc"], logits_blob],
        [GLUON_BLOBS[k] for k in GLUON_OUTPUTS],
        {"num_classes": spec.num_classes, "stds": tuple(float(v) for v in spec.decoder.stds),
         "decoder": decoder, "nms_threshold": float(nms.nms_threshold), "nms_topk": int(nms.topk),
         "post_nms": int(nms.post_nms), "class_threshold": float(nms.class_thresh)},
        {"anchors": anchors.astype(np.float32)}, source="box_nms"))
    graph.outputs = [*(GLUON_BLOBS[k] for k in GLUON_OUTPUTS), GLUON_BLOBS["loc"],
                     GLUON_BLOBS["conf"]]
    graph.roles = dict(GLUON_BLOBS)
