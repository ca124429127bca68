#!/usr/bin/env bash
# Benchmark-only references, installed without their dependencies (torchattacks declares
# torchvision, which would pull a multi-GB CUDA torch; ART's own needs are already present).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pip install -q --no-deps "torchattacks==3.5.1" "adversarial-robustness-toolbox==1.20.1" six
# ART's randomized smoothing takes its Clopper-Pearson bound from statsmodels (benchmarks/smoothing_vs_art.py)
.venv/bin/python -m pip install -q "statsmodels==0.15.0"
