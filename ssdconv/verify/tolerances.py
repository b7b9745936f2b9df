"""Tolerances of the staged check's generic stages, in one table (the same for every runtime
and family). A family's own stage keeps its contract with its arithmetic (SSD's priors:
`ssdconv.ssd.priorbox.PRIOR_TOL`)."""

RAW_FLOOR = 1e-4  # raw tensors: at least this, ...
RAW_FACTOR = 3.0  # ... or this many times Gluon float32's own distance from float64
DET_IOU = 0.99  # a matched detection overlaps its partner at least this much
DET_SCORE = 1e-3  # and its score differs by at most this
LAYER_REL = 1e-3  # per-layer bisection: relative max error that marks divergence
