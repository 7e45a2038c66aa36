"""Benchmark: the three member kinds (``model.kind`` schnet, painn, so3net) at equal labels.

Same data, split, sizes and training for every kind; SchNet is the baseline of every ratio, measured in
the same run:

* data: the frames of benchmarks/train.py (32-atom Cu-Ni (001) multilayers, ``cuni_multilayer((2, 2, 2))``,
  each cell strained (random 2 %) and rattled (0.1 A), labelled with ASE's EMT): ``--frames`` (24)
  training frames (10 % of them the validation frames that pick the best weights) and ``--test`` (16)
  held-out test frames drawn with another seed, never trained on.
* model: the demo campaign's size (flows/demo_cuni_emt.yaml: 32 features, 2 interactions, 20 Gaussian
  RBF, cosine cutoff 4.5 A); so3net with lmax 2 (its default); each kind built by
  ``al_flows.potential.model.build_member`` from the same seed.
* training: ``al_flows.potential.training.Trainer`` (the campaign's path: energy reference, loss
  rho (E - E^)^2 + (1/N) sum_i |F_i - F^_i|^2 with rho 0.01, Adam lr 2e-3 (the demo's), batch 2,
  plateau decay off within the run), ``--epochs`` (5) epochs, then the best-validation weights.
* test: ``Ensemble([member], settings).predict`` (the exploration path; each kind's default pair cap):
  force RMSE per component (eV/A) and R^2 over the components (1 - SS_res / SS_tot), energy RMSE
  (meV/atom).
* speed: training seconds per epoch (wall and process CPU time: median of epochs 2..N, validation
  included) and inference frames per second (energies and forces of the test frames, one member;
  median over passes: ``--repeats`` (2) turns, the kinds taking turns so that load on a shared machine
  falls on all of them, a fast kind repeating its pass for a second at least in each turn; also per
  second of process CPU time; the first pass gives the test errors).

Runs on the CPU with torch's default threads (``--threads`` to set them). SO3net dominates the run
time (13 to 30x SchNet's per epoch at this size), so the default data are small: about 9 minutes on
2 busy cores; ``--quick`` is a 2-minute smoke run.

    .venv/bin/python benchmarks/model_kinds.py [--frames 24] [--test 16] [--epochs 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

KINDS = ("schnet", "painn", "so3net")
SIZE = dict(n_atom_basis=32, n_interactions=2, n_rbf=20, cutoff=4.5)  # flows/demo_cuni_emt.yaml
BATCH, LR, RHO, VAL_FRACTION = 2, 2e-3, 0.01, 0.1


def train_kind(kind: str, frames, epochs: int, seed: int) -> dict:
    """Train one member of ``kind`` on ``frames``; its weights, epoch times and parameter count."""
    import torch

    from al_flows.potential.model import ModelSettings, TrainingSettings
    from al_flows.potential.training import Trainer
    from al_flows.potential.training_data import split_indices

    settings = ModelSettings(kind=kind, **SIZE)
    training = TrainingSettings(
        epochs=epochs, batch_size=BATCH, lr=LR, rho=RHO, lr_patience=10**6, val_fraction=VAL_FRACTION, device="cpu"
    )
    trainer = Trainer(frames, settings, training, seed=seed)
    train_idx, val_idx = split_indices(len(frames), VAL_FRACTION, trainer.rng)
    trainer.fit_reference(train_idx)
    walls, cpus, curve = [], [], []
    for _ in range(epochs):
        t, c = time.perf_counter(), time.process_time()
        row = trainer.run_epochs(train_idx, val_idx, 1)[0]
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
        curve.append(row["val_force_rmse"])
    trainer.restore_best()
    trainer.module.eval()
    return {
        "settings": settings,
        "module": trainer.module,
        "params": sum(p.numel() for p in trainer.module.parameters() if p.requires_grad),
        "epoch_s": statistics.median(walls[1:]),
        "epoch_cpu_s": statistics.median(cpus[1:]),
        "first_epoch_s": walls[0],
        "val_curve": curve,
        "n_train": int(len(train_idx)),
        "n_val": int(len(val_idx)),
        "threads": torch.get_num_threads(),
    }


def heldout_errors(pred, test) -> dict:
    """Force RMSE (eV/A, per component), force R^2 and energy RMSE (meV/atom) of the prediction ``pred``
    of the test frames."""
    f_true = np.concatenate([a.get_forces() for a in test])
    f_pred = np.concatenate(pred.mean_forces)
    n_atoms = np.array([len(a) for a in test], dtype=float)
    e_err = (pred.mean_energies - np.array([a.get_potential_energy() for a in test])) / n_atoms
    ss_res = float(((f_pred - f_true) ** 2).sum())
    ss_tot = float(((f_true - f_true.mean(axis=0)) ** 2).sum())
    return {
        "force_rmse": float(np.sqrt(np.mean((f_pred - f_true) ** 2))),
        "force_r2": 1.0 - ss_res / ss_tot,
        "energy_rmse_meV_atom": 1000.0 * float(np.sqrt(np.mean(e_err**2))),
    }


def run(args) -> dict:
    import torch
    from train import make_frames

    from al_flows.potential.ensemble import Ensemble

    if args.threads:
        torch.set_num_threads(args.threads)
    t = time.perf_counter()
    frames = make_frames(args.frames, args.seed)
    test = make_frames(args.test, args.seed + 1000)
    data_s = time.perf_counter() - t
    results: dict[str, dict] = {}
    for kind in KINDS:
        t = time.perf_counter()
        results[kind] = train_kind(kind, frames, args.epochs, args.seed)
        results[kind]["train_wall_s"] = time.perf_counter() - t
        print(f"trained {kind}: {results[kind]['train_wall_s']:.0f} s", flush=True)
    ensembles = {k: Ensemble([r["module"]], r["settings"]) for k, r in results.items()}
    passes: dict[str, list[float]] = {k: [] for k in KINDS}
    cpu: dict[str, list[float]] = {k: [] for k in KINDS}
    for n in range(args.repeats):  # the kinds take turns; the first pass also gives the errors
        for kind in KINDS:
            start = time.perf_counter()
            while True:  # passes of a fast kind repeat for a second at least
                t, c = time.perf_counter(), time.process_time()
                pred = ensembles[kind].predict(test)
                passes[kind].append(time.perf_counter() - t)
                cpu[kind].append(time.process_time() - c)
                if n == 0 and "force_rmse" not in results[kind]:
                    results[kind].update(heldout_errors(pred, test))
                if time.perf_counter() - start > 1.0:
                    break
    for kind, r in results.items():
        r["infer_frames_s"] = len(test) / statistics.median(passes[kind])
        r["infer_frames_cpu_s"] = len(test) / statistics.median(cpu[kind])
        r["infer_passes"] = len(passes[kind])
        r["max_pairs"] = ensembles[kind].max_pairs
        del r["module"]
        r["settings"] = r["settings"].model_dump()
    return {"data_s": data_s, "results": results}


def table(results: dict) -> str:
    base = results["schnet"]
    rows = [
        "| kind | parameters | test force RMSE (eV/Å) | / schnet | force R² | energy RMSE (meV/atom) | / schnet "
        "| s / epoch (wall) | / schnet | CPU s / epoch | / schnet | inference frames/s | / schnet |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, r in results.items():
        rows.append(
            f"| {kind} | {r['params']} | {r['force_rmse']:.4f} | {r['force_rmse'] / base['force_rmse']:.2f} "
            f"| {r['force_r2']:.3f} | {r['energy_rmse_meV_atom']:.2f} "
            f"| {r['energy_rmse_meV_atom'] / base['energy_rmse_meV_atom']:.2f} "
            f"| {r['epoch_s']:.2f} | {r['epoch_s'] / base['epoch_s']:.1f} | {r['epoch_cpu_s']:.2f} "
            f"| {r['epoch_cpu_s'] / base['epoch_cpu_s']:.1f} | {r['infer_frames_s']:.1f} "
            f"| {r['infer_frames_s'] / base['infer_frames_s']:.3f} |"
        )
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=24, help="training frames (10 %% of them for validation)")
    ap.add_argument("--test", type=int, default=16, help="held-out test frames")
    ap.add_argument("--epochs", type=int, default=5, help="epochs for every kind (>= 2; the first is not timed)")
    ap.add_argument("--repeats", type=int, default=2, help="inference passes per kind (median)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="a smoke run: 12 training frames, 8 test frames, 2 epochs")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if args.quick:
        args.frames, args.test, args.epochs, args.repeats = 12, 8, 2, 1
    if args.epochs < 2:
        ap.error("--epochs must be >= 2 (the first epoch is not timed)")
    t = time.perf_counter()
    out = run(args)
    res = out["results"]
    r0 = res["schnet"]
    print(
        f"data: {args.frames} training frames ({r0['n_train']} train / {r0['n_val']} validation) and {args.test} "
        f"held-out test frames, 32-atom EMT Cu-Ni ({out['data_s']:.0f} s); members {SIZE['n_atom_basis']} features, "
        f"{SIZE['n_interactions']} interactions, {SIZE['n_rbf']} RBF, cutoff {SIZE['cutoff']} A (so3net lmax "
        f"{res['so3net']['settings']['lmax']}); batch {BATCH}, Adam lr {LR}, rho {RHO}; {args.epochs} epochs; "
        f"CPU, {r0['threads']} torch threads; seed {args.seed}; total {time.perf_counter() - t:.0f} s"
    )
    print(table(res))
    for kind, r in res.items():
        curve = ", ".join(f"{v:.3f}" for v in r["val_curve"])
        print(
            f"{kind}: validation force RMSE per epoch (eV/A) {curve}; inference {r['infer_frames_cpu_s']:.1f} "
            f"frames per CPU second ({r['infer_passes']} passes); pair cap per batch {r['max_pairs']}"
        )
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
