"""Benchmark: labels saved by deviation selection against random selection (the baseline).

The same on-the-fly campaign (train -> explore -> select -> label, EMT labels) is run with each
``selection.strategy`` and the same per-round label cap (``max_candidates``), for several seeds,
on two systems:

  (a) ``cuni_shear``: Cu-Ni multilayers (2x2x2, pristine / VNi(N1) / VCu(C1)) explored by
      perturbed stochastic shear (Sprueill et al.);
  (b) ``al_md``: aluminium from random disordered cells explored by Langevin MD with a randomised
      temperature schedule that stops on high deviation (Smith et al.).

Every round's ensemble is evaluated on ONE held-out test set per system, shared by all
strategies and seeds and never trained on: (a) EMT-relaxed shear paths, EMT MD snapshots at 300
and 600 K and sheared-rattled copies of the multilayers; (b) EMT MD snapshots of fcc Al (300 and
900 K) and of random cells (600 K). It prints a table of test force RMSE and R^2 against the
number of labels for every run, writes a PNG of the curves, and ends with

    labels needed by deviation to reach random's final test force RMSE / random's labels = X

(random's labels: where random's own curve first reaches that RMSE, its total when the curve
falls monotonically; median over systems and seeds; < 1: deviation selection saves labels; '>' when deviation never
reached it within the run, then X is a lower bound) and the RMSE ratio deviation / random at
random's final label count (interpolated along deviation's curve).

``--pick P [P ...]`` (random, highest, diverse) sets how strategy deviation caps its candidates
(``selection.pick``; default: each system's own, random for cuni_shear, highest for al_md); with two or
more picks, deviation runs once per pick (``deviation:<pick>``) and the same two ratios compare each
later pick with the first at the same labels per round (``--pick random diverse``: farthest-point
sampling in the ensemble's feature space against a random draw inside the trust window). Without
``--strategies``, two or more picks run strategy deviation only.

    .venv/bin/python benchmarks/label_efficiency.py --quick          # under 10 min on 2 cores
    .venv/bin/python benchmarks/label_efficiency.py [--seeds 0 1 2] [--systems cuni_shear al_md]
                                                     [--strategies deviation random all] [--out DIR]
                                                     [--shear-runs N] [--summarise DIR]
                                                     [--pick random diverse]
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TEST_SEED = 20261203  # the shared test sets do not depend on any campaign seed


def cuni_campaign(quick: bool) -> dict:
    return {
        "name": "le_cuni_shear",
        "elements": ["Cu", "Ni"],
        "initial": {
            "structures": [
                {
                    "kind": "multilayer",
                    "size": [2, 2, 2],
                    "lattice_constant": 3.58,
                    "variants": ["pristine", "VNi(N1)", "VCu(C1)"],
                }
            ],
            "n_rattled": 6,
            "rattle_sigma": 0.04,
            "strain_max": 0.01,
        },
        "model": {"n_atom_basis": 32, "n_interactions": 2, "n_rbf": 20, "cutoff": 4.5},
        "training": {"epochs": 40, "batch_size": 8, "lr": 2e-3, "lr_patience": 10, "val_fraction": 0.1},
        "ensemble_size": 4,
        "explorers": [
            {
                "kind": "shear",
                "name": "shear",
                "n_runs": 2,
                "sigma": 0.05,
                "shear_step": 0.5,
                "gamma_max": 0.33,
                "fmax": 0.05,
                "max_opt_steps": 100,
            }
        ],
        "selection": {"trust_lo": 0.05, "trust_hi": 0.5, "max_candidates": 6, "pick": "random"},
        # a label that fails (e.g. a frame with atoms on top of each other, which random selection can pick)
        # is recorded and left out; the round goes on
        "labeller": {"kind": "ase", "calculator": "emt", "min_success_fraction": 0.0},
        "test_set": {"kind": "perturbed", "n_per_structure": 1},  # the benchmark's own shared test set is used instead
        "max_rounds": 3 if quick else 5,
        "convergence": {"accurate_ratio": 1.0},  # run every round: the curves need the same rounds for every strategy
    }


def al_campaign(quick: bool) -> dict:
    return {
        "name": "le_al_md",
        "elements": ["Al"],
        "initial": {
            "structures": [
                {
                    "kind": "random_cells",
                    "n_cells": 12 if quick else 16,
                    "edge_min": 8.0,
                    "edge_max": 10.0,
                    "density_min": 1.8,
                    "density_max": 3.0,
                    "min_distance": 1.9,
                }
            ],
            "n_rattled": 0,
            "label_structures": True,
        },
        "model": {"n_atom_basis": 32, "n_interactions": 2, "n_rbf": 20, "cutoff": 5.0},
        "training": {"epochs": 40, "batch_size": 8, "lr": 2e-3, "lr_patience": 10, "val_fraction": 0.1},
        "ensemble_size": 4,
        # frames every 5 steps until a trajectory stops: more explored frames than the cap, so selection has a choice
        # (with 4 stop frames per round and a cap of 8, every strategy labels the same frames)
        "explorers": [
            {
                "kind": "langevin_schedule",
                "name": "langevin",
                "n_runs": 6,
                "t_max_ps": 0.4 if quick else 1.0,
                "timestep_fs": 2.0,
                "friction_per_ps": 5.0,
                "stop_deviation": 0.3,
                "record_every": 5,
                # the simplified sampler this benchmark measured (docs/results.md): starts from the labelled
                # cells, stops on the force deviation, and every frame goes through the strategy's selection
                "start": "structures",
                "stop_measure": "force_deviation",
                "label_stop_frames": False,
                "select_snapshots": True,
            }
        ],
        # ANI-Al's selection: a frame is a candidate once its deviation reaches the MD stop threshold (trust_lo =
        # stop_deviation), and the cap keeps the most deviating ones. (With trust_lo 0.1 every recorded frame of the
        # first models was a candidate and a random pick among them was random selection, frame for frame.)
        # trust_hi 3 eV/A: with a few random cells, the first models' stop frames deviate by more than 1 eV/A, and
        # a window closed at 1 eV/A (the example campaign's) classifies all of them 'failed' and labels nothing
        "selection": {"trust_lo": 0.3, "trust_hi": 3.0, "max_candidates": 4, "pick": "highest"},
        "labeller": {"kind": "ase", "calculator": "emt", "min_success_fraction": 0.0},
        "test_set": {"kind": "perturbed", "n_per_structure": 1, "rattle_sigma": 0.05},
        "max_rounds": 3 if quick else 5,
        "convergence": {"accurate_ratio": 1.0},
    }


CAMPAIGNS = {"cuni_shear": cuni_campaign, "al_md": al_campaign}
PICKS = ("random", "highest", "diverse")


def shared_test_set(system: str) -> list:
    """The held-out frames of ``system`` (EMT labels; see the module docstring)."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from al_flows.active_learning.config import TestSetConfig
    from al_flows.structures.generators import random_cells
    from al_flows.structures.initial_data import RandomCellSource
    from al_flows.structures.multilayer import cuni_multilayer
    from al_flows.validation.heldout import labeller_test_frames, md_snapshots

    if system == "cuni_shear":
        starts = []
        for v in ("pristine", "VNi(N1)", "VCu(C1)"):
            a = cuni_multilayer((2, 2, 2), a=3.58, variant=v)
            a.info["structure_id"] = v
            starts.append(a)
        settings = TestSetConfig(
            kind="mixed",
            n_runs=1,
            sigma=0.03,
            shear_step=0.5,
            gamma_max=0.33,
            fmax=0.05,
            md_temperatures_K=[300.0, 600.0],
            md_steps=200,
            md_interval=20,
            n_sheared=6,
            max_nonequilibrium=100,
        )
        return labeller_test_frames(starts, EMT, settings, seed=TEST_SEED, labeller="ase:emt")
    fcc = bulk("Al", "fcc", a=4.05, cubic=True).repeat((2, 2, 2))
    fcc.info["structure_id"] = "fcc"
    frames = md_snapshots([fcc], EMT, [300.0, 900.0], 200, 2.0, 20, TEST_SEED, "ase:emt")
    cells = random_cells(
        RandomCellSource(n_cells=4, edge_min=8.0, edge_max=10.0, density_min=1.8, density_max=3.0, min_distance=1.9),
        ["Al"],
        TEST_SEED,
    )
    for i, c in enumerate(cells):
        c.info["structure_id"] = f"random{i}"
    return frames + md_snapshots(cells, EMT, [600.0], 200, 2.0, 20, TEST_SEED + 1, "ase:emt")


def curve(workdir: Path, config, test_frames: list) -> list[dict]:
    """(labels, test force RMSE, R^2) of every round's ensemble on the shared test set."""
    from al_flows.campaign.record import CampaignRecord
    from al_flows.campaign.run import open_store
    from al_flows.validation.heldout import holdout_errors
    from al_flows.workflow.jobs import load_ensemble

    store = open_store(config, workdir)
    try:
        record = CampaignRecord(store, config.name)
        rows = []
        for k, summary in sorted(record.summaries().items()):
            docs = {d["output"]["model_id"]: d["output"] for d in record.outputs("train", k, load=True)}
            pred = load_ensemble([docs[m] for m in summary["model_ids"]]).predict(test_frames)
            err = holdout_errors(test_frames, pred.mean_energies, pred.mean_forces)
            rows.append(
                {
                    "round": k,
                    "labels": summary["n_labels_total"],
                    "new_labels": summary["n_labelled"],
                    "accurate_ratio": summary["accurate_ratio"],
                    "candidates": summary["n_candidate"],
                    "force_rmse": err["force_rmse"],
                    "force_r2": err["force_r2"],
                    "force_rmse_relaxed": err["subsets"].get("relaxed", {}).get("force_rmse"),
                    "force_rmse_nonequilibrium": err["subsets"].get("nonequilibrium", {}).get("force_rmse"),
                }
            )
        return rows
    finally:
        store.close()


def interpolate_rmse(rows: list[dict], labels: float) -> float | None:
    """Test force RMSE of a curve at ``labels`` (linear between rounds; None outside it)."""
    x = [r["labels"] for r in rows]
    if not rows or labels < x[0] or labels > x[-1]:
        return None
    return float(np.interp(labels, x, [r["force_rmse"] for r in rows]))


def labels_to_reach(rows: list[dict], target: float) -> tuple[float, bool]:
    """(labels at which the curve first reaches ``target`` RMSE, reached?), linear between rounds;
    when never reached: (the curve's last label count, False)."""
    for a, b in zip(rows, rows[1:], strict=False):
        if b["force_rmse"] <= target < a["force_rmse"]:
            t = (a["force_rmse"] - target) / (a["force_rmse"] - b["force_rmse"])
            return a["labels"] + t * (b["labels"] - a["labels"]), True
    if rows and rows[0]["force_rmse"] <= target:
        return float(rows[0]["labels"]), True
    return float(rows[-1]["labels"]), False


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = sorted(results)
    fig, axes = plt.subplots(1, len(systems), figsize=(5.5 * len(systems), 4.2), squeeze=False)
    colours = {
        "deviation": "tab:blue",
        "random": "tab:orange",
        "all": "tab:green",
        "deviation:random": "tab:blue",
        "deviation:highest": "tab:purple",
        "deviation:diverse": "tab:red",
    }
    for ax, system in zip(axes[0], systems, strict=True):
        for (strategy, seed), rows in sorted(results[system].items()):
            ax.plot(
                [r["labels"] for r in rows],
                [r["force_rmse"] for r in rows],
                "o-",
                color=colours.get(strategy, "k"),
                alpha=0.75,
                label=strategy if seed == min(s for st, s in results[system] if st == strategy) else None,
            )
        ax.set_xlabel("labels trained on")
        ax.set_ylabel("shared test force RMSE (eV/Å)")
        ax.set_title(system)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compare(runs: dict, a: str, b: str) -> dict:
    """Per seed: labels ``a`` needs to reach ``b``'s final test force RMSE / ``b``'s labels (and whether it
    reached it), the same counting only the loop's labels, and the RMSE ratio a / b at the largest common
    label count."""
    out: dict = {"label": [], "reached": [], "loop": [], "rmse": []}
    for seed in sorted({sd for st, sd in runs if st == b}):
        if (a, seed) not in runs:
            continue
        base, other = runs[(b, seed)], runs[(a, seed)]
        # b's labels: the first count at which b's own curve is at its final RMSE (its total when the curve
        # falls monotonically; smaller when a later round got worse), so identical curves give 1
        target = base[-1]["force_rmse"]
        base_labels, _ = labels_to_reach(base, target)
        needed, reached = labels_to_reach(other, target)
        out["label"].append(needed / base_labels)
        out["reached"].append(reached)
        initial = base[0]["labels"]  # the shared initial labels, which no strategy chooses
        if base_labels > initial:
            out["loop"].append((needed - initial) / (base_labels - initial))
        # at the largest label count both curves reach (a may label fewer: fewer candidates than the cap)
        common = min(other[-1]["labels"], base[-1]["labels"])
        out["rmse"].append(interpolate_rmse(other, common) / interpolate_rmse(base, common))
    return out


def comparisons(labels: set) -> list[tuple[str, str]]:
    """(a, b) pairs to compare: every deviation run against strategy random, and every later pick
    against the first (``deviation:<pick>`` labels, in the order random, highest, diverse)."""
    picks = [f"deviation:{p}" for p in PICKS if f"deviation:{p}" in labels]
    deviations = [x for x in ("deviation", *picks) if x in labels]
    pairs = [(d, "random") for d in deviations if "random" in labels]
    return pairs + [(p, picks[0]) for p in picks[1:]]


def summarise(results: dict, out: Path, start: float) -> None:
    """Print the table and the ratio lines, write results.json and the PNG."""
    print("\nsystem      strategy            seed  labels  candidates  test F RMSE (eV/A)  R2     relaxed  noneq.")
    for system, runs in results.items():
        for (strategy, seed), rows in sorted(runs.items()):
            for r in rows:
                rel = "" if r["force_rmse_relaxed"] is None else f"{r['force_rmse_relaxed']:.4f}"
                print(
                    f"{system:<11} {strategy:<19} {seed:>4} {r['labels']:>7} {r.get('candidates', ''):>11} "
                    f"{r['force_rmse']:>19.4f} {r['force_r2']:>6.3f} {rel:>8} {r['force_rmse_nonequilibrium']:>7.4f}"
                )
    (out / "results.json").write_text(
        json.dumps(
            {s: {f"{st}_s{sd}": rows for (st, sd), rows in runs.items()} for s, runs in results.items()}, indent=1
        )
    )
    plot(results, out / "label_efficiency.png")
    print(f"wrote {out / 'results.json'} and {out / 'label_efficiency.png'} ({time.perf_counter() - start:.0f} s)")
    labels = {st for runs in results.values() for st, _ in runs}
    for a, b in comparisons(labels):
        label_ratios, rmse_ratios, loop_ratios, lower_bounds = [], [], [], 0
        for system, runs in results.items():
            c = compare(runs, a, b)
            if not c["label"]:
                continue
            label_ratios += c["label"]
            rmse_ratios += c["rmse"]
            loop_ratios += c["loop"]
            lower_bounds += sum(not r for r in c["reached"])
            print(
                f"{system}: labels needed by {a} / {b}'s labels per seed: "
                + ", ".join(f"{x:.2f}" for x in c["label"])
                + f" (median {statistics.median(c['label']):.2f}; a value for "
                "a run that never reached it is its lower bound)"
                + f"; {a}/{b} RMSE at the largest common label count: "
                + (", ".join(f"{x:.3f}" for x in c["rmse"]) or "n/a")
            )
        if not label_ratios:
            continue
        median_rmse = statistics.median(rmse_ratios) if rmse_ratios else float("nan")
        bound = f" ({lower_bounds} of {len(label_ratios)} runs never reached it: lower bounds)" if lower_bounds else ""
        print(
            f"labels needed by {a} to reach {b}'s final test force RMSE / {b}'s labels = "
            f"{'>' if lower_bounds > len(label_ratios) / 2 else ''}{statistics.median(label_ratios):.2f}{bound}; "
            f"{a}/{b} test force RMSE at equal labels = {median_rmse:.3f} (median over systems and seeds)"
        )
        if loop_ratios:
            print(
                f"the same ratio counting only labels chosen in the loop (not the shared initial ones) = "
                f"{statistics.median(loop_ratios):.2f} (median of the {len(loop_ratios)} runs where {b}'s target "
                "lies beyond the initial set)"
            )


def load_results(path: Path) -> dict:
    """results.json of an earlier run, keyed as the runs are: {system: {(strategy, seed): rows}}."""
    data = json.loads(path.read_text())
    return {
        system: {(key.rsplit("_s", 1)[0], int(key.rsplit("_s", 1)[1])): rows for key, rows in runs.items()}
        for system, runs in data.items()
    }


def main() -> int:
    from al_flows.campaign.config import validate_campaign
    from al_flows.campaign.run import run_campaign

    for name in ("jobflow", "al_flows"):
        logging.getLogger(name).setLevel(logging.WARNING)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick", action="store_true", help="reduced runs (2 seeds, 3 rounds, deviation vs random): < 10 min"
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    ap.add_argument("--systems", nargs="+", default=list(CAMPAIGNS), choices=list(CAMPAIGNS))
    ap.add_argument("--strategies", nargs="+", default=None, choices=["deviation", "random", "all"])
    ap.add_argument("--out", default=None, help="directory for work directories, results.json and the PNG")
    ap.add_argument(
        "--shear-runs",
        type=int,
        default=None,
        help="cuni_shear: shear runs per system and round (default 2), to explore more frames per label",
    )
    ap.add_argument(
        "--summarise", metavar="DIR", help="only print the table and ratios of DIR/results.json (an earlier run)"
    )
    ap.add_argument(
        "--pick",
        nargs="+",
        default=None,
        choices=list(PICKS),
        help="strategy deviation's selection.pick (default: each system's own); two or more: one deviation run per "
        "pick, each later pick compared with the first",
    )
    args = ap.parse_args()
    if args.summarise:
        out = Path(args.summarise)
        summarise(load_results(out / "results.json"), out, time.perf_counter())
        return 0
    seeds = args.seeds or ([0, 1] if args.quick else [0, 1, 2])
    picks = list(dict.fromkeys(args.pick or []))
    compare_picks = len(picks) > 1
    default = ["deviation", "random"] if args.quick else ["deviation", "random", "all"]
    strategies = args.strategies or (["deviation"] if compare_picks else default)
    if "deviation" not in strategies or ("random" not in strategies and not compare_picks):
        ap.error("--strategies must include deviation and random (the ratio compares them), or give two --pick values")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="al_label_eff_"))
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results: dict[str, dict] = {}
    for system in args.systems:
        test_frames = shared_test_set(system)
        print(f"{system}: shared test set of {len(test_frames)} frames", flush=True)
        results[system] = {}
        for seed in seeds:
            runs = [(st, p) for st in strategies for p in (picks if st == "deviation" and picks else [None])]
            for strategy, pick in runs:
                data = copy.deepcopy(CAMPAIGNS[system](args.quick))
                data["selection"]["strategy"] = strategy
                if pick is not None:
                    data["selection"]["pick"] = pick
                label = f"{strategy}:{pick}" if pick is not None else strategy
                if system == "cuni_shear" and args.shear_runs:
                    data["explorers"][0]["n_runs"] = args.shear_runs
                data.update(seed=seed, name=f"{data['name']}_{label.replace(':', '_')}_s{seed}")
                config = validate_campaign(data, source=system)
                t0 = time.perf_counter()
                workdir = out / data["name"]
                run_campaign(config, ROOT, workdir, echo=lambda *_: None)
                rows = curve(workdir, config, test_frames)
                results[system][(label, seed)] = rows
                print(
                    f"  {label:>17} seed {seed} ({time.perf_counter() - t0:.0f} s): "
                    + "  ".join(f"{r['labels']}:{r['force_rmse']:.4f}/R2 {r['force_r2']:.3f}" for r in rows),
                    flush=True,
                )

    summarise(results, out, start)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
