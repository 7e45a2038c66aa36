"""Benchmark: labels saved by deviation selection against random selection, on EAM labels.

Two systems, each labelled by a published embedded-atom potential (``labeller: {kind: ase,
calculator: eam, potential: ...}``; docs/methods.md, "Labellers"):

  (a) ``cuni_shear``: Cu-Ni (001) multilayers (2x2x2, pristine / VNi(N1) / VCu(C1)), CuNi.eam.alloy;
  (b) ``al``: aluminium from random disordered cells and fcc crystals, Al_zhou.eam.alloy.

Two modes:

  ``replay`` (selection isolated from exploration feedback; al_flows.pool_study.replay): one large
      labelled pool per system, made once by the labeller's own explorers (shear paths with every
      optimiser step and MD from every relaxed shear step; MD from random cells and strained fcc)
      and cached on disk. Every strategy starts from the same initial labels (drawn from the pool
      per seed) and repeats: train an ensemble on its labels -> score ``n_scored`` pool frames by the
      ensemble's force deviation -> pick ``k`` -> add them. Every strategy labels exactly k frames a
      round, so all curves meet at the same label counts.
  ``onthefly``: real campaigns (run_campaign: train -> explore -> select -> label) with each
      selection strategy, more exploration per label than before (shear runs / MD replicas).

Strategies: ``random`` (k frames drawn uniformly from the scored ones); ``deviation:highest`` (the k
largest deviations above trust_lo; the headline; on the fly below trust_hi too, which makes the
explorers' unphysical frames 'failed'); ``deviation:window`` (a random pick inside the
trust window [trust_lo, trust_hi) of the example campaigns, filled from just below it when the
window holds fewer than k); ``deviation:diverse`` (farthest-point sampling inside the window) on
request. The printed explored-to-labelled ratio is frames scored (or explored) per round / k.

Test sets (never trained on, disjoint from the pool; al_flows.pool_study.replay_sets): Cu-Ni:
labeller-relaxed shear paths scored as energy profiles relative to gamma = 0 (per-path RMSE and
barrier error), the generalised stacking-fault energy of Cu and Ni, MD at 300 and 600 K; Al: MD
of fresh random cells and fcc, the vacancy formation energy and (100) and (111) surface energies.

The comparison (al_flows.validation.label_efficiency), per system and mode, deviation against
random, pairing runs by seed: the error ratio at every label count both reached (no
interpolation); exp of the difference of the mean log error over the common label range (the
area under log(error) against labels); and the label ratio, labels deviation needs to reach
random's final error / labels random's curve needed (< 1 saves labels; '>' when some seed never
reached it: a lower bound), each with a paired bootstrap 95 % interval over seeds, for the test
force RMSE and the test energy RMSE. The last line is

    label ratio (deviation/random) = X [lo, hi]

for cuni_shear (replay mode when it ran, deviation:highest).

    .venv/bin/python benchmarks/label_efficiency.py --quick --out DIR   # cuni_shear replay, 3 seeds
    .venv/bin/python benchmarks/label_efficiency.py --out DIR          # 8 seeds, both systems, both modes
    .venv/bin/python benchmarks/label_efficiency.py --summarise DIR    # reprint DIR/results.json
    .venv/bin/python benchmarks/label_efficiency.py --merge A B --out DIR  # join parts run side by side
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import pickle
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
POOL_SEED = 20261207  # the pools and test sets do not depend on any campaign seed
TEST_SEED = 20261208
CACHE_VERSION = 1  # bump when a pool or test-set builder changes

SYSTEMS = {
    "cuni_shear": {
        "potential": "CuNi.eam.alloy",
        "elements": ["Cu", "Ni"],
        "cutoff": 4.5,
        "window": (0.05, 0.5),  # flows/cuni_dpgen_emt.yaml's DP-GEN levels, chosen before any run
    },
    "al": {
        "potential": "Al_zhou.eam.alloy",
        "elements": ["Al"],
        "cutoff": 5.0,
        "window": (0.1, 1.0),  # flows/al_random_cells_emt.yaml's levels, chosen before any run
    },
}
METRICS = {  # key: (title, unit, lower is better)
    "force_rmse": ("test force RMSE", "eV/Å"),
    "energy_rmse": ("test energy RMSE", "meV/atom"),
}
HEADLINE = "deviation:highest"
COVERAGE = 0.9  # nominal coverage of the calibrated error bound checked each round (docs/methods.md)


def settings(quick: bool) -> dict:
    """The run's sizes (quick: fewer seeds, rounds and members, a smaller pool)."""
    return {
        "initial": 8,
        "k": 4,
        "rounds": 4 if quick else 8,
        "n_scored": 600 if quick else 1500,
        "ensemble": 3 if quick else 4,
        "epochs": 30 if quick else 40,
        "cuni_runs": 2 if quick else 6,
        "al_cells": 8 if quick else 24,
        "shear_runs_onthefly": 17,
        "seeds": [0, 1, 2] if quick else list(range(8)),
    }


# ---------------------------------------------------------------------------------------- data sets


def make_calculator(system: str):
    from al_flows.labelling.eam import eam_factory

    return eam_factory(SYSTEMS[system]["potential"])


def cached(cache: Path, name: str, key: dict, build):
    """``build()``'s result, pickled under ``cache`` by a hash of ``key`` (and the potential file's sha256)."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache / f"{name}_{digest}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    value = build()
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(value))
    tmp.replace(path)
    return value


def data_sets(system: str, cfg: dict, cache: Path) -> tuple[list, dict]:
    """(pool, test set) of ``system``, built once and cached."""
    from al_flows.labelling.eam import file_sha256, resolve_potential
    from al_flows.pool_study import replay_sets as rs

    sha = file_sha256(resolve_potential(SYSTEMS[system]["potential"]))
    mk = make_calculator(system)
    base = {"system": system, "sha256": sha, "version": CACHE_VERSION}
    if system == "cuni_shear":
        pool = cached(
            cache,
            "pool_cuni",
            {**base, "runs": cfg["cuni_runs"]},
            lambda: rs.cuni_pool(mk, POOL_SEED, cfg["cuni_runs"]),
        )
        test = cached(cache, "test_cuni", base, lambda: rs.cuni_test_set(mk, TEST_SEED))
    else:
        pool = cached(
            cache, "pool_al", {**base, "cells": cfg["al_cells"]}, lambda: rs.al_pool(mk, POOL_SEED, cfg["al_cells"])
        )
        test = cached(cache, "test_al", base, lambda: rs.al_test_set(mk, TEST_SEED))
    rs.check_disjoint(pool, test["frames"])
    return pool, test


# ---------------------------------------------------------------------------------------- models


def model_settings(system: str, cfg: dict):
    from al_flows.potential import ModelSettings, TrainingSettings

    model = ModelSettings(n_atom_basis=32, n_interactions=2, n_rbf=20, cutoff=SYSTEMS[system]["cutoff"])
    training = TrainingSettings(
        epochs=cfg["epochs"], batch_size=8, lr=2e-3, lr_patience=10, val_fraction=0.1, device="cpu"
    )
    return model, training


def train_ensemble(frames: list, system: str, cfg: dict, seed: int, rnd: int):
    """An ensemble of ``cfg['ensemble']`` members trained on ``frames``; member seeds: (seed, round, member)."""
    from al_flows.potential import Ensemble, train_member

    model, training = model_settings(system, cfg)
    blobs = []
    for m in range(cfg["ensemble"]):
        member_seed = int(np.random.SeedSequence([seed, rnd, m, 5]).generate_state(1)[0])
        blobs.append(train_member(frames, model, training, member_seed, SYSTEMS[system]["elements"]).blob)
    return Ensemble.from_bytes(blobs, device="cpu")


def evaluator(test: dict):
    """evaluate(ensemble) -> the test metrics of one model (module docstring)."""
    from al_flows.selection.calibration_record import residuals_of
    from al_flows.validation.label_efficiency import energy_differences, profile_errors

    frames = test["frames"]
    ref_e = np.array([a.get_potential_energy() for a in frames])
    ref_f = [a.get_forces() for a in frames]
    n_atoms = np.array([len(a) for a in frames])
    idx = test["force_frames"]
    md = [i for i in idx if str(frames[i].info.get("test_kind", "")).startswith("md_")]
    ref_specs = energy_differences(test["specs"], ref_e)

    def evaluate(ensemble) -> dict:
        pred = ensemble.predict(frames)
        e, f = pred.mean_energies, pred.mean_forces

        def f_rmse(ii):
            return float(np.sqrt(np.mean(np.concatenate([(f[i] - ref_f[i]).ravel() ** 2 for i in ii]))))

        out = {
            "test_points": residuals_of(
                [frames[i] for i in idx], pred.energies[:, idx], [pred.forces[i] for i in idx], 0
            ),
            "force_rmse": f_rmse(idx),
            "force_rmse_md": f_rmse(md),
            "energy_rmse": 1000 * float(np.sqrt(np.mean(((e[idx] - ref_e[idx]) / n_atoms[idx]) ** 2))),
            "energy_rmse_md": 1000 * float(np.sqrt(np.mean(((e[md] - ref_e[md]) / n_atoms[md]) ** 2))),
        }
        if test["paths"]:
            errs = [profile_errors(ref_e[p], e[p]) for p in test["paths"]]
            out["profile_rmse"] = 1000 * float(np.sqrt(np.mean([x["rmse"] ** 2 for x in errs])))
            out["barrier_mae"] = 1000 * float(np.mean([abs(x["barrier_error"]) for x in errs]))
        diff = energy_differences(test["specs"], e) - ref_specs
        for group in sorted({s["group"] for s in test["specs"]}):
            g = [i for i, s in enumerate(test["specs"]) if s["group"] == group]
            out[f"{group}_rmse"] = float(np.sqrt(np.mean(diff[g] ** 2)))
        return out

    return evaluate


# ---------------------------------------------------------------------------------------- replay


def strategies(system: str, names: list[str]):
    from al_flows.pool_study.replay import ReplayStrategy

    lo, hi = SYSTEMS[system]["window"]
    table = {
        "random": ReplayStrategy("random", strategy="random"),
        "deviation:highest": ReplayStrategy("deviation:highest", pick="highest", trust_lo=lo, trust_hi=1e3),
        "deviation:window": ReplayStrategy("deviation:window", pick="random", trust_lo=lo, trust_hi=hi),
        "deviation:diverse": ReplayStrategy("deviation:diverse", pick="diverse", trust_lo=lo, trust_hi=hi),
    }
    return [table[n] for n in names]


def replay_seed(system: str, pool: list, test: dict, cfg: dict, seed: int, names: list[str]) -> dict:
    from al_flows.pool_study.replay import run_replay

    initial = np.random.default_rng((seed, 3)).choice(len(pool), cfg["initial"], replace=False)
    cache: dict = {}

    def train(indices, rnd):
        key = tuple(indices)
        if key not in cache:  # the shared round 0
            cache[key] = train_ensemble([pool[i] for i in indices], system, cfg, seed, rnd)
        return cache[key] if rnd == 0 else cache.pop(key)

    def score(ens, indices):
        return ens.predict([pool[i] for i in indices]).deviation

    def features(ens, indices):
        return ens.atom_features([pool[i] for i in indices])

    def residuals(ens, indices):
        from al_flows.selection.calibration_record import residuals_of

        frames = [pool[i] for i in indices]
        pred = ens.predict(frames)
        return residuals_of(frames, pred.energies, pred.forces, 0)

    return run_replay(
        len(pool),
        initial,
        strategies(system, names),
        cfg["k"],
        cfg["rounds"],
        min(cfg["n_scored"], len(pool) - cfg["initial"] - cfg["k"] * cfg["rounds"]),
        train,
        score,
        evaluator(test),
        pool,
        seed,
        features=features,
        residuals=residuals,
        coverage=COVERAGE,
    )


# ---------------------------------------------------------------------------------------- on the fly


def campaign(system: str, cfg: dict, strategy: str, pick: str, seed: int) -> dict:
    lo, hi = SYSTEMS[system]["window"]
    common = {
        "model": {"n_atom_basis": 32, "n_interactions": 2, "n_rbf": 20, "cutoff": SYSTEMS[system]["cutoff"]},
        "training": {"epochs": cfg["epochs"], "batch_size": 8, "lr": 2e-3, "lr_patience": 10, "val_fraction": 0.1},
        "ensemble_size": cfg["ensemble"],
        "selection": {
            "strategy": strategy,
            "pick": pick,
            "trust_lo": lo,
            # the explorers' unphysical frames (atoms pushed together) are the failed class here: an open
            # window made pick highest label only frames the labeller refuses (forces above labeller.max_force)
            "trust_hi": hi,
            "max_candidates": cfg["k"],
        },
        "labeller": {
            "kind": "ase",
            "calculator": "eam",
            "potential": SYSTEMS[system]["potential"],
            "min_success_fraction": 0.0,
        },
        "test_set": {"kind": "perturbed", "n_per_structure": 1},  # unused: the benchmark's own test set scores
        "max_rounds": cfg["rounds"],
        "convergence": {"accurate_ratio": 1.0},  # every round runs: the curves need the same rounds
        "seed": seed,
        "name": f"le2_{system}_{strategy}_{pick}_s{seed}",
    }
    if system == "cuni_shear":
        return {
            **common,
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
                "n_rattled": 3,
                "rattle_sigma": 0.04,
                "strain_max": 0.01,
            },
            "explorers": [
                {
                    "kind": "shear",
                    "name": "shear",
                    "n_runs": cfg["shear_runs_onthefly"],
                    "sigma": 0.05,
                    "shear_step": 0.5,
                    "gamma_max": 0.33,
                    "fmax": 0.05,
                    "max_opt_steps": 100,
                }
            ],
        }
    return {
        **common,
        "elements": ["Al"],
        "initial": {
            "structures": [
                {
                    "kind": "random_cells",
                    "n_cells": 8,
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
        "explorers": [
            {
                "kind": "langevin_schedule",
                "name": "langevin",
                "n_runs": 24,
                "t_max_ps": 1.0,
                "timestep_fs": 2.0,
                "friction_per_ps": 5.0,
                "stop_deviation": hi,
                "record_every": 5,
                "start": "structures",
                "stop_measure": "force_deviation",
                "label_stop_frames": False,
                "select_snapshots": True,
            }
        ],
    }


def onthefly_run(system: str, cfg: dict, test: dict, name: str, seed: int, out: Path) -> list[dict]:
    from al_flows.campaign.config import validate_campaign
    from al_flows.campaign.record import CampaignRecord
    from al_flows.campaign.run import open_store, run_campaign
    from al_flows.workflow.jobs import load_ensemble

    strategy, _, pick = name.partition(":")
    pick = {"highest": "highest", "window": "random", "diverse": "diverse", "": "random"}[pick]
    data = campaign(system, cfg, strategy, pick, seed)
    config = validate_campaign(copy.deepcopy(data), source=system)
    workdir = out / "campaigns" / data["name"]
    run_campaign(config, ROOT, workdir, echo=lambda *_: None)
    evaluate = evaluator(test)
    store = open_store(config, workdir)
    try:
        record = CampaignRecord(store, config.name)
        rows = []
        for k, summary in sorted(record.summaries().items()):
            docs = {d["output"]["model_id"]: d["output"] for d in record.outputs("train", k, load=True)}
            ens = load_ensemble([docs[m] for m in summary["model_ids"]], device="cpu")
            rows.append(
                {
                    "round": k,
                    "labels": summary["n_labels_total"],
                    "new_labels": summary["n_labelled"],
                    "n_scored": summary.get("n_explored"),
                    "n_window": summary.get("n_candidate"),
                    **evaluate(ens),
                }
            )
        return rows
    finally:
        store.close()


# ---------------------------------------------------------------------------------------- summary


def curves(runs: dict, name: str, metric: str) -> dict[int, tuple[list, list]]:
    """{seed: (labels, values)} of one strategy."""
    return {
        int(seed): ([r["labels"] for r in by[name]], [r[metric] for r in by[name]])
        for seed, by in runs.items()
        if name in by and all(metric in r for r in by[name])
    }


def compare(runs: dict, a: str, b: str, metric: str) -> dict | None:
    """The paired comparison of a against b on ``metric`` (module docstring)."""
    from al_flows.validation import label_efficiency as le

    ca, cb = curves(runs, a, metric), curves(runs, b, metric)
    seeds = sorted(set(ca) & set(cb))
    if not seeds:
        return None
    label_rows = [le.label_ratio(*ca[s], *cb[s]) for s in seeds]
    ratio = le.label_ratio_interval(label_rows)
    # the equal-label ratios: at each label count every seed holds, a geometric mean over seeds
    per_seed = {s: le.equal_label_ratios(*ca[s], *cb[s]) for s in seeds}
    counts = sorted(set.intersection(*(set(p) for p in per_seed.values())))
    equal = {}
    for n in counts:
        logs = np.log([per_seed[s][n] for s in seeds])
        est, lo, hi = le.paired_bootstrap(logs, np.zeros_like(logs), lambda x, _: float(np.mean(x)))
        equal[n] = [float(np.exp(est)), float(np.exp(lo)), float(np.exp(hi))]
    area = None
    if len(counts) >= 2:
        lo_n, hi_n = counts[0], counts[-1]
        da = [le.mean_log_error(*ca[s], lo_n, hi_n) for s in seeds]
        db = [le.mean_log_error(*cb[s], lo_n, hi_n) for s in seeds]
        est, lo, hi = le.paired_bootstrap(da, db, lambda x, y: float(np.mean(x - y)))
        area = [float(np.exp(est)), float(np.exp(lo)), float(np.exp(hi))]
    return {"seeds": seeds, "label_ratio": ratio, "per_seed": label_rows, "equal_labels": equal, "area_ratio": area}


def fmt(x, digits=3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def print_coverage(runs: dict, names: list[str]) -> None:
    """The calibrated bound's check per strategy and label count, mean over seeds (runs whose rows
    carry ``calibration``; al_flows.pool_study.replay.calibration_row): coverage on the test frames of
    the bound from every residual so far, its raw coverage (error <= deviation), the coverage on the
    frames just picked of the bound before them, and the pooled scale."""
    rows = [r for by in runs.values() for rs in by.values() for r in rs if r.get("calibration")]
    if not rows:
        return
    print(f"calibrated bound, nominal coverage {COVERAGE:.2f} (mean over seeds with a finite bound; n: such seeds):")
    for name in names:
        by_labels: dict = {}
        for by in runs.values():
            for r in by.get(name, []):
                if r.get("calibration"):
                    by_labels.setdefault(r["labels"], []).append(r["calibration"])
        for n, cs in sorted(by_labels.items()):

            def mean(key, cs=cs):
                vals = [c[key] for c in cs if c.get(key) is not None]
                return (float(np.mean(vals)), len(vals)) if vals else (None, 0)

            (tc, nt), (raw, _), (pc, npk), (q, _) = (
                mean(k) for k in ("test_coverage", "test_raw_coverage", "picked_coverage", "bound_scale")
            )
            print(
                f"  {name:<18} {n:>4} labels: test coverage {fmt(tc, 2)} (n {nt}), raw {fmt(raw, 2)}; "
                f"picked coverage {fmt(pc, 2)} (n {npk}); scale {fmt(q, 2)}; residuals {cs[0]['n_residuals']}"
            )


def summarise(results: dict) -> list[str]:
    """Print every table of ``results`` (a results.json) and return the headline lines."""
    from al_flows.validation.label_efficiency import format_interval

    meta = results["meta"]
    seeds = meta["settings"]["seeds"]
    kind = f"QUICK run: {len(seeds)} seeds (the full run: 8), fewer rounds and members" if meta["quick"] else "full run"
    print(f"\n{kind}; seeds {seeds}; settings {meta['settings']}")
    final = {}
    for system, modes in results["runs"].items():
        for mode, runs in modes.items():
            if not runs:
                continue
            names = sorted({n for by in runs.values() for n in by})
            print(f"\n== {system}, {mode} mode ({len(runs)} seeds) ==")
            ratios = [
                r["n_scored"] / meta["settings"]["k"]
                for by in runs.values()
                for rows in by.values()
                for r in rows[1:]
                if r.get("n_scored")
            ]
            if ratios:
                print(f"explored (scored) frames per round / labels per round = {min(ratios):.0f} to {max(ratios):.0f}")
            metrics = [
                m
                for m in next(iter(next(iter(runs.values())).values()))[0]
                if m not in ("round", "labels", "picked", "n_scored", "new_labels", "n_window", "calibration")
            ]
            print("mean over seeds per label count (" + ", ".join(metrics) + "):")
            for name in names:
                by_labels: dict = {}
                for by in runs.values():
                    for r in by.get(name, []):
                        by_labels.setdefault(r["labels"], []).append(r)
                for n, rs in sorted(by_labels.items()):
                    vals = "  ".join(
                        f"{m} {fmt(float(np.mean([r[m] for r in rs if r.get(m) is not None])))}" for m in metrics
                    )
                    share = [r["window_share"] for r in rs if r.get("window_share") is not None]
                    extra = f"  window share {np.mean(share):.2f}" if share and name != "random" else ""
                    fill = sum(r.get("n_fill", 0) for r in rs)
                    extra += f"  filled {fill}" if fill else ""
                    print(f"  {name:<18} {n:>4} labels ({len(rs)} seeds): {vals}{extra}")
            print_coverage(runs, names)
            for name in [n for n in names if n != "random"]:
                for metric, (title, unit) in METRICS.items():
                    c = compare(runs, name, "random", metric)
                    if c is None:
                        continue
                    lr = c["label_ratio"]
                    print(f"  {name} / random, {title} ({unit}), seeds {c['seeds']}:")
                    print(
                        "    equal labels (geometric mean ratio [95 % paired bootstrap]): "
                        + "; ".join(f"{n:.0f}: {format_interval(*v)}" for n, v in c["equal_labels"].items())
                    )
                    if c["area_ratio"]:
                        print(
                            "    area under log error (a geometric-mean ratio over the curve): "
                            + format_interval(*c["area_ratio"])
                        )
                    per = ", ".join(f"{'>' if not r['reached'] else ''}{r['ratio']:.2f}" for r in c["per_seed"])
                    line = format_interval(lr["ratio"], lr["lo"], lr["hi"], lr["lower_bound"])
                    print(
                        f"    label ratio {line} (per seed {per}; {lr['n_unreached']} of {lr['n_seeds']} never reached)"
                    )
                    if name == HEADLINE and metric == "force_rmse":
                        final[(system, mode)] = line
                others = [m for m in metrics if m not in METRICS]
                if others:
                    print(f"  {name} / random, the other test metrics (ratio at the last common label count; area):")
                for metric in others:
                    c = compare(runs, name, "random", metric)
                    if c is None or not c["equal_labels"]:
                        continue
                    last = max(c["equal_labels"])
                    area = format_interval(*c["area_ratio"]) if c["area_ratio"] else "n/a"
                    print(f"    {metric:<16} at {last:.0f}: {format_interval(*c['equal_labels'][last])}; area {area}")
    lines = [f"label ratio (deviation/random), {s}, {m}, test force RMSE = {v}" for (s, m), v in final.items()]
    for line in lines:
        print(line)
    key = ("cuni_shear", "replay") if ("cuni_shear", "replay") in final else next(iter(final), None)
    if key is not None:
        print(f"label ratio (deviation/random) = {final[key]}")
    return lines


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(s, m) for s, modes in results["runs"].items() for m, runs in modes.items() if runs]
    if not panels:
        return
    fig, axes = plt.subplots(2, len(panels), figsize=(5 * len(panels), 7.5), squeeze=False)
    colours = {
        "random": "tab:orange",
        "deviation:highest": "tab:blue",
        "deviation:window": "tab:purple",
        "deviation:diverse": "tab:red",
    }
    for j, (system, mode) in enumerate(panels):
        for i, metric in enumerate(METRICS):
            ax = axes[i][j]
            runs = results["runs"][system][mode]
            names = sorted({n for by in runs.values() for n in by})
            for name in names:
                for k, (labels, values) in enumerate(curves(runs, name, metric).values()):
                    ax.plot(
                        labels, values, "-", color=colours.get(name, "k"), alpha=0.3, label=name if k == 0 else None
                    )
            ax.set_yscale("log")
            ax.set_xlabel("labels")
            ax.set_ylabel(f"{METRICS[metric][0]} ({METRICS[metric][1]})")
            ax.set_title(f"{system}, {mode}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results: dict, out: Path) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=1))


def merge(parts: list[dict]) -> dict:
    """One results.json from runs of the same settings on other seeds, systems or modes (e.g. parts
    run side by side, one per core): the runs and timings joined, the seeds the union; ``wall_s`` the
    longest part's (they ran at once) and ``parts_wall_s`` each part's. Refuses parts whose settings
    other than the seeds differ, or that hold the same run twice."""
    first = parts[0]["meta"]
    same = {k: v for k, v in first["settings"].items() if k != "seeds"}
    out: dict = {"meta": copy.deepcopy(first), "runs": {}, "timings_s": {}}
    for part in parts:
        meta = part["meta"]
        if {k: v for k, v in meta["settings"].items() if k != "seeds"} != same or meta["quick"] != first["quick"]:
            raise SystemExit("--merge: the parts were run with other settings; merge runs of one configuration only")
        out["meta"]["systems"].update(meta["systems"])
        out["meta"].setdefault("sets", {}).update(meta.get("sets", {}))
        out["meta"]["strategies"] = sorted(set(out["meta"]["strategies"]) | set(meta["strategies"]))
        for system, modes in part["runs"].items():
            for mode, runs in modes.items():
                into = out["runs"].setdefault(system, {}).setdefault(mode, {})
                twice = sorted(set(into) & set(runs))
                if twice:
                    raise SystemExit(f"--merge: {system} {mode} seeds {twice} are in more than one part")
                into.update(runs)
        out["timings_s"].update(part["timings_s"])
    seeds = sorted({int(s) for modes in out["runs"].values() for runs in modes.values() for s in runs})
    out["meta"]["settings"]["seeds"] = seeds
    out["meta"]["started"] = min(p["meta"]["started"] for p in parts)
    out["parts_wall_s"] = [p.get("wall_s") for p in parts]
    out["wall_s"] = max(p.get("wall_s") or 0.0 for p in parts)
    return out


def main() -> int:
    import torch

    torch.set_num_threads(1)
    for name in ("jobflow", "al_flows"):
        logging.getLogger(name).setLevel(logging.WARNING)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="cuni_shear replay, 3 seeds, 4 rounds: < 15 min on 2 cores")
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    ap.add_argument("--systems", nargs="+", default=None, choices=list(SYSTEMS))
    ap.add_argument("--modes", nargs="+", default=None, choices=["replay", "onthefly"])
    ap.add_argument(
        "--strategies",
        nargs="+",
        default=None,
        choices=["random", "deviation:highest", "deviation:window", "deviation:diverse"],
    )
    ap.add_argument("--out", default=None, help="directory for results.json, the PNG and campaign work directories")
    ap.add_argument(
        "--cache", default=None, help="pool and test-set cache (default ~/.cache/al_flows/label_efficiency)"
    )
    ap.add_argument("--summarise", metavar="DIR", help="only reprint the tables of DIR/results.json")
    ap.add_argument(
        "--merge",
        nargs="+",
        metavar="DIR",
        help="join the results.json of runs with the same settings (other seeds, systems or modes) into --out",
    )
    args = ap.parse_args()
    if args.summarise:
        summarise(json.loads((Path(args.summarise) / "results.json").read_text()))
        return 0
    if args.merge:
        if not args.out:
            ap.error("--merge needs --out, the folder for the joined results.json")
        merged = merge([json.loads((Path(d) / "results.json").read_text()) for d in args.merge])
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write(merged, out)
        plot(merged, out / "label_efficiency.png")
        summarise(merged)
        return 0
    cfg = settings(args.quick)
    if args.seeds:
        cfg["seeds"] = args.seeds
    systems = args.systems or (["cuni_shear"] if args.quick else list(SYSTEMS))
    modes = args.modes or (["replay"] if args.quick else ["replay", "onthefly"])
    names = args.strategies or ["random", "deviation:highest", "deviation:window"]
    if "random" not in names or HEADLINE not in names:
        ap.error(f"--strategies must include random and {HEADLINE} (the headline compares them)")
    out = Path(args.out or f"runs/label_efficiency{'_quick' if args.quick else ''}")
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache or Path.home() / ".cache" / "al_flows" / "label_efficiency")
    start = time.perf_counter()
    results: dict = {
        "meta": {
            "quick": args.quick,
            "settings": cfg,
            "systems": {s: SYSTEMS[s] for s in systems},
            "strategies": names,
            "machine": platform.platform(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        },
        "runs": {s: {m: {} for m in modes} for s in systems},
        "timings_s": {},
    }
    # replay first for every system (the quick headline), then the campaigns
    for mode in modes:
        for system in systems:
            t0 = time.perf_counter()
            pool, test = data_sets(system, cfg, cache)
            results["meta"].setdefault("sets", {})[system] = {
                "pool_frames": len(pool),
                "test_frames": len(test["frames"]),
                "force_frames": len(test["force_frames"]),
                "energy_specs": len(test["specs"]),
                "paths": len(test["paths"]),
            }
            print(
                f"{system}: pool {len(pool)} frames, test {len(test['frames'])} frames "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
            for seed in cfg["seeds"]:
                t1 = time.perf_counter()
                if mode == "replay":
                    by = replay_seed(system, pool, test, cfg, seed, names)
                else:
                    by = {n: onthefly_run(system, cfg, test, n, seed, out) for n in names}
                results["runs"][system][mode][str(seed)] = by
                results["timings_s"][f"{system}/{mode}/{seed}"] = round(time.perf_counter() - t1, 1)
                print(
                    f"  {mode} seed {seed} ({time.perf_counter() - t1:.0f} s): "
                    + "; ".join(
                        f"{n} " + " ".join(f"{r['labels']}:{r['force_rmse']:.3f}" for r in rows)
                        for n, rows in by.items()
                    ),
                    flush=True,
                )
                results["wall_s"] = round(time.perf_counter() - start, 1)
                write(results, out)
    results["wall_s"] = round(time.perf_counter() - start, 1)
    write(results, out)
    plot(results, out / "label_efficiency.png")
    print(f"wrote {out / 'results.json'} and {out / 'label_efficiency.png'} ({results['wall_s']:.0f} s)")
    summarise(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
