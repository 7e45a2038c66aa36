"""GPU check: the CUDA path's tests and the paper-size figures, in one command.

    bash scripts/gpu_check.sh [--smoke] [OUT.json]      (JSON to OUT.json, else $OUT/gpu_check.json)

Sections, each a row of the summary table printed last (and a key of the JSON):

- ``tests``: ``pytest -m gpu tests/gpu`` (CUDA against CPU: training in float32 and with bfloat16
  autocast, ensemble energies/forces/stress/deviation, batched shear relaxation and Langevin MD, a
  GPU-trained model predicting on the CPU, the batched optimisers stepping as on the CPU). Without
  CUDA they skip, and the row says so.
- ``training``: SchNet at the size of Sprueill et al. (128 features, 2 interactions, 50 RBF, 6 A
  cutoff, batch 32) on EMT-labelled 500-atom Cu-Ni multilayers (5x5x5 cells, strained 2 %, rattled
  0.08 A): seconds per 1,000 frames per epoch (median of the epochs after the first), extrapolated
  to the paper's 39,214 frames (target: 60 s or less on one H100), in float32 and (CUDA) with
  bfloat16 autocast; peak GPU memory; the share of epoch time inside the model's forward and
  backward passes (benchmarks/model_time.py).
- ``exploration``: 100 perturbed-shear replicas of the 500-atom multilayer relaxed in lockstep by a
  4-member ensemble (the trained member and 3 copies with 2 % weight noise) for ``shear_steps``
  shear steps of 0.1 A (BFGS to fmax 0.002 eV/A, at most ``max_opt_steps`` optimiser steps per
  relaxation); seconds per shear step for all 100, extrapolated to gamma 0.33 (the steps
  :func:`al_flows.exploration.shear_geometry.steps_to_gamma` gives on this cell; target: 10 minutes or less);
  peak memory; the shares of the model, the batched optimiser and the neighbour lists.
- ``optimiser``: the batched BFGS (``optimizer_engine: torch``) alone, ``opt_steps`` steps of all 100
  replicas of the 500-atom multilayer (1,500 coordinates each) on the device, against ASE's BFGS (the
  ``ase`` engine: one optimiser per replica on the CPU, an eigendecomposition of its 1,500 x 1,500
  Hessian every step) timed on ``ase_opt_replicas`` replicas and scaled to all; harmonic forces
  around the lattice, so the model is not in it: seconds per optimiser step for all replicas.
- ``md``: batched Langevin MD (300 K, 1 fs) of ``md_runs`` fcc Al cells of 256 atoms with an
  8-member ensemble (a member trained briefly on EMT Al frames and 7 noisy copies); atom-steps per
  second (Smith et al. report about 67,000 on one V100 for their 8-member ANI ensemble).

``--smoke`` runs every section on the CPU with tiny sizes (CI runs it, so the script cannot rot);
its figures mean nothing. The weights are barely trained (the sections measure speed, not accuracy),
so relaxations may hit ``max_opt_steps``: the optimiser steps per shear step are printed with it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PAPER_FRAMES = 39_214  # training frames of Sprueill et al.
PAPER_MODEL = dict(n_atom_basis=128, n_interactions=2, n_rbf=50, cutoff=6.0)
SIZES = {
    "full": dict(
        model=PAPER_MODEL,
        batch=32,
        train_cells=(5, 5, 5),
        train_frames=320,
        train_epochs=4,
        explore_cells=(5, 5, 5),
        replicas=100,
        members=4,
        shear_steps=2,
        max_opt_steps=200,
        opt_steps=5,
        ase_opt_replicas=2,
        md_cells=(4, 4, 4),
        md_runs=64,
        md_members=8,
        md_steps=200,
        md_model=PAPER_MODEL,
    ),
    "smoke": dict(
        model=dict(n_atom_basis=16, n_interactions=1, n_rbf=8, cutoff=4.0),
        batch=4,
        train_cells=(2, 2, 2),
        train_frames=12,
        train_epochs=2,
        explore_cells=(2, 2, 2),
        replicas=3,
        members=2,
        shear_steps=1,
        max_opt_steps=5,
        opt_steps=3,
        ase_opt_replicas=2,
        md_cells=(2, 2, 2),
        md_runs=3,
        md_members=2,
        md_steps=10,
        md_model=dict(n_atom_basis=16, n_interactions=1, n_rbf=8, cutoff=4.0),
    ),
}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_mb(device: str) -> float:
    """Peak CUDA memory allocated since the last reset (MB); on CPU the process's peak RSS (MB)."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _labelled(frames):
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    for a in frames:
        a.calc = EMT()
        a.calc = SinglePointCalculator(a, energy=a.get_potential_energy(), forces=a.get_forces())
    return frames


def multilayer_frames(cells, n: int, seed: int):
    """``n`` EMT-labelled Cu-Ni multilayers of ``cells`` fcc cells, strained 2 % and rattled 0.08 A."""
    from al_flows.structures.multilayer import cuni_multilayer

    rng = np.random.default_rng(seed)
    base = cuni_multilayer(tuple(cells))
    out = []
    for k in range(n):
        a = base.copy()
        a.set_cell(a.cell.array @ (np.eye(3) + rng.normal(0, 0.02, (3, 3))), scale_atoms=True)
        a.rattle(0.08, seed=seed * 10_000 + k)
        out.append(a)
    return _labelled(out)


def noisy_copies(blob: bytes, n: int, seed: int) -> list[bytes]:
    """The member of ``blob`` and ``n - 1`` copies with 2 % weight noise (an ensemble that disagrees)."""
    import torch

    from al_flows.potential.weights import member_from_bytes, member_to_bytes

    out = [blob]
    for m in range(1, n):
        module, settings, extra = member_from_bytes(blob)
        gen = torch.Generator().manual_seed(seed * 1000 + m)
        with torch.no_grad():
            for p in module.parameters():
                p.add_(0.02 * p.abs().mean() * torch.randn(p.shape, generator=gen))
        out.append(member_to_bytes(module, settings, extra))
    return out


def run_tests(smoke: bool) -> dict:
    """``pytest -m gpu tests/gpu``; counts from its summary line."""
    t = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests/gpu"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    tail = (proc.stdout + proc.stderr).strip().splitlines()
    summary = tail[-1] if tail else ""
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|error|errors)", summary)}
    if proc.returncode not in (0, 5) or counts.get("failed") or counts.get("error") or counts.get("errors"):
        sys.stderr.write("\n".join(tail[-60:]) + "\n")
    return {
        "returncode": proc.returncode,
        "passed": counts.get("passed", 0),
        "skipped": counts.get("skipped", 0),
        "failed": counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0),
        "summary": summary,
        "wall_s": time.perf_counter() - t,
    }


def run_training(size: dict, device: str, amp: bool) -> dict:
    """Seconds per 1,000 frames per epoch at ``size``; the trained member's blob for the next sections."""
    from model_time import ModelTimer

    from al_flows.potential.model import ModelSettings, TrainingSettings
    from al_flows.potential.training import Trainer
    from al_flows.potential.training_data import split_indices
    from al_flows.potential.weights import member_to_bytes

    frames = multilayer_frames(size["train_cells"], size["train_frames"], seed=1)
    model = ModelSettings(**size["model"])
    training = TrainingSettings(
        epochs=size["train_epochs"], batch_size=size["batch"], lr=1e-3, val_fraction=0.0, device=device, amp=amp
    )
    t = time.perf_counter()
    trainer = Trainer(frames, model, training, seed=0)
    train_idx, _ = split_indices(len(frames), 0.0, np.random.default_rng(0))
    trainer.fit_reference(train_idx)
    _sync(device)
    setup_s = time.perf_counter() - t
    _reset_peak(device)
    times, model_s = [], []
    for _ in range(size["train_epochs"]):
        t = time.perf_counter()
        with ModelTimer([trainer.module], device) as timer:
            trainer.run_epochs(train_idx, [], 1)
            _sync(device)
        times.append(time.perf_counter() - t)
        model_s.append(timer.seconds)
    epoch_s = statistics.median(times[1:])
    per_1000 = epoch_s / len(train_idx) * 1000.0
    return {
        "device": device,
        "amp": bool(trainer.amp_dtype),
        "frames": len(train_idx),
        "atoms_per_frame": len(frames[0]),
        "setup_s": setup_s,
        "epoch_times_s": times,
        "s_per_1000_frames": per_1000,
        "paper_epoch_s": per_1000 * PAPER_FRAMES / 1000.0,
        "target_paper_epoch_s": 60.0,
        "peak_mb": _peak_mb(device),
        "model_share": sum(model_s[1:]) / sum(times[1:]),
        "blob": member_to_bytes(trainer.module, model, {}),
    }


def run_warm_start(size: dict, device: str) -> dict:
    """A member trained from scratch for ``train_epochs`` on the training frames, then the next
    round's member on those frames and a quarter more, from scratch against warm-started from the
    first (``TrainingSettings.epochs_warm`` epochs, al_flows.potential.warm_start): wall seconds of
    each and their ratio, and their validation force RMSE (eV/A)."""
    from al_flows.potential.model import ModelSettings, TrainingSettings
    from al_flows.potential.training import train_member
    from al_flows.potential.warm_start import WarmStart

    frames = multilayer_frames(size["train_cells"], size["train_frames"], seed=1)
    more = frames + multilayer_frames(size["train_cells"], max(size["train_frames"] // 4, 2), seed=2)
    model = ModelSettings(**size["model"])
    epochs = 4 * size["train_epochs"]
    training = TrainingSettings(epochs=epochs, batch_size=size["batch"], lr=1e-3, val_fraction=0.1, device=device)
    first = train_member(frames, model, training, seed=0)
    _sync(device)
    t = time.perf_counter()
    scratch = train_member(more, model, training, seed=1)
    _sync(device)
    scratch_s = time.perf_counter() - t
    warm = WarmStart(first.blob, tuple(first.train_ids), tuple(first.val_ids), training.epochs_warm)
    t = time.perf_counter()
    warmed = train_member(more, model, training, seed=1, warm=warm)
    _sync(device)
    warm_s = time.perf_counter() - t
    return {
        "frames": len(more),
        "epochs_scratch": epochs,
        "epochs_warm": training.epochs_warm,
        "scratch_s": scratch_s,
        "warm_s": warm_s,
        "ratio": warm_s / scratch_s,
        "val_force_rmse_scratch": scratch.val_force_rmse,
        "val_force_rmse_warm": warmed.val_force_rmse,
    }


def _exploration_phases() -> dict:
    """The batched optimiser's steps and the neighbour lists (benchmarks/model_time.py PhaseTimer)."""
    import al_flows.exploration.batched_optimisers as opt_module
    from al_flows.potential.skin_neighbours import SkinNeighbours

    steps = [(getattr(opt_module, c), "step") for c in ("BatchedBFGS", "BatchedLBFGS", "BatchedFIRE")]
    return {"optimiser": steps, "neighbour lists": [(SkinNeighbours, "_select")]}


def run_exploration(size: dict, device: str, blob: bytes) -> dict:
    """Seconds per shear step for all replicas in lockstep, extrapolated to gamma 0.33."""
    from model_time import ModelTimer, PhaseTimer

    from al_flows.exploration.shear import ShearSettings
    from al_flows.exploration.shear_batched import explore_shear_batched
    from al_flows.exploration.shear_geometry import steps_to_gamma
    from al_flows.potential.ensemble import Ensemble
    from al_flows.structures.multilayer import cuni_multilayer

    ensemble = Ensemble.from_bytes(noisy_copies(blob, size["members"], seed=3), device=device)
    start = cuni_multilayer(tuple(size["explore_cells"]))
    start.info["structure_id"] = "multilayer"
    settings = ShearSettings(
        n_runs=size["replicas"],
        shear_step=0.1,
        gamma_max=10.0,
        max_steps=size["shear_steps"],
        fmax=0.002,
        max_opt_steps=size["max_opt_steps"],
    )
    warm = settings.model_copy(update={"n_runs": 2, "max_steps": 1, "max_opt_steps": 2})
    explore_shear_batched([start], ensemble, warm, seed=99)
    _reset_peak(device)
    t = time.perf_counter()
    with ModelTimer(ensemble.members, device) as timer, PhaseTimer(_exploration_phases()) as phases:
        frames = explore_shear_batched([start], ensemble, settings, seed=0, batch_size=size["replicas"])
    _sync(device)
    wall = time.perf_counter() - t
    steps_033 = steps_to_gamma(start.cell[:], 0.1, 0.33)
    per_step = wall / size["shear_steps"]
    opt_steps = sum(int(a.info["n_opt_steps"]) for a in frames)
    return {
        "device": device,
        "replicas": size["replicas"],
        "atoms": len(start),
        "members": size["members"],
        "shear_steps": size["shear_steps"],
        "frames": len(frames),
        "opt_steps_per_shear_step": opt_steps / max(len(frames), 1),
        "converged": sum(bool(a.info["converged"]) for a in frames),
        "wall_s": wall,
        "s_per_shear_step": per_step,
        "steps_to_gamma_0.33": steps_033,
        "gamma_0.33_min": per_step * steps_033 / 60.0,
        "target_min": 10.0,
        "peak_mb": _peak_mb(device),
        "model_share": timer.share(wall),
        "optimiser_share": phases.shares(wall)["optimiser"],
        "neighbour_share": phases.shares(wall)["neighbour lists"],
    }


def _harmonic_forces(x: np.ndarray, x0: np.ndarray, k: float) -> np.ndarray:
    """Forces (eV/A) of a harmonic well of stiffness ``k`` (eV/A^2) around ``x0``."""
    return -k * (x - x0)


def run_optimiser(size: dict, device: str) -> dict:
    """Seconds per BFGS step of all replicas: batched on ``device`` against ASE's, one replica after
    the other (timed on ``ase_opt_replicas`` of them, scaled to all)."""
    import torch
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.optimize import BFGS

    from al_flows.exploration.batched_optimisers import BatchedBFGS
    from al_flows.structures.multilayer import cuni_multilayer

    start = cuni_multilayer(tuple(size["explore_cells"]))
    rng = np.random.default_rng(0)
    x0 = start.positions
    stiffness = rng.uniform(2.0, 10.0, size["replicas"])
    positions = [x0 + rng.normal(0.0, 0.05, x0.shape) for _ in range(size["replicas"])]
    opt = BatchedBFGS(positions, device)
    times = []
    for _ in range(size["opt_steps"] + 1):  # the first step (allocations, kernels) is not timed
        forces = opt.padded([_harmonic_forces(x, x0, k) for x, k in zip(opt.positions(), stiffness)])
        _sync(device)
        t = time.perf_counter()
        opt.step(forces, torch.zeros(len(opt), dtype=torch.float64, device=opt.device))
        _sync(device)
        times.append(time.perf_counter() - t)
    batched_s = statistics.median(times[1:])
    ase_times = []
    for x, k in list(zip(positions, stiffness))[: size["ase_opt_replicas"]]:
        atoms = start.copy()
        atoms.positions = x
        bfgs = BFGS(atoms, logfile=None)
        for step in range(size["opt_steps"] + 1):
            atoms.calc = SinglePointCalculator(atoms, energy=0.0, forces=_harmonic_forces(atoms.positions, x0, k))
            t = time.perf_counter()
            bfgs.step()
            if step:
                ase_times.append(time.perf_counter() - t)
    ase_s = statistics.median(ase_times) * size["replicas"]
    return {
        "device": device,
        "replicas": size["replicas"],
        "atoms": len(start),
        "steps": size["opt_steps"],
        "batched_s_per_step": batched_s,
        "ase_s_per_step": ase_s,
        "ase_replicas_timed": min(size["ase_opt_replicas"], size["replicas"]),
        "speedup": ase_s / batched_s,
        "eigh_steps": opt.eigh_steps,
    }


def run_md(size: dict, device: str) -> dict:
    """Atom-steps per second of batched Langevin MD with the ensemble of ``md_members``."""
    from ase.build import bulk

    from al_flows.exploration.langevin import LangevinRun, run_batched_langevin
    from al_flows.potential.ensemble import Ensemble
    from al_flows.potential.model import ModelSettings, TrainingSettings
    from al_flows.potential.training import train_member

    rng = np.random.default_rng(5)
    cell = bulk("Al", "fcc", a=4.05, cubic=True).repeat(tuple(size["md_cells"]))
    data = []
    for k in range(8):
        a = cell.copy()
        a.rattle(0.1, seed=k)
        a.set_cell(a.cell.array * (1 + rng.normal(0, 0.02)), scale_atoms=True)
        data.append(a)
    training = TrainingSettings(epochs=2, batch_size=4, lr=1e-3, val_fraction=0.0, device=device)
    trained = train_member(_labelled(data), ModelSettings(**size["md_model"]), training, seed=0)
    ensemble = Ensemble.from_bytes(noisy_copies(trained.blob, size["md_members"], seed=7), device=device)
    starts = []
    for k in range(size["md_runs"]):
        a = cell.copy()
        a.rattle(0.02, seed=100 + k)
        starts.append(a)
    n_steps = size["md_steps"]
    run = LangevinRun(n_steps, 1.0, 5.0, n_steps, seed=11)
    run_batched_langevin(starts[:2], ensemble, lambda k, t: 300.0, LangevinRun(2, 1.0, 5.0, 2, seed=1))
    _reset_peak(device)
    dropped: list[dict] = []
    t = time.perf_counter()
    run_batched_langevin(starts, ensemble, lambda k, t: 300.0, run, dropped=dropped)
    _sync(device)
    wall = time.perf_counter() - t
    lost = {int(d["replica"]): int(d["step"]) for d in dropped if "replica" in d}
    steps = sum(lost.get(k, n_steps) for k in range(len(starts)))
    return {
        "device": device,
        "trajectories": len(starts),
        "atoms": len(cell),
        "members": size["md_members"],
        "steps": n_steps,
        "dropped": len(dropped),
        "wall_s": wall,
        "atom_steps_per_s": steps * len(cell) / wall,
        "paper_atom_steps_per_s": 67_000,
        "peak_mb": _peak_mb(device),
    }


def table(res: dict) -> str:
    """The summary table (markdown)."""
    rows = ["| section | figure | value | target / reference |", "|---|---|---|---|"]
    t = res["tests"]
    rows.append(
        f"| gpu tests | passed / skipped / failed | {t['passed']} / {t['skipped']} / {t['failed']} | all pass on CUDA |"
    )
    for key in ("training", "training_amp"):
        r = res.get(key)
        if not r:
            continue
        name = "training, bf16 autocast" if key == "training_amp" else "training, float32"
        rows.append(
            f"| {name} | s per 1,000 frames per epoch ({r['atoms_per_frame']} atoms, batch {res['size']['batch']}) | "
            f"{r['s_per_1000_frames']:.2f} | |"
        )
        rows.append(f"| {name} | epoch of {PAPER_FRAMES:,} frames (s) | {r['paper_epoch_s']:.0f} | <= 60 s |")
        rows.append(f"| {name} | peak memory (MB) | {r['peak_mb']:.0f} | |")
        rows.append(f"| {name} | model forward+backward share | {100 * r['model_share']:.0f} % | >= 80 % |")
    w = res.get("warm_start")
    if w:
        rows.append(
            f"| warm-started member, {w['frames']} frames | wall: {w['epochs_warm']} warm epochs / "
            f"{w['epochs_scratch']} from scratch | {w['ratio']:.2f} ({w['warm_s']:.1f} s / {w['scratch_s']:.1f} s) "
            "| <= 0.5 |"
        )
        rows.append(
            f"| warm-started member | validation force RMSE warm / scratch (eV/A) | "
            f"{w['val_force_rmse_warm']:.3f} / {w['val_force_rmse_scratch']:.3f} | within 5 % |"
        )
    e = res["exploration"]
    rows.append(
        f"| exploration, {e['replicas']} x {e['atoms']} atoms, {e['members']} members | s per shear step "
        f"({e['opt_steps_per_shear_step']:.0f} optimiser steps per relaxation) | {e['s_per_shear_step']:.1f} | |"
    )
    rows.append(
        f"| exploration | all {e['replicas']} runs to gamma 0.33 ({e['steps_to_gamma_0.33']} steps, min) | "
        f"{e['gamma_0.33_min']:.1f} | <= 10 min |"
    )
    rows.append(f"| exploration | peak memory (MB) | {e['peak_mb']:.0f} | |")
    rows.append(
        f"| exploration | model / batched optimiser / neighbour-list share | {100 * e['model_share']:.0f} % / "
        f"{100 * e['optimiser_share']:.0f} % / {100 * e['neighbour_share']:.0f} % | model >= 80 % |"
    )
    o = res["optimiser"]
    rows.append(
        f"| batched optimiser, {o['replicas']} x {o['atoms']} atoms | s per BFGS step for all: batched on "
        f"{o['device']} / ASE per replica on the CPU | {o['batched_s_per_step']:.3f} / {o['ase_s_per_step']:.2f} "
        f"({o['speedup']:.0f}x) | |"
    )
    m = res["md"]
    rows.append(
        f"| Langevin MD, {m['trajectories']} x {m['atoms']} atoms, {m['members']} members | atom-steps per s | "
        f"{m['atom_steps_per_s']:,.0f} | 67,000 (ANI, one V100) |"
    )
    rows.append(f"| Langevin MD | peak memory (MB) | {m['peak_mb']:.0f} | |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", help="JSON file (default: $OUT/gpu_check.json, else gpu_check.json)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (CI), figures meaningless")
    ap.add_argument("--skip-tests", action="store_true", help="leave out the gpu-marked tests")
    args = ap.parse_args(argv)
    import torch

    import al_flows  # noqa: F401

    out = Path(args.out or (Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else "gpu_check.json"))
    device = "cpu" if args.smoke else ("cuda" if torch.cuda.is_available() else "cpu")
    size = SIZES["smoke" if args.smoke else "full"]
    card = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    res: dict = {"mode": "smoke" if args.smoke else "full", "device": device, "card": card, "size": size}
    print(f"gpu_check ({res['mode']}) on {card}; torch {torch.__version__}", flush=True)
    t0 = time.perf_counter()
    res["tests"] = (
        {"passed": 0, "skipped": 0, "failed": 0, "summary": "not run"} if args.skip_tests else run_tests(args.smoke)
    )
    print(f"tests: {res['tests']['summary']}", flush=True)
    trained = run_training(size, device, amp=False)
    blob = trained.pop("blob")
    res["training"] = trained
    print(f"training: {trained['s_per_1000_frames']:.2f} s per 1000 frames per epoch", flush=True)
    if device == "cuda":
        res["training_amp"] = run_training(size, device, amp=True)
        res["training_amp"].pop("blob")
    res["warm_start"] = run_warm_start(size, device)
    print(f"warm start: {res['warm_start']['ratio']:.2f} of a member from scratch", flush=True)
    res["exploration"] = run_exploration(size, device, blob)
    print(f"exploration: {res['exploration']['s_per_shear_step']:.2f} s per shear step", flush=True)
    res["optimiser"] = run_optimiser(size, device)
    print(f"optimiser: {res['optimiser']['speedup']:.1f}x ASE's BFGS per replica", flush=True)
    res["md"] = run_md(size, device)
    res["wall_s"] = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=float))
    print(table(res))
    print(f"wall time {res['wall_s']:.0f} s; JSON: {out}")
    return 1 if res["tests"]["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
