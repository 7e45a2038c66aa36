#!/usr/bin/env bash
# Build a wheel from this checkout, install it with the pinned dependencies into a new virtual
# environment, and run `al-flows demo` from a directory outside the checkout.
# Usage: bash scripts/wheel_check.sh [DIR]   (DIR: scratch directory, default a new temporary one)
# About 5 min on 2 cores (most of it installing torch and running the demo); tests/test_wheel.py
# runs it under the `slow` marker.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
mkdir -p "$work"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
"$PY" -m venv "$work/venv"
pip=("$work/venv/bin/python" -m pip install -q --disable-pip-version-check)
"${pip[@]}" "torch==2.13.0"
"${pip[@]}" --no-deps -r "$root/requirements/lock.txt"
"$work/venv/bin/python" -m pip wheel -q --no-deps --no-build-isolation -w "$work/dist" "$root"
"${pip[@]}" --no-deps "$work"/dist/al_flows-*.whl
mkdir -p "$work/elsewhere"
cd "$work/elsewhere"
"$work/venv/bin/al-flows" demo --workdir demo_run
"$work/venv/bin/python" - <<'PY'
import json
import al_flows
report = json.load(open("demo_run/report.json"))
last = report["rounds"][-1]
assert "site-packages" in al_flows.__file__, al_flows.__file__
print(f"wheel demo: al_flows {al_flows.__version__} from {al_flows.__file__}; {len(report['rounds'])} rounds, "
      f"test force R2 {last['test_force_r2']:.3f}")
PY
