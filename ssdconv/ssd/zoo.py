"""What a GluonCV zoo SSD needs before it is a graph: its input size, the class count of a
saved params file, and the name GluonCV's model store keeps its weights under."""

from __future__ import annotations

import ast
import inspect
import textwrap


def zoo_input_size(net) -> tuple[int, int]:
    """The input size the zoo SSD was built for (its anchor generators know it)."""
    return tuple(int(x) for x in net.anchor_generators[0]._im_size)


def saved_class_count(net, saved: dict) -> int | None:
    """How many classes a save_parameters file was trained for, read from its first class
    predictor (anchors per cell x (classes + background) output channels), or None."""
    weight = saved.get("class_predictors.0.predictor.weight")
    if weight is None:
        return None
    channels = int(weight.shape[0])
    depth = net.anchor_generators[0].num_depth
    return channels // depth - 1 if channels % depth == 0 else None


def store_name(zoo_name: str) -> str:
    """The name GluonCV stores a zoo SSD's weights under.

    GluonCV's `get_ssd` loads `'_'.join(('ssd', str(base_size), name, dataset))`, which is not
    always the zoo name (`ssd_300_mobilenet1.0_lite_coco` loads `ssd_300_mobilenet1.0_coco`),
    so the arguments are read from the zoo function's own `get_ssd(...)` call. If that call
    cannot be read (a GluonCV whose presets are written differently), the zoo name is used.
    """
    from gluoncv.model_zoo.model_zoo import _models

    try:
        source = textwrap.dedent(inspect.getsource(_models[zoo_name]))
        calls = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)
                 and getattr(n.func, "id", getattr(n.func, "attr", None)) == "get_ssd"]
        call = calls[0]
        base = ast.literal_eval(call.args[0])
        size = ast.literal_eval(call.args[1])
        dataset = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "dataset"))
    except (KeyError, OSError, TypeError, ValueError, IndexError, StopIteration, SyntaxError):
        return zoo_name
    return "_".join(("ssd", str(size), base, dataset))
