"""ssdconv: convert MXNet/GluonCV SSD detectors to caffe-ssd and ncnn, and prove the result."""

import os

# Set before anything in the package can import mxnet, which reads them when it loads:
# MKL-DNN's subgraph backend fuses Conv+BatchNorm at bind time (changing float32 rounding and
# failing on some fix_gamma graphs), and with it off MXNet logs a line per bind unless quiet.
os.environ.setdefault("MXNET_SUBGRAPH_BACKEND", "NONE")
os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")

__version__ = "0.1.0"
