"""The registered backends (targets), in the order `--target all` writes and the check runs them.

Each module defines `BACKEND`, a `ssdconv.backend.interface.Backend`. A new target is a folder
of its own plus one line here; nothing else in ssdconv names a target.
"""

BACKEND_MODULES: tuple[str, ...] = (
    "ssdconv.backend.caffe.backend",
    "ssdconv.backend.ncnn.backend",
    "ssdconv.backend.onnx.backend",
)
