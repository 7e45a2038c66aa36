"""A wheel built from the checkout carries the example campaigns, so ``al-flows demo`` finds its
campaign file outside a checkout (the demo run itself is tests/test_demo.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_the_examples_and_finds_the_demo_outside_a_checkout(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = (tmp_path / "dist").glob("al_flows-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    examples = {f"al_flows/{p.relative_to(ROOT).as_posix()}" for p in (ROOT / "flows").rglob("*.yaml")}
    assert "al_flows/flows/demo_cuni_emt.yaml" in examples and examples <= names
    assert {"al_flows_schnetpack_compat.pth", "al_flows/py.typed"} <= names
    # unpacked wheel first on the path, run from a directory that holds no checkout
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = "import al_flows.cli as c; print(c.__file__); print(c.demo_config_path())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=elsewhere,
        env=dict(os.environ, PYTHONPATH=str(site)),
    ).stdout.split()
    assert out[0] == str(site / "al_flows" / "cli.py")
    assert out[1] == str(site / "al_flows" / "flows" / "demo_cuni_emt.yaml")
    assert Path(out[1]).read_text() == (ROOT / "flows" / "demo_cuni_emt.yaml").read_text()


@pytest.mark.slow
def test_wheel_in_a_new_venv_runs_the_demo(tmp_path):
    """scripts/wheel_check.sh: wheel + pinned dependencies in a fresh venv, demo from elsewhere."""
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "wheel_check.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith("wheel demo: al_flows ") and "site-packages" in line
    assert float(line.rsplit(" ", 1)[1]) > 0.5  # the demo's test force R2, as in tests/test_demo.py
