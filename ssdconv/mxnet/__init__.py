"""MXNet side of ssdconv: loading, attributes, running.

MKLDNN's subgraph backend fuses Conv+BatchNorm when an executor is bound, which changes float32
rounding and fails on some fix_gamma graphs; the reference must run the graph as written.
"""

import os

os.environ.setdefault("MXNET_SUBGRAPH_BACKEND", "NONE")
os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")
