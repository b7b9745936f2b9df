#!/usr/bin/env bash
# Create .venv-bench: the project (editable) plus the comparison tools, kept out of the
# project's own dependencies. onnx is pinned below 1.19 because MXNet 1.9.1's exporter
# (mx.onnx.export_model) still reads onnx.mapping, which onnx 1.19 removed; both onnx and
# onnxruntime must accept numpy 1.23.5, the last numpy MXNet 1.9.1 runs with.
#
# And .venv-pnnx: pnnx (the ONNX/TorchScript -> ncnn converter an ncnn user reaches for) in a
# venv of its own, because pnnx requires torch and GluonCV refuses to import beside torch >= 2
# ("torch>=1.4.0,<2.0.0 is required"). torch is pinned to the CPU build on this machine's disk;
# an unpinned torch would pull a CUDA build of several GB. The pnnx binary itself links no
# torch for ONNX input; the bench runs it through the `pnnx` command, as a user would.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3.11}
VENV=${VENV:-.venv-bench}
PNNX_VENV=${PNNX_VENV:-.venv-pnnx}
ONNX=${ONNX:-onnx==1.18.0}
ORT=${ORT:-onnxruntime==1.31.1}
PNNX=${PNNX:-pnnx==20261020}
TORCH=${TORCH:-torch==2.13.0}
test -x "$VENV/bin/python" || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet -e . "$ONNX" "$ORT" "numpy==1.23.5"
"$VENV/bin/python" - <<'PY'
import mxnet, numpy, onnx, onnxruntime
import onnx.mapping  # noqa: F401  (what mx.onnx.export_model needs)
print(f"bench venv ok: mxnet {mxnet.__version__}, numpy {numpy.__version__}, onnx "
      f"{onnx.__version__}, onnxruntime {onnxruntime.__version__}")
PY
test -x "$PNNX_VENV/bin/python" || "$PY" -m venv "$PNNX_VENV"
"$PNNX_VENV/bin/pip" install --quiet --upgrade pip
"$PNNX_VENV/bin/pip" install --quiet "$TORCH" "$PNNX"
"$PNNX_VENV/bin/python" -c "import importlib.metadata as m; print('pnnx venv ok: pnnx', \
m.version('pnnx'), 'torch', m.version('torch'))"
