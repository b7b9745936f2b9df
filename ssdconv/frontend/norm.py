"""BatchNorm and L2Normalization.

BatchNorm reads eps and fix_gamma from the node with MXNet's operator defaults (eps 1e-3,
fix_gamma true): GluonCV's extra layers carry no attributes at all. Under fix_gamma the stored
gamma is ignored by MXNet, so gamma is forced to 1 whatever the file holds.
"""

from __future__ import annotations

import numpy as np

from .registry import ConvertContext, converter


@converter("BatchNorm")
def batchnorm(node, ctx: ConvertContext):
    a = node.attrs
    if a.int("axis") != 1:
        return ctx.refuse(node, f"axis={a.int('axis')}: only channel axis 1 is supported")
    arrays = [ctx.param(node, i) for i in range(1, 5)]
    if any(x is None for x in arrays):
        return ctx.refuse(node, "gamma, beta, mean and var must all be parameters")
    gamma, beta, mean, var = arrays
    if np.any(var + a.float("eps") <= 0) or not np.all(np.isfinite(var)):
        return ctx.refuse(node, "running variance is negative or not finite: the params are "
                          "corrupt or were never trained/initialised")
    if a.bool("fix_gamma"):
        gamma = np.ones_like(gamma)
    weights = {"mean": mean, "var": var, "gamma": gamma, "beta": beta}
    return [ctx.make(node, "BatchNorm", [ctx.in_blob(node)], {"eps": a.float("eps")}, weights)]


@converter("L2Normalization")
def l2normalization(node, ctx: ConvertContext):
    """mode 'channel': per position over C (SSD's conv4_3 norm); 'instance' (MXNet's default):
    x / sqrt(sum over every non-batch axis of x^2 + eps), Normalize across_spatial with one
    shared scale 1 (which every target holds on a (1, K) blob too). 'spatial' normalises each
    channel over H, W, which no Normalize does, and is refused."""
    a = node.attrs
    mode = a.str("mode")
    if mode == "instance":
        attrs = {"across_spatial": True, "channel_shared": True, "eps": a.float("eps")}
        return [ctx.make(node, "Normalize", [ctx.in_blob(node)], attrs, {"scale": np.ones(1)})]
    if mode != "channel":
        return ctx.refuse(node, f"mode={mode}: only 'channel' and 'instance' map to Normalize")
    channels = ctx.in_shape(node)[1]
    attrs = {"across_spatial": False, "channel_shared": False, "eps": a.float("eps")}
    return [ctx.make(node, "Normalize", [ctx.in_blob(node)], attrs,
                     {"scale": np.ones(channels)})]
