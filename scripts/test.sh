#!/usr/bin/env bash
# Set up and run the whole test command: lint, format check, type check, import layering, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check advlab tests benchmarks scripts
.venv/bin/ruff format --check advlab tests benchmarks scripts
.venv/bin/mypy advlab
.venv/bin/lint-imports
.venv/bin/python -m pytest -q "$@"
