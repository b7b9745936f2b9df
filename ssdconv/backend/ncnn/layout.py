"""From Caffe blob shapes and axes (NCHW, batch 1) to ncnn Mat shapes and axes.

Why a module of its own: every converter that names an axis or a shape must make the same
translation, and getting it wrong is silent (a Concat on the wrong axis still runs when the sizes
happen to agree). ncnn Mats have no batch axis and at most four axes, named c, d, h, w from the
outermost in; ncnn's layer `axis` params (Concat, Slice, Softmax) count from the outermost axis
of that batchless Mat. So a Caffe blob (1, C, H, W) is c=C, h=H, w=W; (1, A, B) is h=A, w=B;
(1, N) is w=N; and a Caffe axis k >= 1 is ncnn axis k - 1.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import Refused
from . import tables


def batchless(shape: Sequence[int]) -> tuple[int, ...]:
    """The Caffe shape without its batch axis; refuses batch != 1 and ranks ncnn cannot hold."""
    shape = tuple(int(s) for s in shape)
    if not shape or shape[0] != 1:
        raise Refused(f"blob shape {shape} does not have batch 1")
    rest = shape[1:]
    if len(rest) not in tables.SHAPE_FIELDS_BY_RANK:
        raise Refused(f"blob shape {shape} has {len(rest)} non-batch axes; ncnn holds 1 to 4")
    return rest


def shape_params(shape: Sequence[int]) -> dict[str, int]:
    """Input/Reshape fields (w, h, d, c) describing a Caffe shape, e.g. (1,C,H,W) -> c,h,w."""
    rest = batchless(shape)
    return dict(zip(tables.SHAPE_FIELDS_BY_RANK[len(rest)], rest, strict=True))


def ncnn_axis(axis: int, shape: Sequence[int]) -> int:
    """ncnn's axis for Caffe `axis` (negative allowed) on a blob of Caffe `shape`."""
    rank = len(shape)
    if not -rank <= axis < rank:  # the IR shape rules refuse it first: a broken invariant
        raise RuntimeError(f"axis {axis} out of range for shape {tuple(shape)}")
    positive = axis % rank
    if positive == 0:
        raise Refused("an op along the batch axis cannot be written for ncnn (no batch axis)")
    return positive - 1


def permute_order_type(order: Sequence[int]) -> int:
    """ncnn Permute order_type for a Caffe permutation that keeps the batch axis first."""
    order = tuple(int(a) for a in order)
    if sorted(order) != list(range(len(order))):  # the IR shape rule refuses it first
        raise RuntimeError(f"Permute order {order} is not a permutation")
    if order[0] != 0:
        raise Refused(f"Permute order {order} moves the batch axis")
    rank = len(order) - 1
    table = tables.PERMUTE_ORDER_TYPES.get(rank)
    if table is None:
        raise Refused(f"Permute over {rank} non-batch axes; ncnn permutes 1 to 4")
    letters = "".join(tables.SHAPE_FIELDS_BY_RANK[rank])  # outer first, e.g. "chw"
    # Output axis i (outer first) takes input axis order[i+1]-1; ncnn names outputs w first.
    source = [letters[a - 1] for a in order[1:]]
    return table["".join(reversed(source))]
