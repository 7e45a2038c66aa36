"""The CUDA path against the CPU path (run by scripts/gpu_check.sh; skipped without CUDA).

Tolerances follow from float32 arithmetic (about 1e-7 relative per operation; CUDA kernels sum in
another order than the CPU ones, so results differ by rounding, not by formula) and, for training,
from how Adam carries a rounding difference from step to step: a few epochs keep the curves within
1e-2 relative in float32. bfloat16 autocast keeps 8 mantissa bits (about 4e-3 relative per operation)
in the representation, so its curve is held to 0.1 relative.
"""

import numpy as np
import pytest
import torch

from al_flows.potential.ensemble import Ensemble
from al_flows.potential.model import ModelSettings, TrainingSettings
from al_flows.potential.training import train_member

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the GPU path is checked on a GPU"),
]

MODEL = ModelSettings(n_atom_basis=32, n_interactions=2, n_rbf=20, cutoff=5.0)


@pytest.fixture(scope="module")
def frames():
    from helpers import emt_labelled_multilayer

    return [emt_labelled_multilayer(s) for s in range(16)]


def _train(frames, device, amp=False, epochs=3):
    training = TrainingSettings(epochs=epochs, batch_size=4, lr=1e-3, val_fraction=0.25, device=device, amp=amp)
    return train_member(frames, MODEL, training, seed=0)


@pytest.fixture(scope="module")
def cpu_member(frames):
    return _train(frames, "cpu")


@pytest.fixture(scope="module")
def cuda_member(frames):
    return _train(frames, "cuda")


def test_training_on_cuda_follows_the_cpu_curve(cpu_member, cuda_member):
    cpu = np.array([r["train_loss"] for r in cpu_member.curve])
    gpu = np.array([r["train_loss"] for r in cuda_member.curve])
    np.testing.assert_allclose(gpu, cpu, rtol=1e-2)
    assert cuda_member.val_force_rmse == pytest.approx(cpu_member.val_force_rmse, rel=1e-2)


def test_bfloat16_autocast_training_stays_close(frames, cpu_member):
    amp = _train(frames, "cuda", amp=True)
    cpu = np.array([r["train_loss"] for r in cpu_member.curve])
    got = np.array([r["train_loss"] for r in amp.curve])
    np.testing.assert_allclose(got, cpu, rtol=0.1)


def test_ensemble_predictions_on_cuda_equal_the_cpus(frames, cpu_member, cuda_member):
    blobs = [cpu_member.blob, cuda_member.blob]
    cpu = Ensemble.from_bytes(blobs, device="cpu").predict(frames, stress=True)
    gpu = Ensemble.from_bytes(blobs, device="cuda").predict(frames, stress=True)
    # float32 on 32-atom cells: energies (eV) to 1e-4, forces (eV/A) to 1e-4, stress (eV/A^3) to 1e-6
    np.testing.assert_allclose(gpu.energies, cpu.energies, atol=1e-4)
    for f_gpu, f_cpu in zip(gpu.forces, cpu.forces, strict=True):
        np.testing.assert_allclose(f_gpu, f_cpu, atol=1e-4)
    np.testing.assert_allclose(gpu.stresses, cpu.stresses, atol=1e-6)
    np.testing.assert_allclose(gpu.deviation, cpu.deviation, atol=1e-4)


def test_gpu_trained_member_loads_and_predicts_on_cpu(frames, cuda_member):
    cpu = Ensemble.from_bytes([cuda_member.blob], device="cpu").predict(frames)
    gpu = Ensemble.from_bytes([cuda_member.blob], device="cuda").predict(frames)
    np.testing.assert_allclose(cpu.energies, gpu.energies, atol=1e-4)
    assert np.isfinite(cpu.energies).all()


def test_batched_shear_relaxation_on_cuda_gives_the_cpu_frames(cpu_member, cuda_member):
    from al_flows.exploration.shear import ShearSettings
    from al_flows.exploration.shear_batched import explore_shear_batched
    from al_flows.structures.multilayer import cuni_multilayer

    start = cuni_multilayer((2, 2, 2))
    start.info["structure_id"] = "ml"
    settings = ShearSettings(n_runs=3, max_steps=2, gamma_max=10.0, fmax=0.01, max_opt_steps=200)
    blobs = [cpu_member.blob, cuda_member.blob]
    out = {
        dev: explore_shear_batched([start], Ensemble.from_bytes(blobs, device=dev), settings, seed=0)
        for dev in ("cpu", "cuda")
    }
    assert len(out["cuda"]) == len(out["cpu"]) == 6
    for a, b in zip(out["cpu"], out["cuda"], strict=True):
        # both relaxed to fmax 0.01 eV/A from the same start and noise: the same minimum, so energies
        # agree to the convergence tolerance times a displacement (1e-2 eV/A x 0.1 A = 1e-3 eV)
        assert b.info["energy"] == pytest.approx(a.info["energy"], abs=1e-3)
        assert np.abs(b.positions - a.positions).max() < 0.05


def test_langevin_md_on_cuda_gives_the_cpu_frames(cpu_member, cuda_member):
    from al_flows.exploration.langevin import LangevinRun, run_batched_langevin
    from al_flows.structures.multilayer import cuni_multilayer

    starts = [cuni_multilayer((2, 2, 2)) for _ in range(2)]
    run = LangevinRun(n_steps=20, timestep_fs=1.0, friction_per_ps=5.0, record_every=5, seed=3)
    blobs = [cpu_member.blob, cuda_member.blob]
    out = {
        dev: run_batched_langevin(starts, Ensemble.from_bytes(blobs, device=dev), lambda k, t: 300.0, run)
        for dev in ("cpu", "cuda")
    }
    assert len(out["cpu"]) == len(out["cuda"]) == 8
    for a, b in zip(out["cpu"], out["cuda"], strict=True):
        # same noise (numpy, seeded); forces differ by float32 rounding (1e-5 eV/A), which 20 steps
        # of 1 fs carry into positions far below 1e-3 A
        assert np.abs(b.positions - a.positions).max() < 1e-3


@pytest.mark.parametrize("optimizer", ["BFGS", "LBFGS", "FIRE"])
def test_batched_optimisers_on_cuda_step_as_on_the_cpu(optimizer):
    """The torch engine's optimisers in float64 on the device: with the same (harmonic, float64)
    forces, the CPU's positions up to the round-off of another summation order (1e-16 relative per
    operation; 12 steps of at most 0.2 A in wells of stiffness 1 to 20 eV/A^2: 1e-10 A)."""
    from al_flows.exploration.batched_optimisers import make_optimiser

    rng = np.random.default_rng(3)
    x0 = [rng.normal(0.0, 3.0, (n, 3)) for n in (32, 31, 48)]
    starts = [x + rng.normal(0.0, 0.1, x.shape) for x in x0]
    stiffness = [rng.uniform(1.0, 20.0, x.shape) for x in x0]  # anisotropic: the walk takes its steps
    paths = {}
    for dev in ("cpu", "cuda"):
        opt = make_optimiser(optimizer, starts, dev)
        for _ in range(12):
            forces = opt.padded([-k * (x - c) for x, c, k in zip(opt.positions(), x0, stiffness)])
            opt.step(forces, torch.zeros(len(opt), dtype=torch.float64, device=opt.device))
        paths[dev] = opt.positions()
    for a, b in zip(paths["cpu"], paths["cuda"], strict=True):
        assert np.isfinite(a).all()
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-10)
