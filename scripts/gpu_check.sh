#!/usr/bin/env bash
# The GPU check in one command: the gpu-marked tests and the paper-size training (from scratch and
# warm-started), exploration, the batched optimiser and
# MD figures (benchmarks/gpu_check.py says what each one is). Summary table on stdout, JSON to the
# file given as the last argument, else to $OUT/gpu_check.json, else ./gpu_check.json.
#   bash scripts/gpu_check.sh [--smoke] [OUT.json]     (--smoke: tiny sizes on the CPU, for CI)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || { bash scripts/install.sh >&2; }
exec "$PY" benchmarks/gpu_check.py "$@"
