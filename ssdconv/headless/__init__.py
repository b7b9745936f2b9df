"""Headless models for NPU toolchains (`--headless`): the network up to its raw prediction maps,
the exact post-processing as generated C, and the check of both (`head`, `runner`, `lint`)."""

from ..backend.interface import EvalVariant

#: `ssdconv eval`'s row for a detector family with a headless form: the headless caffe model in
#: OpenCV, then the generated C tail (GluonCV's post-processing on the CPU: Gluon's mAP)
HEADLESS_EVAL = EvalVariant("opencv-headless", {"headless": True}, target="caffe")
