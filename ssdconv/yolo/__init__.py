"""GluonCV YOLOv3 detectors: their heads written for caffe-ssd and ncnn."""
