#!/usr/bin/env bash
# Set up and run the built-in quick reproduction.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/advlab reproduce demo --profile quick --out "${OUT:-runs/demo-quick}" "$@"
