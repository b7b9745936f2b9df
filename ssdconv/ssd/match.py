"""Recognise a GluonCV SSD head in a source graph by its structure, never by node names.

What is looked for:

* loc:  Concat(dim=1) of Flatten(transpose(conv, (0,2,3,1))) per level -> Reshape(0,-1,4)
* conf: the same with Reshape(0,-1,C+1) -> softmax(axis=-1)
* anchors: Concat(dim=1) of Reshape(slice_like(anchor constant, feature)) per level
* decoder: `_contrib_box_decode` (stds, clip) reading the loc reshape and the anchors
* class decoder threshold: `_greater_scalar` on the softmax scores; NMS: `_contrib_box_nms`
  and the `slice_axis` after it (post_nms)

Levels are paired by their position in the three concats. The anchor tensors are evaluated by
MXNet (so generator options such as clipping are honoured), then explained as PriorBox groups.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from ..family.interface import NoMatch
from ..mxnet.run import run_outputs
from ..mxnet.source import SourceGraph, SourceNode
from .anchors import derive_level
from .specs import DecoderSpec, HeadSpec, NmsSpec

RESHAPE_OPS = ("Reshape", "reshape")
CONCAT_OPS = ("Concat", "concat")
SPLIT_OPS = ("SliceChannel", "split")


@dataclass
class HeadMatch:
    """Where the head sits in the source graph, plus its proven spec."""

    spec: HeadSpec
    loc_concat: SourceNode
    conf_concat: SourceNode
    conf_softmax: SourceNode
    loc_convs: list[SourceNode]
    conf_convs: list[SourceNode]


def _is_predictor_chain(g: SourceGraph, node: SourceNode) -> SourceNode | None:
    """The conv at the bottom of Flatten(transpose(conv, (0,2,3,1))), else None."""
    if node.op not in ("Flatten", "flatten"):
        return None
    t = g.nodes[node.inputs[0][0]]
    if t.op != "transpose" or tuple(int(a) for a in t.attrs.tuple("axes")) != (0, 2, 3, 1):
        return None
    conv = g.nodes[t.inputs[0][0]]
    return conv if conv.op == "Convolution" else None


def _predictor_concat(g: SourceGraph, reshape: SourceNode) -> tuple[SourceNode, list] | None:
    src = g.nodes[reshape.inputs[0][0]]
    if src.op not in CONCAT_OPS:
        return None
    convs = [_is_predictor_chain(g, g.nodes[i]) for i, _ in src.inputs]
    if not convs or any(c is None for c in convs):
        return None
    return src, convs


def _reshape_tail(node: SourceNode) -> tuple[int, ...]:
    return tuple(int(x) for x in node.attrs.tuple("shape"))


def _find_conf(g: SourceGraph):
    for sm in g.nodes:
        if sm.op not in ("softmax", "SoftmaxActivation"):
            continue
        rs = g.nodes[sm.inputs[0][0]]
        if rs.op not in RESHAPE_OPS:
            continue
        shape = _reshape_tail(rs)
        if len(shape) != 3 or shape[:2] != (0, -1):
            continue
        found = _predictor_concat(g, rs)
        if found:
            return sm, rs, found[0], found[1], shape[2]
    return None


def _find_loc(g: SourceGraph, conf_reshape: SourceNode | None):
    """The (0,-1,4) reshape of predictor outputs that is not the class one (4 = 3 classes + bg)."""
    found = []
    for rs in g.nodes:
        if rs is conf_reshape or rs.op not in RESHAPE_OPS or _reshape_tail(rs) != (0, -1, 4):
            continue
        chain = _predictor_concat(g, rs)
        if chain:
            decoded = any(u.op == "_contrib_box_decode" or u.op in SPLIT_OPS
                          for u in g.consumers(rs.index))
            found.append((not decoded, rs, chain[0], chain[1]))
    if not found:
        return None
    _, rs, concat, convs = min(found, key=lambda f: f[0])
    return rs, concat, convs


def _anchor_levels(g: SourceGraph, anchors_in: SourceNode | None) -> list[SourceNode]:
    """The per-level anchor tensors: inputs of the Concat feeding the decoder's anchor input."""
    concats = []
    if anchors_in is not None:
        node = anchors_in
        while node.op in RESHAPE_OPS:
            node = g.nodes[node.inputs[0][0]]
        if node.op in CONCAT_OPS:
            concats.append(node)
    if not concats:
        concats = [n for n in g.nodes if n.op in CONCAT_OPS and n.inputs and all(
            _leads_to_slice_like(g, g.nodes[i]) for i, _ in n.inputs)]
    if not concats:
        raise UserError(f"{g.origin}: no SSD anchors found (a Concat of slice_like'd anchor "
                        "constants); this does not look like a GluonCV SSD")
    return [g.nodes[i] for i, _ in concats[0].inputs]


def _leads_to_slice_like(g: SourceGraph, node: SourceNode) -> bool:
    seen = 0
    while node.op != "slice_like" and node.inputs and seen < 8:
        node = g.nodes[node.inputs[0][0]]
        seen += 1
    return node.op == "slice_like"


def decoder_form(graph: SourceGraph) -> str:
    """Which decoder a recognised SSD source graph has: GluonCV's `_contrib_box_decode`
    ("box_decode"), or the minimal_opset raw ops (split, _mul_scalar, exp, ...) its pretrained
    zoo models use ("minimal_opset"). The ONNX head reproduces each form's exp rounding."""
    return ("box_decode" if any(n.op == "_contrib_box_decode" for n in graph.nodes)
            else "minimal_opset")


def _raw_decoder_spec(g: SourceGraph, split: SourceNode) -> tuple[DecoderSpec, SourceNode]:
    """GluonCV's minimal_opset decoder (used for pretrained zoo SSDs): split the offsets, scale
    each by its std with `_mul_scalar`, exp() the size terms, multiply with the split anchors."""
    stds, anchor_split = [], None
    for k in range(4):
        muls = [u for u in g.consumers(split.index) if u.op == "_mul_scalar"
                and (split.index, k) in u.inputs]
        if len(muls) != 1:
            raise UserError(f"{g.origin}: node {split.name} ({split.op}) output {k} is not "
                            "scaled by one std (_mul_scalar); not a GluonCV box decoder")
        stds.append(muls[0].attrs.float("scalar"))
        after = g.consumers(muls[0].index)
        if any(u.op in ("_minimum_scalar", "clip", "minimum") for u in after):
            raise UserError(f"{g.origin}: the box decoder clips its size terms after "
                            f"{muls[0].name}, which DetectionOutput cannot do; build the "
                            "decoder with clip=None")
        for u in after:
            for i, _ in u.inputs:
                if g.nodes[i].op in SPLIT_OPS and i != split.index:
                    anchor_split = g.nodes[i]
    if anchor_split is None:
        raise UserError(f"{g.origin}: no split anchors meet the box offsets after {split.name}; "
                        "not a GluonCV box decoder")
    return DecoderSpec(stds=tuple(stds)), g.nodes[anchor_split.inputs[0][0]]


def _decoder_spec(g: SourceGraph, loc_reshape: SourceNode) -> tuple[DecoderSpec, SourceNode]:
    """The decoder's stds and the node holding the anchors it decodes against."""
    users = g.consumers(loc_reshape.index)
    dec = [u for u in users if u.op == "_contrib_box_decode"]
    splits = [u for u in users if u.op in SPLIT_OPS and u.attrs.int("num_outputs", 1) == 4]
    if not dec and splits:
        return _raw_decoder_spec(g, splits[0])
    if not dec:
        raise UserError(f"{g.origin}: the box predictions feed {[u.op for u in users]}, not a "
                        "GluonCV box decoder (_contrib_box_decode or its minimal_opset form)")
    d = dec[0]
    a = d.attrs
    if a.str("format") != "center":
        raise UserError(f"{g.origin}: node {d.name} (_contrib_box_decode) has format="
                        f"{a.str('format')}; only 'center' anchors are supported")
    if a.float("clip") > 0:
        raise UserError(f"{g.origin}: node {d.name} (_contrib_box_decode) clips box sizes at "
                        f"{a.float('clip')}, which DetectionOutput cannot do; build the "
                        "decoder with clip=None")
    return DecoderSpec(stds=(a.float("std0"), a.float("std1"), a.float("std2"),
                             a.float("std3"))), g.nodes[d.inputs[1][0]]


def _nms_spec(g: SourceGraph, softmax: SourceNode) -> NmsSpec:
    thresh = 0.01
    for n in g.nodes:
        if n.op == "_greater_scalar":
            thresh = n.attrs.float("scalar")
            break
    nms = [n for n in g.nodes if n.op == "_contrib_box_nms"]
    if not nms:
        return NmsSpec(nms_threshold=1.0, topk=-1, post_nms=-1, class_thresh=thresh)
    b = nms[0]
    a = b.attrs
    if a.bool("force_suppress"):
        raise UserError(f"{g.origin}: node {b.name} (_contrib_box_nms) has force_suppress=True "
                        "(NMS across classes); DetectionOutput suppresses per class")
    post = -1
    for u in g.consumers(b.index):
        if u.op == "slice_axis" and u.attrs.int("axis") == 1 and u.attrs.int("begin", 0) == 0:
            end = u.attrs.str("end")
            if end not in ("None", ""):
                post = int(end)
    return NmsSpec(nms_threshold=a.float("overlap_thresh"), topk=a.int("topk"), post_nms=post,
                   class_thresh=thresh)


def match_head(g: SourceGraph) -> HeadMatch | NoMatch:
    """Find and prove the SSD head. A graph without SSD predictors is a NoMatch naming what is
    missing; one with them whose head cannot be converted is a UserError."""
    conf = _find_conf(g)
    loc = _find_loc(g, conf[1] if conf else None)
    if conf is None or loc is None:
        what = ("class predictions (conv->transpose->Flatten->Concat->Reshape->softmax)"
                if conf is None else
                "box predictions (conv->transpose->Flatten->Concat->Reshape(0,-1,4))")
        return NoMatch(f"no {what}")
    softmax, _, conf_concat, conf_convs, classes_bg = conf
    loc_reshape, loc_concat, loc_convs = loc
    decoder, anchors_in = _decoder_spec(g, loc_reshape)
    level_nodes = _anchor_levels(g, anchors_in)
    if not (len(level_nodes) == len(loc_convs) == len(conf_convs)):
        raise UserError(f"{g.origin}: {len(loc_convs)} box predictors, {len(conf_convs)} class "
                        f"predictors and {len(level_nodes)} anchor levels do not pair up")
    img_h, img_w = g.image_size
    batch = np.zeros(g.input_shape, dtype=np.float32)
    anchors, _ = run_outputs(g, [(n.index, 0) for n in level_nodes], batch)
    levels = []
    for i, (arr, lc, cc) in enumerate(zip(anchors, loc_convs, conf_convs)):
        _, ch, h, w = g.shape(lc.index)
        k = ch // 4
        if ch % 4 or g.shape(cc.index)[1] != k * classes_bg or arr.size != h * w * k * 4:
            raise UserError(f"{g.origin}: level {i}: predictor {lc.name} has {ch} channels, "
                            f"{cc.name} {g.shape(cc.index)[1]}, anchors {arr.size // 4}: they do "
                            f"not describe the same {h}x{w} grid")
        levels.append(derive_level(i, arr.reshape(h, w, k, 4).astype(np.float64), img_h, img_w,
                                   g.origin))
    spec = HeadSpec(num_classes=classes_bg - 1, image_h=img_h, image_w=img_w,
                    levels=tuple(levels), decoder=decoder, nms=_nms_spec(g, softmax))
    return HeadMatch(spec=spec, loc_concat=loc_concat, conf_concat=conf_concat,
                     conf_softmax=softmax, loc_convs=loc_convs, conf_convs=conf_convs)
