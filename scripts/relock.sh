#!/usr/bin/env bash
# Regenerate requirements/lock.txt (name==version only; never commit a uv.lock with URLs).
set -euo pipefail
cd "$(dirname "$0")/.."
python3.11 -m pip install -q uv
echo "torch==2.13.0" > /tmp/al_flows_torchpin.txt
python3.11 -m uv pip compile pyproject.toml --extra test --override requirements/overrides.txt \
  --constraint /tmp/al_flows_torchpin.txt --python-version 3.11 --no-header --no-annotate -o /tmp/al_flows_lock.txt
{ sed -n 1,3p requirements/lock.txt; grep -vE "^(torch==|-e )" /tmp/al_flows_lock.txt; } > requirements/lock.new
mv requirements/lock.new requirements/lock.txt
