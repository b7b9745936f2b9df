"""MXNet and GluonCV imported quietly: one place, used by the loaders and the zoo lookup."""

from __future__ import annotations

import warnings


def import_mxnet():
    """The mxnet module, with GluonCV's model zoo imported too, without their import warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mxnet as mx
        from gluoncv import model_zoo  # noqa: F401
    return mx
