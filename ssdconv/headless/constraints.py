"""What NPU toolchains accept, as rules a written model is linted against (`--headless`).

One copy of the constraints facts §13 collects from Rockchip's and HiSilicon's documents and
their users' reports; each backend's linter (`Backend.npu_lint`) applies them to its own file
format and names every layer that breaks one. A headless model must pass all of them: the
check of `--headless` conversions and the tests hold zoo models to it.
"""

from __future__ import annotations

#: layers/ops no NPU toolchain runs (§13.1.3, §13.1.4, §13.2.1): the post-processing the CPU does
FORBIDDEN = {
    "PriorBox": "no NPU toolchain has it (RKNN's load_caffe list, NNIE's sample: CPU)",
    "DetectionOutput": "RKNN: 'Current not support'; NNIE: CPU",
    "NonMaxSuppression": "RKNN: not supported",
    "TopK": "RKNN: not supported",
    "NonZero": "RKNN: not supported",
    "Range": "RKNN: not supported",
    "GatherND": "RKNN: not supported",
    "ScatterElements": "RKNN: not supported",
    "Yolov3DetectionOutput": "no NPU toolchain has it",
}
#: the only Permute/Transpose order NNIE accepts ("Permute can only support (0,1,2,3) ->
#: (0,2,3,1) order!", §13.2.2); the identity is no layer at all
PERMUTE_ORDERS = ((0, 2, 3, 1),)
#: Pow/Power exponents RKNN's NPU runs (RK3566 and RK3588, §13.1.5)
POWER_EXPONENTS = (0.0, 1.0, 2.0, 3.0, 0.5, -0.5)
RANK = 4  # NPU ops are specified on 4-D tensors; NNIE's Reshape must be 4-D (§13.1.5, §13.2.2)


def forbidden(kind: str, name: str, fmt: str) -> str | None:
    """The violation line of a layer of a forbidden kind, else None."""
    why = FORBIDDEN.get(kind)
    return None if why is None else f"{fmt} {kind} {name}: {why}"


def permute(order: tuple[int, ...], name: str, fmt: str) -> str | None:
    if tuple(order) in PERMUTE_ORDERS or tuple(order) == tuple(range(len(order))):
        return None
    return (f"{fmt} permute {name} order {','.join(map(str, order))}: NNIE accepts (0,2,3,1) "
            "only")


def power(exponent: float, name: str, fmt: str) -> str | None:
    if float(exponent) in POWER_EXPONENTS:
        return None
    return (f"{fmt} power {name} exponent {exponent:g}: RKNN's NPU runs "
            f"{', '.join(f'{e:g}' for e in POWER_EXPONENTS)} only")


def rank(shape: tuple[int, ...], name: str, fmt: str) -> str | None:
    if len(shape) == RANK:
        return None
    return f"{fmt} tensor {name} is {len(shape)}-D {list(shape)}: NPU ops take 4-D tensors"
