"""A subtly corrupted caffe model, for tests that show the check fails and names the layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ssdconv.backend.caffe import caffe_ssd_pb2 as pb


def corrupt_convolution(conversion, index: int, folder: Path) -> str:
    """Scale an eighth of the weights of the conversion's `index`-th Convolution by 1.5 in a
    copy of its caffemodel, point the conversion at the copy, and return that layer's top blob
    (the name the bisection must report)."""
    net = pb.NetParameter()
    net.ParseFromString(open(conversion.files["caffemodel"], "rb").read())
    victim = [layer for layer in net.layer if layer.type == "Convolution"][index]
    data = np.array(victim.blobs[0].data, np.float32)
    data[: data.size // 8] *= 1.5  # a subtle corruption: an eighth of the weights, +50 %
    del victim.blobs[0].data[:]
    victim.blobs[0].data.extend(data.tolist())
    bad = Path(folder) / "bad.caffemodel"
    bad.write_bytes(net.SerializeToString())
    conversion.files = dict(conversion.files, caffemodel=str(bad))
    return victim.top[0]
