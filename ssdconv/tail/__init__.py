"""GluonCV's post-processing as dependency-free C99: the "CPU tail" of a headless detector.

NPU toolchains (Rockchip RKNN, HiSilicon NNIE) run a detector only up to its raw prediction
convolutions; the host CPU then has to do what GluonCV's `hybrid_forward` does after them
(softmax or sigmoid, the box decoder, `_contrib_box_nms`). These modules write that C code for
a recognised head, in MXNet's float32 operation order, so its rows are GluonCV's rows:

* `ssd_c.ssd_tail_source`: SSD (softmax, NormalizedBoxCenterDecoder, box_nms);
* `yolo_c.yolo_tail_source`: YOLOv3 (YOLOOutputV3's decode, box_nms);
* `box_nms_c`: the C text both share (box_nms, the row mapping, the dequantise helpers);
* `build.compile_tail`: compiles the sources with the system C compiler and runs them through
  ctypes (what the tests use to prove the code against MXNet).

The generators are pure: they return {file name: text} and write nothing.
"""

from __future__ import annotations

from .box_nms_c import c_prefix
from .build import CompiledTail, compile_tail
from .ssd_c import ssd_tail_source
from .yolo_c import yolo_tail_source

__all__ = ["CompiledTail", "c_prefix", "compile_tail", "ssd_tail_source", "yolo_tail_source"]
