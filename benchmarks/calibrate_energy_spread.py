"""Calibrate the ANI-Al stop threshold on the ensemble's energy spread from a finished campaign.

For every round asked for, the round's ensemble predicts the frames its explorers produced; the
script relates the energy spread rho = sigma_E / sqrt(N) (eV) to the force deviation eps
(eV/Angstrom) of the same frames, log rho = log eps + c with c the median of log(rho / eps), and
prints the rho that corresponds to a given force threshold (``--force-threshold``), with the
fraction of frames over each threshold. ``--paths T`` instead reruns each round's trajectories
(fresh cells, the round's ensemble, every step recorded, never stopped) and picks the rho* whose
median first-passage time (the survival time of the method) equals that of the force threshold:
a stop rule acts on the first step over the threshold, so matching survival, not the fraction of
snapshots over it, is what makes the two stops equivalent. docs/methods.md says how the default
was chosen with it.

    .venv/bin/python benchmarks/calibrate_energy_spread.py runs/al_seeds_p1/al_random_cells_emt_s1 --rounds 1 3 5
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def round_points(workdir: Path, round_: int) -> tuple[np.ndarray, np.ndarray]:
    """(rho [eV], eps [eV/A]) of the frames explored in ``round_`` of the campaign in ``workdir``."""
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
    return pred.energy_spread, pred.deviation


def round_paths(
    workdir: Path, round_: int, t_max_ps: float, seed: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(time ps, rho eV, eps eV/A) at every step of the round's trajectories, run again with the
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
    out = []
    for k in range(settings.n_runs):
        path = [a for a in frames if a.info["run"] == k]
        out.append(tuple(np.array([a.info[key] for a in path]) for key in ("time_ps", "energy_spread", "deviation")))
    return out


def first_passage(t: np.ndarray, x: np.ndarray, limit: float, t_max: float) -> float:
    """The first time (ps) ``x`` reaches ``limit``; ``t_max`` when it never does (censored)."""
    over = np.flatnonzero(x >= limit)
    return float(t[over[0]]) if len(over) else float(t_max)


def match_survival(paths, eps_star: float, t_max: float) -> tuple[float, float, float]:
    """(rho*, median survival under eps*, under rho*): the rho* on a fine grid whose median first-passage
    time over all trajectories is closest to that of the force threshold eps*."""
    t_eps = np.median([first_passage(t, e, eps_star, t_max) for t, _, e in paths])
    rhos = np.concatenate([r for _, r, _ in paths])
    grid = np.quantile(rhos, np.linspace(0.01, 0.999, 400))
    medians = np.array([np.median([first_passage(t, r, g, t_max) for t, r, _ in paths]) for g in grid])
    best = int(np.argmin(np.abs(medians - t_eps)))
    return float(grid[best]), float(t_eps), float(medians[best])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdirs", nargs="+", type=Path)
    ap.add_argument("--rounds", nargs="+", type=int, default=[1, 3, 5])
    ap.add_argument("--force-threshold", type=float, default=0.30, help="eV/A, the force stop it should match")
    ap.add_argument(
        "--paths",
        type=float,
        default=None,
        metavar="T_PS",
        help="rerun each round's trajectories for T_PS ps, recording every step, and match median survival times",
    )
    args = ap.parse_args(argv)
    if args.paths is not None:
        paths = []
        for wd in args.workdirs:
            for r in args.rounds:
                p = round_paths(wd, r, args.paths, seed=1000 + r)
                rho_star, t_eps, t_rho = match_survival(p, args.force_threshold, args.paths)
                print(
                    f"{wd.name} round {r}: rho* {rho_star:.4f} eV "
                    f"(median survival {t_eps:.3f} ps at eps*, {t_rho:.3f} at rho*)"
                )
                paths += p
        rho_star, t_eps, t_rho = match_survival(paths, args.force_threshold, args.paths)
        print(
            f"all: {len(paths)} trajectories; rho* = {rho_star:.4f} eV gives median survival {t_rho:.3f} ps, "
            f"eps* = {args.force_threshold} eV/A gives {t_eps:.3f} ps (censored at {args.paths} ps)"
        )
        return
    rho_all, eps_all = [], []
    for wd in args.workdirs:
        for r in args.rounds:
            rho, eps = round_points(wd, r)
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
        f"all: {len(rho)} frames; rho* = {rho_star:.4f} eV for eps* = {args.force_threshold} eV/A; "
        f"over rho*: {np.mean(rho >= rho_star):.3f}, over eps*: {np.mean(eps >= args.force_threshold):.3f}; "
        f"Spearman-like agreement (both over or both under): "
        f"{np.mean((rho >= rho_star) == (eps >= args.force_threshold)):.3f}"
    )


if __name__ == "__main__":
    main()
