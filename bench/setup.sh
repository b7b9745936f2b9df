#!/usr/bin/env bash
# Create .venv-bench: the project (editable) plus the comparison tools, kept out of the
# project's own dependencies. onnx is pinned below 1.19 because MXNet 1.9.1's exporter
# (mx.onnx.export_model) still reads onnx.mapping, which onnx 1.19 removed; both onnx and
# onnxruntime must accept numpy 1.23.5, the last numpy MXNet 1.9.1 runs with.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3.11}
VENV=${VENV:-.venv-bench}
ONNX=${ONNX:-onnx==1.18.0}
ORT=${ORT:-onnxruntime==1.31.1}
test -x "$VENV/bin/python" || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet -e . "$ONNX" "$ORT" "numpy==1.23.5"
"$VENV/bin/python" - <<'PY'
import mxnet, numpy, onnx, onnxruntime
import onnx.mapping  # noqa: F401  (what mx.onnx.export_model needs)
print(f"bench venv ok: mxnet {mxnet.__version__}, numpy {numpy.__version__}, onnx "
      f"{onnx.__version__}, onnxruntime {onnxruntime.__version__}")
PY
