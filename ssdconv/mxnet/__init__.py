"""MXNet side of ssdconv: loading, attributes, running.

The reference must run the graph as written, so MKL-DNN's subgraph fusion is switched off;
that is done in the package's `__init__`, before anything can import mxnet.
"""
