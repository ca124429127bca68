#!/usr/bin/env bash
# Create .venv (if needed) and install advlab with its test extras.
# torch==2.13.0 is installed first: it is the CPU build, and the package's torch range accepts it,
# so pip does not pull a multi-GB CUDA build. On a GPU machine install the CUDA torch you want first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test]"
# torchattacks is a test/benchmark reference only; --no-deps keeps its torchvision (and a CUDA torch) out.
.venv/bin/python -m pip install -q --no-deps "torchattacks==3.5.1"
