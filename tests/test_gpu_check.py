"""scripts/gpu_check.sh --smoke: the GPU check's one command runs on the CPU with tiny sizes and
writes a JSON whose figures are consistent with their definitions (so the script cannot rot)."""

import json
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_smoke_runs_and_its_figures_add_up(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--smoke", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["mode"] == "smoke" and res["device"] == "cpu"
    tests = res["tests"]
    assert tests["failed"] == 0
    if not torch.cuda.is_available():
        assert tests["passed"] == 0 and tests["skipped"] == 9  # every gpu test skips cleanly without CUDA
    tr = res["training"]
    assert tr["frames"] == 12 and tr["atoms_per_frame"] == 32 and len(tr["epoch_times_s"]) == 2
    assert tr["s_per_1000_frames"] == pytest.approx(tr["epoch_times_s"][1] / 12 * 1000)
    assert tr["paper_epoch_s"] == pytest.approx(tr["s_per_1000_frames"] * 39.214)
    assert 0 < tr["model_share"] <= 1
    ex = res["exploration"]
    assert ex["frames"] == 3 * 1 and ex["s_per_shear_step"] == pytest.approx(ex["wall_s"])
    from al_flows.exploration.shear_geometry import steps_to_gamma
    from al_flows.structures.multilayer import cuni_multilayer

    assert ex["steps_to_gamma_0.33"] == steps_to_gamma(cuni_multilayer((2, 2, 2)).cell[:], 0.1, 0.33)
    assert ex["gamma_0.33_min"] == pytest.approx(ex["s_per_shear_step"] * ex["steps_to_gamma_0.33"] / 60)
    assert 0 < ex["model_share"] <= 1
    assert 0 < ex["optimiser_share"] < 1 and 0 < ex["neighbour_share"] < 1  # the torch engine's phases were timed
    op = res["optimiser"]
    assert (op["replicas"], op["atoms"], op["steps"], op["ase_replicas_timed"]) == (3, 32, 3, 2)
    assert op["speedup"] == pytest.approx(op["ase_s_per_step"] / op["batched_s_per_step"])
    assert op["eigh_steps"] == 0  # harmonic wells: positive-definite Hessians, Cholesky steps only
    w = res["warm_start"]
    assert (w["frames"], w["epochs_scratch"], w["epochs_warm"]) == (15, 8, 2)  # 12 + 12 // 4; a quarter of 8 epochs
    assert w["ratio"] == pytest.approx(w["warm_s"] / w["scratch_s"])
    md = res["md"]
    assert md["dropped"] == 0  # seeded: every smoke trajectory runs all its steps
    assert md["atom_steps_per_s"] == pytest.approx(md["trajectories"] * md["steps"] * md["atoms"] / md["wall_s"])
    for row in (
        "| gpu tests |",
        "| training, float32 | epoch of 39,214 frames (s) |",
        "| Langevin MD, 3 x 32 atoms",
        "| batched optimiser, 3 x 32 atoms |",
        "| warm-started member, 15 frames |",
    ):
        assert row in proc.stdout
