"""What a GluonCV YOLOv3 needs before it is a graph: its input size and the class count of a
saved params file. (Its model-store name is its zoo name: `get_yolov3` stores
`'yolo3_' + base + '_' + dataset`, which every zoo name is.)"""

from __future__ import annotations

from ..family.interface import NoMatch

# GluonCV builds YOLOv3s for any multiple of 32 and evaluates and demos them at 416
# (presets.yolo.load_test(short=416), YOLO3DefaultValTransform(416, 416)).
DEFAULT_INPUT_SIZE = (416, 416)


def zoo_input_size(net) -> tuple[int, int]:
    """A zoo YOLOv3 has no fixed input size: GluonCV's own default (pass --input-size)."""
    return DEFAULT_INPUT_SIZE


def saved_class_count(net, saved: dict) -> int | None:
    """Classes of a save_parameters file, from its first prediction conv (A*(5+C) outputs)."""
    weight = saved.get("yolo_outputs.0.prediction.weight")
    if weight is None:
        return None
    anchors = int(net.yolo_outputs[0]._num_anchors)
    channels = int(weight.shape[0])
    return channels // anchors - 5 if channels % anchors == 0 else None


def _param_shape(node, params) -> tuple[int, ...] | None:
    return tuple(params[node.name].shape) if node.op == "null" and node.name in params else None


def symbol_input_size(nodes, params) -> tuple[int, int] | NoMatch:
    """An exported YOLOv3's input size: GluonCV's 416, or less when its grid offsets (a
    (1, 1, G, G, 2) constant read by slice_like) only cover G cells at its finest stride."""
    grids, strides = [], []
    for node in nodes:
        if node.op == "slice_like":
            shape = _param_shape(nodes[node.inputs[0][0]], params)
            if shape and len(shape) == 5 and shape[-1] == 2:
                grids.append(min(shape[2], shape[3]))
        if node.op == "_mul_scalar" and nodes[node.inputs[0][0]].op == "broadcast_add":
            scalar = float(node.raw_attrs.get("scalar", "0"))
            if scalar > 0:
                strides.append(scalar)
    has_nms = any(n.op in ("_contrib_box_nms", "box_nms") for n in nodes)
    if not grids or not strides or not has_nms:
        return NoMatch("grid offset constants (1, 1, G, G, 2) read by slice_like before a "
                       "_contrib_box_nms")
    largest = int(min(grids) * min(strides))
    side = min(DEFAULT_INPUT_SIZE[0], largest - largest % 32)
    return side, side
