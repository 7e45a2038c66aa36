#!/usr/bin/env bash
# The checks CI runs (.ci/run): install the pinned environment, lint and format check (ruff),
# type check (mypy, configured in pyproject.toml), then the test suite.
# Usage: bash scripts/check.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/ruff check src tests benchmarks scripts setup.py
.venv/bin/ruff format --check src tests benchmarks scripts setup.py
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
