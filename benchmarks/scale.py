"""Scale: cost of the batched ensemble (energies, forces, deviation) with atoms and replicas, and
the paper-size check: 100 replicas of the 500-site Cu-Ni multilayer (cutoff 6 A, 128 features,
2 interactions, 50 RBF, 4 members) evaluated and relaxed without running out of memory.
Memory is bounded by ``Ensemble.max_pairs`` (neighbour pairs per collated batch): batches are
sized automatically from the pair count of each frame.

    .venv/bin/python benchmarks/scale.py [--replicas 100] [--sizes 2 3 4 5] [--relax-steps 5] [--device auto]

Prints one line per (atoms, replicas) with seconds per evaluation, atoms x evaluations per second
and peak memory, then the paper-size line last.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np
import torch


def peak_rss_gib() -> float:
    """High-water resident memory of this process (GiB; Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def replicas(size: int, n: int, seed: int = 0):
    from al_flows.structures.multilayer import cuni_multilayer

    base = cuni_multilayer((size, size, size), a=3.58)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = base.copy()
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        out.append(a)
    return out


def main() -> int:
    from al_flows.potential.ensemble import Ensemble
    from al_flows.potential.model import ModelSettings, build_member

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, default=100)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2, 3, 4, 5])
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--relax-steps", type=int, default=5)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    settings = ModelSettings(n_atom_basis=128, n_interactions=2, n_rbf=50, cutoff=6.0)
    members = [build_member(settings, ["Cu", "Ni"], seed=s) for s in range(args.members)]
    ens = Ensemble(members, settings, device=device)
    print(
        f"device {device}; {args.members} members, SchNet 128 features, cutoff 6 A; max_pairs per batch {ens.max_pairs}"
    )
    print(f"{'atoms':>6} {'replicas':>8} {'s/eval':>8} {'atoms*evals/s':>14} {'peak RSS GiB':>12}")
    for size in args.sizes:
        for n in sorted({1, 10, args.replicas}):
            frames = replicas(size, n)
            ens.predict(frames[:1])  # warm-up
            t = time.perf_counter()
            pred = ens.predict(frames)
            dt = time.perf_counter() - t
            assert np.isfinite(pred.deviation).all()
            print(
                f"{len(frames[0]):>6} {n:>8} {dt:>8.2f} {len(frames[0]) * n / dt:>14.0f} {peak_rss_gib():>12.2f}",
                flush=True,
            )
    from al_flows.exploration.batched_relax import relax_batched

    frames = replicas(5, args.replicas)
    t = time.perf_counter()
    relaxed_steps = args.relax_steps
    if relaxed_steps:  # fmax below reach: every replica takes all the steps
        result = relax_batched(frames, ens, fmax=1e-6, max_steps=relaxed_steps, optimizer="FIRE")
        assert len(result) == len(frames)
        del result
    else:
        ens.predict(frames)
    dt = time.perf_counter() - t
    mem = peak_rss_gib()
    if device == "cuda":
        mem_gpu = torch.cuda.max_memory_allocated() / 1024**3
        print(f"peak CUDA memory {mem_gpu:.2f} GiB")
    print(
        f"paper size: {args.replicas} replicas x 500 atoms, {relaxed_steps} batched relaxation steps in {dt:.1f} s; "
        f"peak RSS {mem:.2f} GiB (limit 24 GiB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
