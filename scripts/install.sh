#!/usr/bin/env bash
# Create .venv (Python 3.11) and install al_flows with the pinned environment.
# Usage: bash scripts/install.sh      (idempotent; re-run after the lock changes)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
VENV=${AL_FLOWS_VENV:-.venv}
stamp="$VENV/.al_flows_installed"
want=$(cat requirements/lock.txt pyproject.toml setup.py src/al_flows_schnetpack_compat.pth | "$PY" -c "import hashlib,sys;print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())")
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
# torch first, with its own dependencies: a CPU build where pip's find-links offer one,
# otherwise PyPI's CUDA build with its nvidia-* packages.
"${PIP[@]}" "torch==2.13.0"
# Everything else exactly as locked, without re-resolving: schnetpack 2.1.1 declares
# sympy<=1.12, which torch>=2.5 cannot use; the lock holds sympy 1.14 (see requirements/overrides.txt).
"${PIP[@]}" --no-deps -r requirements/lock.txt
"${PIP[@]}" --no-deps --no-build-isolation -e .
# The start-up hook that lets schnetpack 2.1.1 import under torch 2.13 (docs/dependencies.md): a
# wheel carries the .pth (setup.py's build_py), but an editable install does not run build_py's
# copies, so place it in site-packages here (its module is found through the editable src path).
site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
cp src/al_flows_schnetpack_compat.pth "$site/"
echo "$want" > "$stamp"
