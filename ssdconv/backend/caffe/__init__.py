"""caffe-ssd backend: lower the IR to stock caffe-ssd layers, write .prototxt + .caffemodel."""

from .emit import build_net, parse_prototxt_strict, producer_layers, write_caffe
from .lower import lower_for_caffe

__all__ = ["build_net", "lower_for_caffe", "parse_prototxt_strict", "producer_layers",
           "write_caffe"]
