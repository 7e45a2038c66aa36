"""The shipped demo campaign through the console script: it finishes, its last round predicts the
labeller's test forces with R^2 > 0.5 (relaxed and nonequilibrium frames), and its potential
predicts the relaxed test frames (what its shear explorer labels) better than round 0's."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def test_demo_runs_end_to_end_and_improves(tmp_path):
    exe = shutil.which("al-flows", path=str(Path(sys.executable).parent)) or "al-flows"
    out = subprocess.run(
        [exe, "demo", "--workdir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "round 0 | select" in out.stdout  # live progress lines
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    rounds = report["rounds"]
    assert report["finished"] and len(rounds) == 3
    assert rounds[-1]["test_force_rmse_relaxed"] < rounds[0]["test_force_rmse_relaxed"]
    assert rounds[-1]["test_force_r2"] > 0.5
    for r in rounds:
        assert {
            "test_force_r2",
            "test_force_rel_rmse",
            "test_force_rmse_relaxed",
            "test_force_rmse_nonequilibrium",
            "test_energy_rmse_per_atom_relaxed",
            "test_energy_rmse_per_atom_nonequilibrium",
        } <= set(r)
    assert [r["n_labels_total"] for r in rounds] == [
        18,
        18 + rounds[0]["n_labelled"],
        18 + rounds[0]["n_labelled"] + rounds[1]["n_labelled"],
    ]
    assert all(r["n_explored"] == 24 for r in rounds)  # 3 structures x 2 runs x 4 shear steps to gamma 0.33

    # after the demo, the inspection commands work on its work directory
    workdir = str(tmp_path / "demo")
    status = json.loads(
        subprocess.run(
            [exe, "status", "--workdir", workdir, "--json"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert [r["n_labels_total"] for r in status["rounds"]] == [r["n_labels_total"] for r in rounds]
    # every job's time, from the timing records: each finished round ran these stages
    stages = {"train", "evaluate", "explore", "select", "label", "calibrate", "merge", "summary", "round"}
    assert all(set(r["wall_time_s"]) == stages for r in status["rounds"])
    for r in status["rounds"]:
        t = r["stage_times"]
        assert t["stages"]["train"]["n_jobs"] == 4  # the demo's 4 members
        assert t["total_wall_s"] == pytest.approx(sum(v["wall_s"] for v in t["stages"].values()), abs=0.01)
        assert r["wall_time_s"]["train"] == pytest.approx(t["stages"]["train"]["wall_s"], abs=0.01)
    label = next(r for r in status["rounds"] if r["round"] == 0)
    assert label["n_labelled"] == rounds[0]["n_labelled"]
    out = subprocess.run([exe, "report", "--workdir", workdir], capture_output=True, text=True, check=True)
    # errors, deviations, parity (2), energy vs gamma, training curves, calibration, stage times
    assert "8 plot(s)" in out.stdout and (tmp_path / "demo" / "report" / "index.html").is_file()
