"""Benchmark: common neighbour analysis (CNA) of rattled fcc Cu, al_flows' vectorised CNA vs a plain Python loop.

Structure: ``--repeat`` (5) x ``--repeat`` x ``--repeat`` cubic fcc Cu cells (a = 3.6 A; 5: 500 atoms),
rattled by ``--rattle`` (0.02 A, seed 2), optionally with ``--vacancies`` (0) atoms removed (seeded) so
that not every atom is fcc.

Candidate "al_flows": ``al_flows.structures.analysis.common_neighbour_analysis(atoms)``: one matscipy
neighbour list (vectors), then all atoms of one coordination at once in numpy blocks (common
neighbours, bonds among them and the longest chain by transitive closure as array products).

Baseline "loop": the textbook CNA written out in pure Python on the same matscipy neighbour vectors
and the same cutoff: for each atom, for each neighbour, the common neighbours by a distance test,
the bonds among them by pair loops, the longest chain (bonds of the largest connected cluster of
that bond graph) by depth-first search, then the same fcc/hcp/bcc signatures. This is what the
vectorised code replaces; it is not OVITO (not installed here), whose C++ CNA would be faster than
both. The labels of both are asserted equal.

Each is timed as the best of ``--runs`` (5) calls after one warm-up call; the ratio is loop / al_flows
(how many times faster the vectorised code is) on the same machine in the same process.

    .venv/bin/python benchmarks/cna.py [--repeat 5] [--vacancies 0] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np


def loop_cna(atoms, cutoff: float) -> np.ndarray:
    """Pure-Python CNA with the signatures of al_flows.structures.analysis (12 neighbours: fcc all
    (4,2,1), hcp 6 x (4,2,1) + 6 x (4,2,2); 14 neighbours: bcc 8 x (6,6,6) + 6 x (4,4,4))."""
    from matscipy.neighbours import neighbour_list

    i, vec = neighbour_list("iD", atoms, cutoff)
    neighbours: list[list[tuple[float, float, float]]] = [[] for _ in range(len(atoms))]
    for centre, v in zip(i.tolist(), vec.tolist(), strict=True):
        neighbours[centre].append(tuple(v))
    cut2 = cutoff * cutoff
    labels = []
    for vs in neighbours:
        n = len(vs)
        if n not in (12, 14):
            labels.append("other")
            continue
        bonded = [
            [a != b and sum((p - q) ** 2 for p, q in zip(vs[a], vs[b], strict=True)) < cut2 for b in range(n)]
            for a in range(n)
        ]
        sigs = []
        for a in range(n):
            common = [b for b in range(n) if bonded[a][b]]
            bonds = [(b, c) for x, b in enumerate(common) for c in common[x + 1 :] if bonded[b][c]]
            chain, seen = 0, set()
            for start in common:  # bonds of each connected cluster of the common-neighbour bond graph
                if start in seen:
                    continue
                cluster, stack = {start}, [start]
                while stack:
                    b = stack.pop()
                    for c in common:
                        if bonded[b][c] and c not in cluster:
                            cluster.add(c)
                            stack.append(c)
                seen |= cluster
                chain = max(chain, sum(1 for b, c in bonds if b in cluster))
            sigs.append((len(common), len(bonds), chain))
        if n == 12 and sigs.count((4, 2, 1)) == 12:
            labels.append("fcc")
        elif n == 12 and sigs.count((4, 2, 1)) == 6 and sigs.count((4, 2, 2)) == 6:
            labels.append("hcp")
        elif n == 14 and sigs.count((6, 6, 6)) == 8 and sigs.count((4, 4, 4)) == 6:
            labels.append("bcc")
        else:
            labels.append("other")
    return np.array(labels)


def best_time(fn, runs: int) -> tuple[float, object]:
    out = fn()  # warm-up
    best = math.inf
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="fcc cubic cells per direction (4 atoms each)")
    ap.add_argument("--rattle", type=float, default=0.02, help="Angstrom")
    ap.add_argument("--vacancies", type=int, default=0, help="atoms removed (seeded)")
    ap.add_argument("--runs", type=int, default=5, help="timed calls (best of)")
    args = ap.parse_args()

    from ase.build import bulk

    from al_flows.structures.analysis import _nn_cutoff, common_neighbour_analysis

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(args.repeat)
    atoms.rattle(args.rattle, seed=2)
    if args.vacancies:
        del atoms[sorted(np.random.default_rng(0).choice(len(atoms), args.vacancies, replace=False).tolist())]
    cutoff = _nn_cutoff(atoms)
    t_vec, labels = best_time(lambda: common_neighbour_analysis(atoms, cutoff=cutoff), args.runs)
    t_loop, ref = best_time(lambda: loop_cna(atoms, cutoff), args.runs)
    assert (labels == ref).all(), "al_flows and the loop CNA disagree"
    counts = {k: int(v) for k, v in zip(*np.unique(labels, return_counts=True), strict=True)}
    print(
        json.dumps(
            {
                "n_atoms": len(atoms),
                "cutoff_A": round(cutoff, 4),
                "labels": counts,
                "runs": args.runs,
                "al_flows_s": round(t_vec, 5),
                "loop_s": round(t_loop, 5),
                "speedup_loop_over_al_flows": round(t_loop / t_vec, 2),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
