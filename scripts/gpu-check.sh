#!/bin/sh
# What a CUDA machine without TensorRT or pycuda can verify of the device side, each step PASS, FAIL or SKIP
# with its reason (scripts/gpu_check.py says which steps). No GPU: every step SKIPs and the exit status is 0.
#   scripts/gpu-check.sh [--images DIR ...] [--data DIR] [--skip-training] [--json PATH]
# Needs on the GPU machine: this repo's Python deps; CuPy (cupy-cuda12x/13x), nvidia-ml-py, torch with CUDA,
# onnxruntime-gpu for the optional steps (each one missing is a SKIP that names it). About 2-5 minutes.
set -e
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ "$PYTHON" = python3 ] && [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; fi
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" scripts/gpu_check.py "$@"
