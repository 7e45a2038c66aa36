"""Calibrate the ANI-Al stop threshold on the ensemble's energy spread from a finished campaign.

``--measure`` picks the energy measure: ``energy_spread`` (rho = sigma_E / sqrt(N), the method's)
or ``energy_spread_intensive`` (the spread of the members' per-atom energies with each member's
mean removed, :mod:`al_flows.potential.atom_energies`); both are eV and both called rho below.
For every round asked for, the round's ensemble predicts the frames its explorers produced; the
script relates rho to the force deviation eps (eV/Angstrom) of the same frames, log rho = log eps + c
with c the median of log(rho / eps), and prints the rho that corresponds to a given force threshold
(``--force-threshold``), with the fraction of frames over each threshold. ``--paths T`` instead
reruns each round's trajectories (fresh cells, the round's ensemble, every step recorded, never
stopped) and picks the rho* whose median first-passage time (the survival time of the method)
equals that of the force threshold: a stop rule acts on the first step over the threshold, so
matching survival, not the fraction of snapshots over it, is what makes the two stops equivalent.
``--statistic mean`` matches the mean first-passage time instead (the area under the survival
curve up to T: defined when the survival curve jumps, as it does for the intensive measure);
``--match-energy-spread R`` also matches the intensive measure to the survival of the stop
rho >= R. docs/methods.md says how the defaults were chosen with it.

    .venv/bin/python benchmarks/calibrate_energy_spread.py runs/al_seeds_p1/al_random_cells_emt_s1 --rounds 1 3 5
    .venv/bin/python benchmarks/calibrate_energy_spread.py WORKDIR --rounds 0 1 2 --paths 1.0 \
        --measure energy_spread energy_spread_intensive --match-energy-spread 0.10 --statistic mean
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

MEASURES = ("energy_spread", "energy_spread_intensive")


def round_points(workdir: Path, round_: int, measure: str = "energy_spread") -> tuple[np.ndarray, np.ndarray]:
    """(rho [eV], eps [eV/A]) of the frames explored in ``round_`` of the campaign in ``workdir``;
    rho is the prediction's ``measure``."""
    from al_flows.campaign.config import validate_campaign
    from al_flows.campaign.record import CampaignRecord
    from al_flows.campaign.stores import make_job_store
    from al_flows.frames.extxyz import frames_from_bytes
    from al_flows.potential.ensemble import Ensemble
    from al_flows.workflow.jobs import latest_outputs

    config = validate_campaign(json.loads((workdir / "campaign.json").read_text()))
    store = make_job_store(config.store, workdir)
    store.connect()
    try:
        _, blobs = CampaignRecord(store, config.name).ensemble_blobs(round_)
        docs = latest_outputs(store, config.name, "explore", {"metadata.round": round_}, load=True)
        frames = [a for d in docs for a in frames_from_bytes(d["output"]["frames_blob"])]
    finally:
        store.close()
    pred = Ensemble.from_bytes(blobs).predict(frames)
    return getattr(pred, measure), pred.deviation


def round_paths(workdir: Path, round_: int, t_max_ps: float, seed: int) -> list[dict[str, np.ndarray]]:
    """Per trajectory, ``time_ps`` (ps), ``deviation`` (eps, eV/A), ``energy_spread`` and
    ``energy_spread_intensive`` (eV) at every step of the round's trajectories, run again with the
    round's ensemble and the campaign's langevin_schedule settings, from fresh cells, never stopped."""
    from al_flows.campaign.config import validate_campaign
    from al_flows.campaign.record import CampaignRecord
    from al_flows.campaign.stores import make_job_store
    from al_flows.exploration.md import langevin_schedule
    from al_flows.frames.extxyz import frames_from_bytes
    from al_flows.potential.ensemble import Ensemble
    from al_flows.workflow.jobs import latest_outputs

    config = validate_campaign(json.loads((workdir / "campaign.json").read_text()))
    store = make_job_store(config.store, workdir)
    store.connect()
    try:
        _, blobs = CampaignRecord(store, config.name).ensemble_blobs(round_)
        doc = latest_outputs(store, config.name, "structures", load=True)[0]["output"]
        structures = frames_from_bytes(doc["structures_blob"])
    finally:
        store.close()
    explorer = next(e for e in config.explorers if e.kind == "langevin_schedule")
    settings = explorer.model_copy(
        update={"t_max_ps": t_max_ps, "record_every": 1, "stop_measure": "force_deviation", "stop_deviation": 1e9}
    )
    frames = langevin_schedule(structures, Ensemble.from_bytes(blobs), settings, seed=seed)
    keys = ("time_ps", "deviation", *MEASURES)
    out = []
    for k in range(settings.n_runs):
        path = [a for a in frames if a.info["run"] == k]
        out.append({key: np.array([a.info[key] for a in path], dtype=float) for key in keys})
    return out


def cached_round_paths(workdir: Path, round_: int, t_max_ps: float, cache: Path | None) -> list[dict[str, np.ndarray]]:
    """:func:`round_paths` (seed 1000 + round), read from ``cache`` when it holds them (one .npz per
    work directory, round and length), else run and, with a ``cache``, written there."""
    if cache is None:
        return round_paths(workdir, round_, t_max_ps, seed=1000 + round_)
    path = cache / f"{workdir.name}_round{round_}_{t_max_ps:g}ps.npz"
    if path.is_file():
        data = np.load(path)
        n = int(data["n_runs"])
        return [{key[len(f"{k}_") :]: data[key] for key in data.files if key.startswith(f"{k}_")} for k in range(n)]
    paths = round_paths(workdir, round_, t_max_ps, seed=1000 + round_)
    cache.mkdir(parents=True, exist_ok=True)
    flat = {f"{k}_{key}": v for k, p in enumerate(paths) for key, v in p.items()}
    np.savez(path, n_runs=len(paths), **flat)
    return paths


def first_passage(t: np.ndarray, x: np.ndarray, limit: float, t_max: float) -> float:
    """The first time (ps) ``x`` reaches ``limit``; ``t_max`` when it never does (censored)."""
    over = np.flatnonzero(x >= limit)
    return float(t[over[0]]) if len(over) else float(t_max)


def match_survival(
    paths, key: str, ref_key: str, ref_limit: float, t_max: float, statistic: str = "median"
) -> tuple[float, float, float]:
    """(x*, survival under the reference stop ``ref_key >= ref_limit``, under ``key >= x*``): the x* on
    a fine grid of ``key``'s values whose ``statistic`` (median, or mean: the area under the survival
    curve up to ``t_max``) of the first-passage times over all trajectories ``paths``
    (:func:`round_paths`) is closest to that of the reference stop."""
    stat = np.median if statistic == "median" else np.mean
    t_ref = stat([first_passage(p["time_ps"], p[ref_key], ref_limit, t_max) for p in paths])
    values = np.concatenate([p[key] for p in paths])
    grid = np.quantile(values, np.linspace(0.01, 0.999, 400))
    found = np.array([stat([first_passage(p["time_ps"], p[key], g, t_max) for p in paths]) for g in grid])
    best = int(np.argmin(np.abs(found - t_ref)))
    return float(grid[best]), float(t_ref), float(found[best])


def calibrate_paths(args) -> None:
    """``--paths``: each measure's x* matched to the force threshold's median survival, per round and
    pooled; with ``--match-energy-spread R`` also the energy_spread_intensive threshold matched to the
    stop ``energy_spread >= R``."""
    t_max = args.paths
    matches = [(m, "deviation", args.force_threshold) for m in args.measure]
    if args.match_energy_spread is not None:
        matches.append(("energy_spread_intensive", "energy_spread", args.match_energy_spread))
    pooled = []
    for wd in args.workdirs:
        for r in args.rounds:
            p = cached_round_paths(wd, r, t_max, args.paths_cache)
            for key, ref_key, ref in matches:
                star, t_ref, t_key = match_survival(p, key, ref_key, ref, t_max, args.statistic)
                print(
                    f"{wd.name} round {r}: {key}* {star:.4f} eV ({args.statistic} survival {t_ref:.3f} ps at "
                    f"{ref_key} >= {ref}, {t_key:.3f} at {key}*)"
                )
            pooled += p
    for key, ref_key, ref in matches:
        star, t_ref, t_key = match_survival(pooled, key, ref_key, ref, t_max, args.statistic)
        print(
            f"all: {len(pooled)} trajectories; {key}* = {star:.4f} eV gives {args.statistic} survival {t_key:.3f} "
            f"ps, {ref_key} >= {ref} gives {t_ref:.3f} ps (censored at {t_max} ps); stopped, of which in the "
            f"first 0.02 ps: {stop_counts(pooled, key, star, t_max)} at {key}*, "
            f"{stop_counts(pooled, ref_key, ref, t_max)} at {ref_key} >= {ref}"
        )


def stop_counts(paths, key: str, limit: float, t_max: float, early_ps: float = 0.02) -> str:
    """``"k (j)"``: trajectories of ``paths`` that the stop ``key >= limit`` stops before ``t_max``,
    and of those, how many within ``early_ps`` (ps) of their start."""
    times = [first_passage(p["time_ps"], p[key], limit, t_max) for p in paths]
    stopped = [t for t in times if t < t_max]
    return f"{len(stopped)} ({sum(t <= early_ps + 1e-9 for t in stopped)})"


def calibrate_points(args) -> None:
    """Without ``--paths``: the threshold from the median ratio rho / eps on the explored frames."""
    measure = args.measure[0]
    rho_all, eps_all = [], []
    for wd in args.workdirs:
        for r in args.rounds:
            rho, eps = round_points(wd, r, measure)
            ok = np.isfinite(rho) & np.isfinite(eps) & (eps > 0) & (rho > 0)
            c = float(np.median(np.log(rho[ok] / eps[ok])))
            print(
                f"{wd.name} round {r}: {ok.sum()} frames, median rho/eps {np.exp(c):.4f} A, "
                f"rho median {np.median(rho[ok]):.4f} eV, eps median {np.median(eps[ok]):.3f} eV/A"
            )
            rho_all.append(rho[ok])
            eps_all.append(eps[ok])
    rho, eps = np.concatenate(rho_all), np.concatenate(eps_all)
    c = float(np.median(np.log(rho / eps)))
    rho_star = args.force_threshold * np.exp(c)
    print(
        f"all: {len(rho)} frames ({measure}); rho* = {rho_star:.4f} eV for eps* = {args.force_threshold} eV/A; "
        f"over rho*: {np.mean(rho >= rho_star):.3f}, over eps*: {np.mean(eps >= args.force_threshold):.3f}; "
        f"Spearman-like agreement (both over or both under): "
        f"{np.mean((rho >= rho_star) == (eps >= args.force_threshold)):.3f}"
    )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdirs", nargs="+", type=Path)
    ap.add_argument("--rounds", nargs="+", type=int, default=[1, 3, 5])
    ap.add_argument("--force-threshold", type=float, default=0.30, help="eV/A, the force stop it should match")
    ap.add_argument(
        "--measure",
        nargs="+",
        choices=MEASURES,
        default=["energy_spread"],
        help="the energy measure(s) calibrated (without --paths: the first)",
    )
    ap.add_argument(
        "--paths",
        type=float,
        default=None,
        metavar="T_PS",
        help="rerun each round's trajectories for T_PS ps, recording every step, and match median survival times",
    )
    ap.add_argument(
        "--statistic",
        choices=("median", "mean"),
        default="median",
        help="with --paths: match the median survival time, or the mean (the area under the survival curve)",
    )
    ap.add_argument(
        "--paths-cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="with --paths: keep each round's trajectories in DIR and read them from there on the next run",
    )
    ap.add_argument(
        "--match-energy-spread",
        type=float,
        default=None,
        metavar="RHO",
        help="with --paths: also the energy_spread_intensive threshold with the survival of energy_spread >= RHO (eV)",
    )
    args = ap.parse_args(argv)
    if args.paths is not None:
        calibrate_paths(args)
    else:
        calibrate_points(args)


if __name__ == "__main__":
    main()
