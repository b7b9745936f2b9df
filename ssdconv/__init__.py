"""ssdconv: convert MXNet/GluonCV SSD detectors to caffe-ssd and ncnn, and prove the result."""

__version__ = "0.1.0"
