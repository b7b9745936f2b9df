#!/usr/bin/env bash
# Create .venv-rknn: Rockchip's rknn-toolkit2 (the toolkit that builds .rknn models and runs them
# in its x86 simulator) in a venv of its own. Its wheel requires numpy <= 1.26.4,
# protobuf <= 4.25.4, onnx <= 1.18.0 and torch <= 2.4.0, which cannot live beside MXNet 1.9.1's
# numpy 1.23.5 ceiling and the project's protobuf, so the bench talks to it through a
# subprocess (bench/rknn_runner.py). Every version is pinned: an unpinned resolve drifts, and
# torch 2.4.0 is the newest the toolkit admits (PyPI's Linux build of it carries CUDA
# libraries, ~3 GB, unused here; no CPU build of 2.4.0 is on the package registry).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3.11}
VENV=${RKNN_VENV:-.venv-rknn}
test -x "$VENV/bin/python" || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet "rknn-toolkit2==2.5.0" "torch==2.4.0" "numpy==1.26.4" \
  "protobuf==4.25.4" "onnx==1.18.0" "onnxruntime==1.20.1" "opencv-python-headless==4.10.0.84"
"$VENV/bin/python" - <<'PY'
import importlib.metadata as m
from rknn.api import RKNN  # noqa: F401
print("rknn venv ok: rknn-toolkit2", m.version("rknn-toolkit2"), "torch", m.version("torch"),
      "numpy", m.version("numpy"))
PY
