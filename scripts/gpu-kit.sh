#!/bin/sh
# Gather what scripts/gpu-check.sh needs on a GPU machine without network into gpu-kit/ (ignored by git): pycuda's
# source package and its small dependencies, onnx-simplifier for Python 3.12, a few real images, a slice of
# cifar10-mini, and a manifest. Run it here; send gpu-kit/ with the command (scripts/gpu_kit.py says more).
#   scripts/gpu-kit.sh [--out DIR] [--offline] [--python-version 3.12]
set -e
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ "$PYTHON" = python3 ] && [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; fi
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" scripts/gpu_kit.py "$@"
