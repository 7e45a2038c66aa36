"""Does a cell's chance to stop the ANI-Al sampler grow with its size? The method's rho and the intensive measure.

The ANI-Al sampler (Smith et al.; docs/methods.md) stops a trajectory when the ensemble's
disagreement reaches a threshold. Two measures (eV) are compared on aluminium cells of 8 to 128
atoms, with the ensembles a campaign trained (``--workdir``, ``--rounds``):

- ``energy_spread``, the method's rho = sigma_E / sqrt(N) (``stop_measure: energy_spread``);
- ``energy_spread_intensive``, the spread of the members' per-atom energies once each member's mean
  per-atom energy is removed (``stop_measure: energy_spread_intensive``, the default);

and, for reference, sigma_E / N, the spread of the members' mean energy per atom (the offset part
that the intensive measure removes). Thresholds: the explorer's defaults (``ScheduleSettings``).

Static part: per size N, ``--cells`` random cubic cells of exactly N atoms (target density uniform in
the sampler's 1.80-4.05 g/cm^3, minimum distance 1.8 A) and as many fcc supercells (lattice constant
uniform in 3.9-4.2 A, every atom displaced by a normal of 0.05-0.25 A per component): the median of
each measure and the fraction of cells at or over each threshold (the cells that would stop at once).

Sampler part (``--runs`` > 0): per size, ``--runs`` trajectories from random cells of N atoms with the
campaign's langevin_schedule settings (temperature schedule drawn per trajectory, t_max = ``--t-ps``),
every step recorded and none stopped; the stop fraction of each rule is the fraction of
trajectories whose measure reaches its threshold within ``--t-ps``, from the same trajectories.

    .venv/bin/python benchmarks/ani_stop_size.py WORKDIR --rounds 0 2 --out docs/results/ani_stop_size

WORKDIR is a finished run of flows/al_random_cells_emt.yaml (docs/results.md says which); the
numbers are in docs/results.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

MEASURES = ("energy_spread", "energy_spread_intensive", "offset_per_atom")
FCC_REPEATS = {8: (2, 1, 1), 16: (2, 2, 1), 32: (2, 2, 2), 64: (4, 2, 2), 128: (4, 4, 2), 256: (4, 4, 4)}


def campaign_ensemble(workdir: Path, round_: int):
    """(campaign settings, the ensemble of round ``round_``) of the campaign in ``workdir``."""
    from al_flows.campaign.config import validate_campaign
    from al_flows.campaign.record import CampaignRecord
    from al_flows.campaign.stores import make_job_store
    from al_flows.potential.ensemble import Ensemble

    config = validate_campaign(json.loads((workdir / "campaign.json").read_text()))
    store = make_job_store(config.store, workdir)
    store.connect()
    try:
        _, blobs = CampaignRecord(store, config.name).ensemble_blobs(round_)
    finally:
        store.close()
    return config, Ensemble.from_bytes(blobs)


def random_cells_of(n_atoms: int, count: int, seed: int) -> list:
    """``count`` random cubic Al cells of exactly ``n_atoms`` atoms, target density uniform in
    1.80-4.05 g/cm^3, no two atoms closer than 1.8 A (``al_flows.structures.generators.random_cells``)."""
    from ase.data import atomic_masses, atomic_numbers

    from al_flows.structures.generators import AMU_PER_A3, RandomCellSettings, random_cells

    mass = float(atomic_masses[atomic_numbers["Al"]])
    rng = np.random.default_rng((seed, n_atoms))
    out = []
    for k in range(count):
        density = float(rng.uniform(1.80, 4.05))
        edge = float((n_atoms * mass / (density * AMU_PER_A3)) ** (1.0 / 3.0))
        settings = RandomCellSettings(
            n_cells=1, edge_min=edge, edge_max=edge, density_min=density, density_max=density, min_distance=1.8
        )
        (cell,) = random_cells(settings, ["Al"], int(rng.integers(2**62)))
        assert len(cell) == n_atoms, (len(cell), n_atoms)
        cell.info["structure_id"] = f"random-{n_atoms}-{k}"
        out.append(cell)
    return out


def fcc_cells_of(n_atoms: int, count: int, seed: int) -> list:
    """``count`` Al fcc supercells of ``n_atoms`` atoms, lattice constant uniform in 3.9-4.2 A, every
    atom displaced by a normal of standard deviation uniform in 0.05-0.25 A per component."""
    from ase.build import bulk

    rng = np.random.default_rng((seed, n_atoms, 1))
    out = []
    for k in range(count):
        a = bulk("Al", "fcc", a=float(rng.uniform(3.9, 4.2)), cubic=True).repeat(FCC_REPEATS[n_atoms])
        a.positions += rng.normal(0.0, float(rng.uniform(0.05, 0.25)), a.positions.shape)
        a.info["structure_id"] = f"fcc-{n_atoms}-{k}"
        out.append(a)
    return out


def measures(pred) -> dict[str, np.ndarray]:
    """The three measures (eV) of every frame of an ensemble prediction."""
    n_atoms = np.array([f.shape[1] for f in pred.forces], dtype=float)
    return {
        "energy_spread": np.asarray(pred.energy_spread),
        "energy_spread_intensive": np.asarray(pred.energy_spread_intensive),
        "offset_per_atom": pred.energies.std(axis=0, ddof=1) / n_atoms,
    }


def static_rows(ensemble, sizes: list[int], count: int, seed: int, limits: dict[str, float]) -> list[dict]:
    """Per cell kind and size: median of each measure and the fraction of cells at or over each limit."""
    rows = []
    for kind, build in (("random", random_cells_of), ("fcc", fcc_cells_of)):
        for n in sizes:
            values = measures(ensemble.predict(build(n, count, seed)))
            row = {"part": "static", "cells": kind, "n_atoms": n, "count": count}
            row.update({f"median_{m}": float(np.median(values[m])) for m in MEASURES})
            row.update({f"over_{m}": float(np.mean(values[m] >= lim)) for m, lim in limits.items()})
            rows.append(row)
    return rows


def sampler_paths(ensemble, settings, starts: list, t_ps: float, seed: int) -> list[dict[str, np.ndarray]]:
    """Per trajectory from ``starts``: time (ps) and the measures at every step of a langevin_schedule
    run (the campaign's ``settings``, t_max ``t_ps``), never stopped."""
    from al_flows.exploration.langevin import LangevinRun, run_batched_langevin
    from al_flows.exploration.md import draw_schedule, schedule_temperature

    s = settings.model_copy(update={"t_max_ps": t_ps})
    rng = np.random.default_rng((seed, len(starts[0]), 2))
    schedules = [draw_schedule(rng, s) for _ in starts]
    n_steps = int(round(t_ps * 1000.0 / s.timestep_fs))
    run = LangevinRun(n_steps, s.timestep_fs, s.friction_per_ps, 1, int(rng.integers(2**62)))
    frames = run_batched_langevin(
        starts, ensemble, lambda k, t: float(schedule_temperature(t, **schedules[k])), run, dropped=[]
    )
    out = []
    for k in range(len(starts)):
        path = [a for a in frames if a.info["run"] == k]
        n = len(path[0]) if path else 1
        row = {"time_ps": np.array([a.info["time_ps"] for a in path])}
        row["energy_spread"] = np.array([a.info["energy_spread"] for a in path])
        row["energy_spread_intensive"] = np.array([a.info["energy_spread_intensive"] for a in path])
        row["offset_per_atom"] = row["energy_spread"] / np.sqrt(n)
        out.append(row)
    return out


def sampler_rows(
    ensemble, settings, sizes: list[int], runs: int, t_ps: float, seed: int, limits: dict[str, float]
) -> list[dict]:
    """Per size: the fraction of ``runs`` trajectories that each rule stops within ``t_ps`` and the
    median first-passage time (ps; ``t_ps`` when it never stops: censored)."""
    rows = []
    for n in sizes:
        paths = sampler_paths(ensemble, settings, random_cells_of(n, runs, seed + 7), t_ps, seed)
        row: dict = {"part": "sampler", "cells": "random", "n_atoms": n, "count": runs, "t_ps": t_ps}
        row["finished"] = int(sum(len(p["time_ps"]) > 0 and p["time_ps"][-1] >= t_ps - 1e-9 for p in paths))
        for m, lim in limits.items():
            passage = [_first_passage(p["time_ps"], p[m], lim, t_ps) for p in paths]
            row[f"stopped_{m}"] = float(np.mean([t < t_ps for t in passage]))
            row[f"median_survival_{m}"] = float(np.median(passage))
        row.update({f"median_{m}": float(np.median(np.concatenate([p[m] for p in paths]))) for m in MEASURES})
        rows.append(row)
    return rows


def _first_passage(t: np.ndarray, x: np.ndarray, limit: float, t_max: float) -> float:
    """First time (ps) ``x`` reaches ``limit``; ``t_max`` when it never does; 0 for an empty path
    (a trajectory dropped at its start)."""
    if len(t) == 0:
        return 0.0
    over = np.flatnonzero(x >= limit)
    return float(t[over[0]]) if len(over) else float(t_max)


def print_rows(rows: list[dict], limits: dict[str, float]) -> None:
    """The rows as text tables: the static part, then the sampler part."""
    short = {"energy_spread": "rho", "energy_spread_intensive": "rho_int", "offset_per_atom": "sE/N"}
    for row in rows:
        head = f"round {row['round']} {row['part']:7s} {row['cells']:6s} N={row['n_atoms']:4d} n={row['count']:3d}"
        medians = " ".join(f"{short[m]}~{row[f'median_{m}']:.4f}" for m in MEASURES)
        if row["part"] == "static":
            over = " ".join(f"over {short[m]}>={lim}: {row[f'over_{m}']:.2f}" for m, lim in limits.items())
        else:
            over = " ".join(
                f"stopped {short[m]}>={lim}: {row[f'stopped_{m}']:.2f} (median {row[f'median_survival_{m}']:.3f} ps)"
                for m, lim in limits.items()
            )
        print(f"{head} | {medians} | {over}", flush=True)


def main(argv=None) -> None:
    from al_flows.exploration.md import ScheduleSettings

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", type=Path, help="a finished run of flows/al_random_cells_emt.yaml")
    ap.add_argument("--rounds", nargs="+", type=int, default=[0, 2])
    ap.add_argument("--sizes", nargs="+", type=int, default=[8, 16, 32, 64, 128], choices=sorted(FCC_REPEATS))
    ap.add_argument("--cells", type=int, default=32, help="cells per kind and size (static part)")
    ap.add_argument("--runs", type=int, default=12, help="trajectories per size (sampler part; 0: none)")
    ap.add_argument("--sampler-rounds", nargs="+", type=int, default=None, help="rounds of the sampler part")
    ap.add_argument("--t-ps", type=float, default=0.4, help="ps, length of the sampler part's trajectories")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="folder for results.json")
    args = ap.parse_args(argv)
    defaults = ScheduleSettings()
    limits = {
        "energy_spread": defaults.stop_energy_spread,
        "energy_spread_intensive": defaults.stop_energy_spread_intensive,
    }
    print(f"thresholds (eV): {limits}", flush=True)
    rows = []
    for r in args.rounds:
        config, ensemble = campaign_ensemble(args.workdir, r)
        found = static_rows(ensemble, args.sizes, args.cells, args.seed, limits)
        if args.runs > 0 and r in (args.sampler_rounds or args.rounds):
            explorer = next(e for e in config.explorers if e.kind == "langevin_schedule")
            found += sampler_rows(ensemble, explorer, args.sizes, args.runs, args.t_ps, args.seed, limits)
        for row in found:
            row["round"] = r
        print_rows(found, limits)
        rows += found
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        payload = {"thresholds_eV": limits, "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}
        (args.out / "results.json").write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    main()
