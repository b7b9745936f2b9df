"""Tolerances of the staged check's generic stages, in one table (the same for every runtime
and family). A family's own stage keeps its contract with its arithmetic (SSD's priors:
`ssdconv.ssd.priorbox.PRIOR_TOL`)."""

RAW_FLOOR = 1e-4  # raw tensors: at least this (or RAW_FLOOR_REL of the tensor's peak, if less) ...
# The floor scales down with a tensor whose peak is below 1 (an embedding, a pooled feature of
# 1e-3): 1e-4 of its peak is ~800 float32 ulps of the peak, above any runtime's reordered sums
# where float32 itself happens to be exact. At peak >= 1 (every detector's tensors) it is the
# absolute RAW_FLOOR, as before.
RAW_FLOOR_REL = 1e-4
RAW_FACTOR = 3.0  # ... or this many times Gluon float32's own distance from float64
DET_IOU = 0.99  # a matched detection overlaps its partner at least this much
DET_SCORE = 1e-3  # and its score differs by at most this
CORNER_PX = 1e-2  # ... or its corners are this close (a box ~1e-3 px thin, or of zero area)
LAYER_REL = 1e-3  # per-layer bisection: relative max error that marks divergence
# Two boxes whose IoU is this close to the NMS threshold may be suppressed on one side and kept
# on the other (`compare.explain_nms_ties`). Why 1e-3: boxes are float32 pixels on 300..608-pixel
# images, so each coordinate carries ~1e-4 px of rounding (ulp(608) = 6e-5) plus the runtime's
# own box error (measured max box diff ~1e-4 px; the raw-tensor bound allows ~6e-3 px on a
# 300-px box). IoU moves by at most (1 + IoU) / side per pixel of one coordinate, so eight
# coordinates of ~1e-4 px on a 10-px box move it by ~1.2e-4, 2e-4 at the raw bound on large
# boxes: 1e-3 covers that with margin, and is 50x smaller than any real threshold mistake
# (0.45 written as 0.5).
IOU_EPS = 1e-3
