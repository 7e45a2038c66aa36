"""Calibrate the ANI-Al stop threshold on the ensemble's energy spread from a finished campaign.

For every round asked for, the round's ensemble predicts the frames its explorers produced; the
script relates the energy spread rho = sigma_E / sqrt(N) (eV) to the force deviation eps
(eV/Angstrom) of the same frames, log rho = log eps + c with c the median of log(rho / eps), and
prints the rho that corresponds to a given force threshold (``--force-threshold``), with the
fraction of frames over each threshold. docs/methods.md says how the default was chosen with it.

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
    from al_flows.frames.dataset import frames_from_bytes
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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdirs", nargs="+", type=Path)
    ap.add_argument("--rounds", nargs="+", type=int, default=[1, 3, 5])
    ap.add_argument("--force-threshold", type=float, default=0.30, help="eV/A, the force stop it should match")
    args = ap.parse_args(argv)
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
