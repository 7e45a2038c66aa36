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
# one pytest-xdist worker per core of the 2-core CI machine (AL_FLOWS_TEST_WORKERS to change it); the
# tests of one file stay on one worker, so a file's shared fixtures are computed once
.venv/bin/python -m pytest -q -n "${AL_FLOWS_TEST_WORKERS:-2}" --dist loadfile "$@"
