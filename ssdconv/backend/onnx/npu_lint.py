"""A written ONNX model linted against the NPU toolchains' constraints
(`ssdconv.headless.constraints`): op types, Transpose perms, Pow exponents (constant ones;
a computed exponent is named too) and every tensor's rank after ONNX shape inference."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from ...headless import constraints as rules

FORMAT = "onnx"


def lint(path: str) -> list[str]:
    """Every violation, one line each naming the node or tensor and the rule; [] when clean."""
    model = shape_inference.infer_shapes(onnx.load(path))
    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    found = []
    for node in graph.node:
        name = node.name or node.output[0]
        found.append(rules.forbidden(node.op_type, name, FORMAT))
        if node.op_type == "Transpose":
            perm = next((tuple(a.ints) for a in node.attribute if a.name == "perm"), ())
            found.append(rules.permute(perm, name, FORMAT))
        elif node.op_type == "Pow":
            exponent = constants.get(node.input[1])
            if exponent is None or np.asarray(exponent).size != 1:
                found.append(f"{FORMAT} Pow {name}: its exponent is not one constant; RKNN's "
                             "NPU runs fixed exponents only")
            else:
                found.append(rules.power(float(np.asarray(exponent).reshape(())), name, FORMAT))
    for value in [*graph.value_info, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        found.append(rules.rank(tuple(d.dim_value for d in dims), value.name, FORMAT))
    return [f for f in found if f]
