"""Benchmark: training epoch time of al_flows' Trainer vs schnetpack's own AtomisticTask + Lightning.

Same data, split, model and loss on both sides:

* data: ``--frames`` (200) 32-atom Cu-Ni (001) multilayers (``cuni_multilayer((2, 2, 2))``), each cell
  strained (random 2 % strain) and rattled (0.1 A), labelled with ASE's EMT; seeded; one 90/10
  train/validation split (``al_flows.potential.training_data.split_indices``) used by both sides.
* model: SchNet, 64 features, 2 interactions, 20 Gaussian RBF, cosine cutoff 5 A, atomwise energy,
  forces by autograd; both start from the same initial weights (al_flows' member for ``--seed``,
  copied into the stock model); al_flows' ``SymmetricSchNet`` gives schnetpack SchNet's numbers.
* loss per batch: rho * MSE(E) + 3 * MSE(F components) with rho = 0.01 (al_flows' loss,
  rho (E - E^)^2 + (1/N) sum_i |F_i - F^_i|^2 for same-size structures); Adam, lr 1e-3, batch 16,
  no learning-rate decay within the run; every epoch validates on the validation frames.

Baseline "stock": schnetpack 2.1.1 as its tutorials use it: ``ASEAtomsData`` written to a temporary
database, ``AtomsDataModule`` (num_workers=0) with the transforms ``ASENeighborList(cutoff=5)`` (the
tutorials' neighbour list; ``--neighbour-list matscipy`` for ``MatScipyNeighborList``),
``RemoveOffsets("energy", remove_mean=True)`` and ``CastTo32()``; ``NeuralNetworkPotential`` with
``PairwiseDistances``, ``Atomwise``, ``Forces`` and the ``CastTo64``/``AddOffsets`` postprocessors;
``spk.task.AtomisticTask`` with one ``ModelOutput`` each for energy and forces (MSE loss, MAE metric
(forces also RMSE, for the per-epoch validation curve), loss weights 0.01 and 3) and
``torch.optim.Adam``; ``pytorch_lightning.Trainer(max_epochs=N, logger=False,
enable_checkpointing=False, enable_progress_bar=False, inference_mode=False)``
(``inference_mode=False`` as schnetpack's own trainer config: validation needs forces by autograd).

Candidate "al_flows": ``al_flows.potential.training.Trainer`` (neighbour lists once per frame, matscipy,
cached), ``fit_reference`` then ``run_epochs(train, val, 1)`` per epoch.

A third run, "al_flows energy scale 1", trains al_flows' member with its energy scale (the RMS
training force, about 1.3 eV/A here, a deliberate al_flows model choice) set to 1, i.e. with the
stock model's output scaling: it separates the trainer from that model choice in the accuracy
comparison (reported, not timed into the ratio).

Each side runs in its own process (so that peak memory is its own): steady-state epoch time is the
median over epochs 2..N (the first is skipped), from one epoch start to the next, validation
included (and the process CPU time of the same epochs, steadier on a shared machine). Reported:
epoch time, training throughput (atoms x optimiser steps per second = training atoms per epoch /
epoch time), peak memory (process maximum RSS; also CUDA max_memory_allocated on GPU) and the
validation force RMSE (eV/A per component, final weights) after the same epochs, and for the
al_flows side the share of the wall time of epochs 2..N inside the model's forward (forces by autograd
included) and the loss's backward (benchmarks/model_time.py; the rest: optimiser steps, collation, Python).
Runs on CUDA when present (``--device auto``), else on the CPU with torch's default threads.

    .venv/bin/python benchmarks/train.py [--frames 200] [--epochs 8] [--device auto] [--neighbour-list ase]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CUTOFF, N_FEATURES, N_INTERACTIONS, N_RBF = 5.0, 64, 2, 20
BATCH, LR, RHO, VAL_FRACTION = 16, 1e-3, 0.01, 0.1


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def make_frames(n: int, seed: int):
    """``n`` strained and rattled 32-atom Cu-Ni multilayers labelled with EMT (energy eV, forces eV/A)."""
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    from al_flows.structures.multilayer import cuni_multilayer

    rng = np.random.default_rng(seed)
    base = cuni_multilayer((2, 2, 2))
    frames = []
    for k in range(n):
        atoms = base.copy()
        strain = np.eye(3) + rng.normal(0.0, 0.02, (3, 3))
        atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        atoms.rattle(0.1, seed=int(rng.integers(2**31)))
        atoms.calc = EMT()
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
        atoms.info["frame_id"] = f"f{k:04d}"
        frames.append(atoms)
    return frames


def model_settings():
    from al_flows.potential.model import ModelSettings

    return ModelSettings(n_atom_basis=N_FEATURES, n_interactions=N_INTERACTIONS, n_rbf=N_RBF, cutoff=CUTOFF)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def run_al_flows(args, frames, train_idx, val_idx, zs) -> dict:
    import torch

    from al_flows.potential.model import TrainingSettings, energy_reference
    from al_flows.potential.training import Trainer

    training = TrainingSettings(
        epochs=args.epochs,
        batch_size=BATCH,
        lr=LR,
        rho=RHO,
        lr_patience=10**6,
        val_fraction=VAL_FRACTION,
        device=args.device,
        amp=args.amp,
    )
    t0 = time.perf_counter()
    trainer = Trainer(frames, model_settings(), training, seed=args.seed, elements=zs)
    trainer.fit_reference(train_idx)
    if args.side == "al_flows_unit_scale":  # the stock model's output scaling (energy = sum of atomwise outputs)
        energy_reference(trainer.module).scale.fill_(1.0)
    _sync(args.device)
    setup_s = time.perf_counter() - t0
    from model_time import ModelTimer, PhaseTimer

    import al_flows.potential.training_data as data_module

    phases = {  # what is not the model: where the rest of the epoch goes
        "batch collation": [(data_module, "collate_inputs")],
        "Adam steps": [(torch.optim.Adam, "step")],
    }
    times, cpu_times, curve, model_s = [], [], [], []
    phase_s = {name: 0.0 for name in phases}
    for epoch in range(args.epochs):
        t, c = time.perf_counter(), time.process_time()
        with ModelTimer([trainer.module], args.device) as timer, PhaseTimer(phases) as phase_timer:
            row = trainer.run_epochs(train_idx, val_idx, 1)[0]
            _sync(args.device)
        times.append(time.perf_counter() - t)
        cpu_times.append(time.process_time() - c)
        model_s.append(timer.seconds)
        if epoch:  # epochs 2..N, as the share
            phase_s = {name: phase_s[name] + s for name, s in phase_timer.seconds.items()}
        curve.append(row["val_force_rmse"])
    final = trainer.errors(val_idx).summary()
    out = {
        "epoch_times": times,
        "epoch_cpu_times": cpu_times,
        "setup_s": setup_s,
        "model_share": sum(model_s[1:]) / sum(times[1:]),
        "phase_shares": {name: sec / sum(times[1:]) for name, sec in phase_s.items()},
        "val_force_rmse": final["force_rmse"],
        "curve": curve,
    }
    out["steps_per_epoch"] = trainer.steps_per_epoch(len(train_idx))
    out["amp"] = str(trainer.amp_dtype) if trainer.amp_dtype else "off"
    if args.device.startswith("cuda"):
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run_stock(args, frames, train_idx, val_idx, zs, workdir: Path) -> dict:
    import pytorch_lightning as pl
    import schnetpack as spk
    import schnetpack.transform as trn
    import torch
    import torchmetrics
    from schnetpack.data import ASEAtomsData, AtomsDataModule

    from al_flows.potential.model import build_member

    t0 = time.perf_counter()
    db = workdir / "stock.db"
    if db.exists():
        db.unlink()
    dataset = ASEAtomsData.create(str(db), distance_unit="Ang", property_unit_dict={"energy": "eV", "forces": "eV/Ang"})
    dataset.add_systems(
        [{"energy": np.array([a.get_potential_energy()]), "forces": a.get_forces()} for a in frames], frames
    )
    split = workdir / "split.npz"
    np.savez(split, train_idx=np.asarray(train_idx), val_idx=np.asarray(val_idx), test_idx=np.zeros(0, dtype=int))
    nl = trn.ASENeighborList(cutoff=CUTOFF) if args.neighbour_list == "ase" else trn.MatScipyNeighborList(cutoff=CUTOFF)
    dm = AtomsDataModule(
        str(db),
        batch_size=BATCH,
        num_train=len(train_idx),
        num_val=len(val_idx),
        split_file=str(split),
        transforms=[nl, trn.RemoveOffsets("energy", remove_mean=True), trn.CastTo32()],
        num_workers=0,
        pin_memory=args.device.startswith("cuda"),
    )
    dm.prepare_data()
    dm.setup()

    torch.manual_seed(args.seed)
    schnet = spk.representation.SchNet(
        n_atom_basis=N_FEATURES,
        n_interactions=N_INTERACTIONS,
        radial_basis=spk.nn.GaussianRBF(n_rbf=N_RBF, cutoff=CUTOFF),
        cutoff_fn=spk.nn.CosineCutoff(CUTOFF),
    )
    model = spk.model.NeuralNetworkPotential(
        representation=schnet,
        input_modules=[spk.atomistic.PairwiseDistances()],
        output_modules=[
            spk.atomistic.Atomwise(n_in=N_FEATURES, output_key="energy"),
            spk.atomistic.Forces(energy_key="energy", force_key="forces"),
        ],
        postprocessors=[trn.CastTo64(), trn.AddOffsets("energy", add_mean=True)],
    )
    # same initial weights as al_flows' member (same parameter names: both are schnetpack modules)
    mine = build_member(model_settings(), zs, args.seed).state_dict()
    theirs = model.state_dict()
    copied = {k: v for k, v in mine.items() if k in theirs and theirs[k].shape == v.shape}
    n_params = sum(1 for k, _ in model.named_parameters())
    assert sum(1 for k, _ in model.named_parameters() if k in copied) == n_params, "initial weights not copied"
    model.load_state_dict(copied, strict=False)

    outputs = [
        spk.task.ModelOutput(
            name="energy",
            loss_fn=torch.nn.MSELoss(),
            loss_weight=RHO,
            metrics={"MAE": torchmetrics.MeanAbsoluteError()},
        ),
        spk.task.ModelOutput(
            name="forces",
            loss_fn=torch.nn.MSELoss(),
            loss_weight=3.0,
            metrics={"MAE": torchmetrics.MeanAbsoluteError(), "RMSE": torchmetrics.MeanSquaredError(squared=False)},
        ),
    ]
    task = spk.task.AtomisticTask(
        model=model, outputs=outputs, optimizer_cls=torch.optim.Adam, optimizer_args={"lr": LR}
    )

    stamps: list[float] = []
    cpu_stamps: list[float] = []
    curve: list[float] = []

    class EpochTimer(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            _sync(args.device)
            stamps.append(time.perf_counter())
            cpu_stamps.append(time.process_time())

        def on_validation_epoch_end(self, trainer, pl_module):
            value = trainer.callback_metrics.get("val_forces_RMSE")
            curve.append(float(value) if value is not None else float("nan"))

        def on_fit_end(self, trainer, pl_module):
            _sync(args.device)
            stamps.append(time.perf_counter())
            cpu_stamps.append(time.process_time())

    pl_trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator="gpu" if args.device.startswith("cuda") else "cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        inference_mode=False,
        callbacks=[EpochTimer()],
    )
    setup_s = time.perf_counter() - t0
    pl_trainer.fit(task, datamodule=dm)
    times = [b - a for a, b in itertools.pairwise(stamps)]
    cpu_times = [b - a for a, b in itertools.pairwise(cpu_stamps)]

    # final validation force RMSE, same frames, final weights
    device = torch.device(args.device)
    task.to(device).eval()
    sq, n = 0.0, 0
    for batch in dm.val_dataloader():
        batch = {k: v.to(device) for k, v in batch.items()}
        f_true = batch["forces"]
        with torch.enable_grad():
            pred = task.predict_without_postprocessing(batch)
        sq += float(((pred["forces"].detach().double() - f_true.double()) ** 2).sum())
        n += f_true.numel()
    out = {
        "epoch_times": times,
        "epoch_cpu_times": cpu_times,
        "setup_s": setup_s,
        "val_force_rmse": float(np.sqrt(sq / n)),
        "curve": curve,
        "steps_per_epoch": len(dm.train_dataloader()),
        "neighbour_list": type(nl).__name__,
    }
    if args.device.startswith("cuda"):
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def child(args) -> None:
    import torch
    from ase.io import read

    # isort: off
    import al_flows  # noqa: F401  (schnetpack/torch compatibility patch, before schnetpack)
    import pytorch_lightning  # noqa: F401
    import schnetpack  # noqa: F401

    # isort: on

    workdir = Path(args.workdir)
    os.chdir(workdir)  # schnetpack writes a splitting.lock into the working directory
    import_rss = _rss_mb()
    frames = read(workdir / "frames.extxyz", index=":")
    split = np.load(workdir / "indices.npz")
    train_idx, val_idx = split["train_idx"], split["val_idx"]
    zs = sorted({int(z) for a in frames for z in a.numbers})
    if args.side.startswith("al_flows"):
        out = run_al_flows(args, frames, train_idx, val_idx, zs)
    else:
        out = run_stock(args, frames, train_idx, val_idx, zs, workdir)
    out.update(import_rss_mb=import_rss, peak_rss_mb=_peak_rss_mb(), threads=torch.get_num_threads())
    (workdir / f"result_{args.side}.json").write_text(json.dumps(out))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=8, help="epochs on both sides (>= 2; the first is not timed)")
    ap.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda")
    ap.add_argument("--neighbour-list", choices=("ase", "matscipy"), default="ase", help="stock side's transform")
    ap.add_argument("--amp", action="store_true", help="al_flows side with TrainingSettings.amp (CUDA only)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--side", choices=("stock", "al_flows", "al_flows_unit_scale"), help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.epochs < 2:
        ap.error("--epochs must be >= 2 (the first epoch is not timed)")
    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.side:
        child(args)
        return 0

    from ase.io import write

    import al_flows  # noqa: F401
    from al_flows.potential.training_data import split_indices

    with tempfile.TemporaryDirectory(prefix="al_train_bench_") as tmp:
        workdir = Path(tmp)
        t = time.perf_counter()
        frames = make_frames(args.frames, args.seed)
        write(workdir / "frames.extxyz", frames)
        train_idx, val_idx = split_indices(len(frames), VAL_FRACTION, np.random.default_rng(args.seed))
        np.savez(workdir / "indices.npz", train_idx=train_idx, val_idx=val_idx)
        n_atoms = sum(len(frames[k]) for k in train_idx)
        print(
            f"data: {len(frames)} EMT-labelled {len(frames[0])}-atom Cu-Ni frames ({len(train_idx)} train / "
            f"{len(val_idx)} val, {time.perf_counter() - t:.1f} s); SchNet {N_FEATURES} features, {N_INTERACTIONS} "
            f"interactions, {N_RBF} RBF, cutoff {CUTOFF} A; batch {BATCH}, Adam lr {LR}, rho {RHO}; "
            f"{args.epochs} epochs; device {args.device}",
            flush=True,
        )
        results = {}
        for side in ("stock", "al_flows", "al_flows_unit_scale"):
            cmd = [sys.executable, str(Path(__file__).resolve()), "--side", side, "--workdir", str(workdir)]
            cmd += ["--epochs", str(args.epochs), "--device", args.device, "--seed", str(args.seed)]
            cmd += ["--neighbour-list", args.neighbour_list] + (["--amp"] if args.amp else [])
            t = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode:
                sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
                raise SystemExit(f"{side} side failed (exit {proc.returncode})")
            r = json.loads((workdir / f"result_{side}.json").read_text())
            r["wall_s"] = time.perf_counter() - t
            r["epoch_s"] = statistics.median(r["epoch_times"][1:])
            r["epoch_cpu_s"] = statistics.median(r["epoch_cpu_times"][1:])
            r["atoms_steps_per_s"] = n_atoms / r["epoch_s"]
            results[side] = r
            label = {
                "stock": f"stock schnetpack (AtomisticTask + Lightning, {r.get('neighbour_list')})",
                "al_flows": f"al_flows Trainer (amp {r.get('amp')})",
                "al_flows_unit_scale": "al_flows Trainer, energy scale 1 (accuracy check only)",
            }[side]
            cuda = f", CUDA peak {r['cuda_peak_mb']:.0f} MB" if "cuda_peak_mb" in r else ""
            if "model_share" in r:
                cuda += f"; model forward+backward {100 * r['model_share']:.0f} % of epoch wall time (profiled)"
            if "phase_shares" in r:
                from model_time import breakdown_text

                cuda += f" (of the epoch: {breakdown_text(1.0, r['model_share'], r['phase_shares'])})"
            print(
                f"{label}: epoch {r['epoch_s']:.3f} s (median of epochs 2..{args.epochs}; first "
                f"{r['epoch_times'][0]:.3f} s; {r['steps_per_epoch']} steps; process CPU time {r['epoch_cpu_s']:.3f} "
                f"s), {r['atoms_steps_per_s']:.0f} atoms x "
                f"steps/s; setup {r['setup_s']:.1f} s; peak RSS {r['peak_rss_mb']:.0f} MB "
                f"(after imports {r['import_rss_mb']:.0f} MB){cuda}; {r['threads']} torch threads; "
                f"process {r['wall_s']:.0f} s",
                flush=True,
            )
        s, a, u = results["stock"], results["al_flows"], results["al_flows_unit_scale"]
        print(
            f"validation force RMSE after {args.epochs} epochs (eV/A, final weights, same {len(val_idx)} frames): "
            f"stock {s['val_force_rmse']:.4f}, al_flows {a['val_force_rmse']:.4f} "
            f"(al_flows/stock = {a['val_force_rmse'] / s['val_force_rmse']:.2f}), al_flows with energy scale 1 "
            f"{u['val_force_rmse']:.4f} (/stock = {u['val_force_rmse'] / s['val_force_rmse']:.2f})"
        )
        for name, r in (("stock", s), ("al_flows", a), ("al_flows energy scale 1", u)):
            print(f"{name} validation force RMSE per epoch: {', '.join(f'{v:.4f}' for v in r['curve'])}")
        if args.device == "cpu":
            print(
                f"process CPU time per epoch, stock/al_flows = {s['epoch_cpu_s'] / a['epoch_cpu_s']:.1f}x "
                "(less sensitive than wall time to other load on the machine)"
            )
        print(f"speedup stock/al_flows = {s['epoch_s'] / a['epoch_s']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
