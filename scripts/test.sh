#!/usr/bin/env bash
# Set up and run the whole test command: lint, format check, type check, import layering, the
# API reference site in strict mode (a warning fails), tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check advlab tests benchmarks scripts
.venv/bin/ruff format --check advlab tests benchmarks scripts
.venv/bin/mypy advlab
.venv/bin/lint-imports
.venv/bin/mkdocs build --strict --quiet
.venv/bin/python -m pytest -q "$@"
