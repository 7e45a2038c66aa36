"""Benchmark: ensemble model deviation over N frames, al_flows' batched Ensemble.predict vs a member-by-member loop.

Frames: ``--frames`` (200) strained and rattled 32-atom Cu-Ni (001) multilayers (as benchmarks/train.py).
Ensemble: ``--members`` (4) SchNet members (64 features, 2 interactions, 20 RBF, cutoff 5 A; seeds
0..M-1, untrained weights: the cost does not depend on the weights; energy scale 1).
Deviation: max over atoms of the members' force spread (``al_flows.potential.deviation.max_force_deviation``).

Baseline "stock": what an ensemble of schnetpack ASE calculators does: one
``schnetpack.interfaces.SpkCalculator`` per member (each member's weights in schnetpack's own
``NeuralNetworkPotential(SchNet, Atomwise, Forces)``, saved with ``torch.save`` and loaded by
schnetpack's ``load_model``; ``ASENeighborList(cutoff=5)``, energy_unit eV, float32), and for each
member, for each frame, ``calc.calculate(atoms)``: schnetpack's ``AtomsConverter`` builds that
frame's neighbour list and inputs, then one forward of that member on that single frame. Deviations
are computed from the collected forces.

Candidate "al_flows": ``Ensemble.predict(frames)``: one matscipy neighbour list per frame shared by all
members, frames collated into batches of 64, one forward per member per batch.

Also shown (not the ratio): "al_flows per frame": ``Ensemble.predict(frames, batch_size=1)`` (shared
neighbour list, no batching over frames), to separate batching from the neighbour-list work.

The deviations of both paths are asserted equal (float32 sums in another order: |diff| < 1e-4 eV/A
and relative 1e-3). Each path runs in its own process, best of ``--repeats`` timed calls after one
warm-up call; peak memory = process maximum RSS (and CUDA max_memory_allocated on GPU);
throughput = atoms x members per second. Runs on CUDA when present (``--device auto``).

    .venv/bin/python benchmarks/deviation.py [--frames 200] [--members 4] [--device auto]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CUTOFF, N_FEATURES, N_INTERACTIONS, N_RBF = 5.0, 64, 2, 20


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_frames(n: int, seed: int):
    from al_flows.structures.multilayer import cuni_multilayer

    rng = np.random.default_rng(seed)
    base = cuni_multilayer((2, 2, 2))
    frames = []
    for _ in range(n):
        atoms = base.copy()
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + rng.normal(0.0, 0.02, (3, 3))), scale_atoms=True)
        atoms.rattle(0.1, seed=int(rng.integers(2**31)))
        frames.append(atoms)
    return frames


def make_members(n: int, zs: list[int]):
    import torch

    from al_flows.potential.model import ModelSettings, build_member, energy_reference

    settings = ModelSettings(n_atom_basis=N_FEATURES, n_interactions=N_INTERACTIONS, n_rbf=N_RBF, cutoff=CUTOFF)
    members = []
    for seed in range(n):
        member = build_member(settings, zs, seed)
        ref = energy_reference(member)
        ref.atomref[torch.tensor(zs)] = torch.tensor([-3.5, -4.8][: len(zs)], dtype=torch.float64)
        members.append(member)  # energy scale 1: forces are -d(sum of atomwise outputs)/dR, as stock
    return members, settings


def stock_model(member):
    """schnetpack's own NeuralNetworkPotential (SchNet, Atomwise, Forces) with ``member``'s weights."""
    import schnetpack as spk

    model = spk.model.NeuralNetworkPotential(
        representation=spk.representation.SchNet(
            n_atom_basis=N_FEATURES,
            n_interactions=N_INTERACTIONS,
            radial_basis=spk.nn.GaussianRBF(n_rbf=N_RBF, cutoff=CUTOFF),
            cutoff_fn=spk.nn.CosineCutoff(CUTOFF),
        ),
        input_modules=[spk.atomistic.PairwiseDistances()],
        output_modules=[
            spk.atomistic.Atomwise(n_in=N_FEATURES, output_key="energy"),
            spk.atomistic.Forces(energy_key="energy", force_key="forces"),
        ],
    )
    theirs = model.state_dict()
    copied = {k: v for k, v in member.state_dict().items() if k in theirs and theirs[k].shape == v.shape}
    assert all(k in copied for k, _ in model.named_parameters()), "weights not copied"
    model.load_state_dict(copied, strict=False)
    return model.eval()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def child(args) -> None:
    import torch
    from ase.io import read

    # isort: off
    import al_flows  # noqa: F401  (schnetpack/torch compatibility patch, before schnetpack)
    import schnetpack as spk

    # isort: on
    from al_flows.potential.deviation import max_force_deviation
    from al_flows.potential.ensemble import Ensemble

    workdir = Path(args.workdir)
    import_rss = _rss_mb()
    frames = read(workdir / "frames.extxyz", index=":")
    zs = sorted({int(z) for a in frames for z in a.numbers})
    members, settings = make_members(args.members, zs)

    if args.side == "stock":
        # schnetpack's load_model is a plain torch.load of a pickled module (our own files here);
        # torch >= 2.6 defaults to weights_only=True, which refuses whole modules
        os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
        calcs = []
        for m, member in enumerate(members):
            path = workdir / f"member{m}.pt"
            torch.save(stock_model(member), path)
            calcs.append(
                spk.interfaces.SpkCalculator(
                    model_file=str(path),
                    neighbor_list=spk.transform.ASENeighborList(cutoff=CUTOFF),
                    energy_key="energy",
                    force_key="forces",
                    energy_unit="eV",
                    position_unit="Ang",
                    device=args.device,
                    dtype=torch.float32,
                )
            )

        def run():
            forces = np.zeros((len(frames), len(calcs), len(frames[0]), 3))
            for m, calc in enumerate(calcs):
                calc.reset()  # no result carried over from an earlier call
                for k, atoms in enumerate(frames):
                    calc.calculate(atoms, properties=["energy", "forces"])
                    forces[k, m] = calc.results["forces"]
            _sync(args.device)
            return [max_force_deviation(f) for f in forces]
    else:
        ensemble = Ensemble(members, settings, device=args.device)
        batch_size = 1 if args.side == "al_flows_per_frame" else 64

        def run():
            pred = ensemble.predict(frames, batch_size=batch_size)
            _sync(args.device)
            return pred.deviation.tolist()

    run()  # warm-up
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        deviation = run()
        times.append(time.perf_counter() - t)
    out = {
        "seconds": min(times),
        "times": times,
        "deviation": deviation,
        "import_rss_mb": import_rss,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
    }
    if args.device.startswith("cuda"):
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    (workdir / f"result_{args.side}.json").write_text(json.dumps(out))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--side", choices=("stock", "al_flows", "al_flows_per_frame"), help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.side:
        child(args)
        return 0

    from ase.io import write

    import al_flows  # noqa: F401

    with tempfile.TemporaryDirectory(prefix="al_dev_bench_") as tmp:
        workdir = Path(tmp)
        frames = make_frames(args.frames, args.seed)
        write(workdir / "frames.extxyz", frames)
        n_atoms = sum(len(a) for a in frames)
        print(
            f"{len(frames)} frames of {len(frames[0])} atoms, {args.members} SchNet members ({N_FEATURES} features, "
            f"{N_INTERACTIONS} interactions, {N_RBF} RBF, cutoff {CUTOFF} A); device {args.device}; "
            f"best of {args.repeats} after a warm-up",
            flush=True,
        )
        labels = {
            "stock": "stock: SpkCalculator per member (ASENeighborList), member by member, frame by frame",
            "al_flows_per_frame": "al_flows Ensemble.predict(batch_size=1) (shared matscipy list, no batching)",
            "al_flows": "al_flows Ensemble.predict (batched, 64 frames, shared matscipy list)",
        }
        results = {}
        for side, label in labels.items():
            cmd = [sys.executable, str(Path(__file__).resolve()), "--side", side, "--workdir", str(workdir)]
            cmd += ["--members", str(args.members), "--repeats", str(args.repeats), "--device", args.device]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode:
                sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
                raise SystemExit(f"{side} side failed (exit {proc.returncode})")
            r = json.loads((workdir / f"result_{side}.json").read_text())
            results[side] = r
            cuda = f", CUDA peak {r['cuda_peak_mb']:.0f} MB" if "cuda_peak_mb" in r else ""
            print(
                f"{label}: {r['seconds']:.3f} s ({1e3 * r['seconds'] / len(frames):.2f} ms/frame), "
                f"{n_atoms * args.members / r['seconds']:.0f} atoms x members/s; peak RSS {r['peak_rss_mb']:.0f} MB "
                f"(after imports {r['import_rss_mb']:.0f} MB){cuda}; {r['threads']} torch threads",
                flush=True,
            )
        stock = np.array(results["stock"]["deviation"])
        for side in ("al_flows", "al_flows_per_frame"):
            mine = np.array(results[side]["deviation"])
            diff = np.abs(mine - stock)
            assert np.all(diff <= 1e-4 + 1e-3 * np.abs(stock)), f"{side}: deviations differ by up to {diff.max():.2e}"
        print(
            "deviations equal: max |al_flows - stock| = "
            f"{np.abs(np.array(results['al_flows']['deviation']) - stock).max():.1e} eV/A "
            f"(deviation range {stock.min():.4f}..{stock.max():.4f} eV/A)"
        )
        ratio = results["stock"]["seconds"] / results["al_flows"]["seconds"]
        print(f"speedup stock/al_flows (member-by-member SpkCalculator loop / batched Ensemble.predict) = {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
