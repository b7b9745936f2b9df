"""Tolerances of the staged check, in one table (the same for every runtime)."""

# Stage 1, normalised prior coordinates versus the model's anchors: the conversion's own
# contract, owned by the PriorBox arithmetic.
from ..ssd.priorbox import PRIOR_TOL as PRIOR_TOL

RAW_FLOOR = 1e-4  # raw loc/conf: at least this, ...
RAW_FACTOR = 3.0  # ... or this many times Gluon float32's own distance from float64
DET_IOU = 0.99  # a matched detection overlaps its partner at least this much
DET_SCORE = 1e-3  # and its score differs by at most this
LAYER_REL = 1e-3  # per-layer bisection: relative max error that marks divergence
