"""Benchmark: an example campaign over several seeds, its labels, rounds and autotest rows per seed.

Runs ``flows/<example>.yaml`` once per seed (only ``seed`` and ``name`` change) and prints, per
seed, the rounds run, labels, final accurate ratio and test force RMSE, and the autotest rows
within tolerance; then one table with every autotest row (property, per-seed error, tolerance,
seeds within) and the line

    autotest rows within tolerance: N of M (per seed: a, b, c)

so a conclusion drawn from one run ("hcp-fcc within tolerance") can be checked across seeds.
Baseline: none (a reproducibility check, not a speed-up); the autotest reference is the
campaign's own (EMT for the EMT examples).

    .venv/bin/python benchmarks/example_seeds.py flows/al_random_cells_emt.yaml [--seeds 0 1 2] [--out DIR]
    .venv/bin/python benchmarks/example_seeds.py flows/cuni_dpgen_emt.yaml --seeds 0
    .venv/bin/python benchmarks/example_seeds.py flows/al_random_cells_emt.yaml --out DIR --existing  # tables, no rerun
    ... --existing --autotest-again  # and the final ensembles' autotest again with the file's current settings
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import yaml


def autotest_rows(workdir: Path, config) -> list[dict]:
    """Every autotest row of the campaign's last autotest, with its element."""
    from al_flows.campaign.record import CampaignRecord
    from al_flows.campaign.run import open_store

    store = open_store(config, workdir)
    try:
        docs = CampaignRecord(store, config.name).outputs("autotest")
        if not docs:
            return []
        results = docs[-1]["output"]["results"]
        return [dict(r, element=el) for el, res in sorted(results.items()) for r in res["rows"]]
    finally:
        store.close()


def autotest_rows_again(workdir: Path, config, final_round: int) -> list[dict]:
    """The autotest rows of the campaign's final ensemble computed now, with the campaign file's
    current autotest settings (for runs finished before rows were added to the autotest)."""
    from al_flows.active_learning.builders import autotest_settings
    from al_flows.active_learning.jobs.autotest import final_models
    from al_flows.campaign.run import open_store
    from al_flows.labelling.ase import calculator_factory
    from al_flows.validation.autotest import autotest
    from al_flows.workflow.jobs import load_ensemble

    settings = autotest_settings(config)
    store = open_store(config, workdir)
    try:
        ensemble = load_ensemble(final_models(store, config.name, final_round))
    finally:
        store.close()
    reference = calculator_factory(settings.reference, settings.reference_kwargs)
    return [
        dict(r, element=el)
        for el in (settings.elements or config.elements)
        for r in autotest(el, reference, ensemble.calculator, settings)["rows"]
    ]


def main() -> int:
    from al_flows.campaign.config import validate_campaign
    from al_flows.campaign.run import run_campaign

    for name in ("jobflow", "al_flows"):
        logging.getLogger(name).setLevel(logging.WARNING)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", help="an example campaign file, e.g. flows/al_random_cells_emt.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default=None, help="directory for the work directories and results.json")
    ap.add_argument(
        "--existing",
        action="store_true",
        help="read a seed's finished work directory in --out (its report.json) instead of running it again",
    )
    ap.add_argument(
        "--autotest-again",
        action="store_true",
        help="with --existing: compute the autotest of each final ensemble again with the file's current settings",
    )
    args = ap.parse_args()
    path = Path(args.config).resolve()
    data = yaml.safe_load(path.read_text())
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="al_examples_"))
    out.mkdir(parents=True, exist_ok=True)
    per_seed: dict[int, dict] = {}
    for seed in args.seeds:
        config = validate_campaign(dict(data, seed=seed, name=f"{data['name']}_s{seed}"), source=str(path))
        t0 = time.perf_counter()
        workdir = out / config.name
        if args.existing and (workdir / "report.json").is_file():  # a finished run: read, do not rerun
            report = json.loads((workdir / "report.json").read_text())
        else:
            report = run_campaign(config, path.parent, workdir, echo=lambda *_: None)
        last = report["rounds"][-1]
        if args.existing and args.autotest_again:
            rows = autotest_rows_again(workdir, config, last["round"])
        else:
            rows = autotest_rows(workdir, config)
        per_seed[seed] = {
            "wall_s": (report.get("wall_time_s") if args.existing else None) or time.perf_counter() - t0,
            "rounds": len(report["rounds"]),
            "converged": report["converged"],
            "labels": last["n_labels_total"] + last["n_labelled"],
            "accurate_ratio": last["accurate_ratio"],
            "accurate_ratios": [r["accurate_ratio"] for r in report["rounds"]],
            "test_force_rmse": last["test_force_rmse"],
            "test_force_r2": last.get("test_force_r2"),
            "autotest": rows,
        }
        s = per_seed[seed]
        print(
            f"seed {seed} ({s['wall_s']:.0f} s): {s['rounds']} rounds, {s['labels']} labels, "
            f"converged {s['converged']}, accurate ratios {' '.join(f'{x:.2f}' for x in s['accurate_ratios'])}, "
            f"test force RMSE {s['test_force_rmse']:.3f} eV/A; "
            f"autotest {sum(r['passed'] for r in rows)} of {len(rows)} rows within tolerance",
            flush=True,
        )
    (out / "results.json").write_text(json.dumps({str(k): v for k, v in per_seed.items()}, indent=1))
    seeds = list(per_seed)
    keys = [(r["element"], r["property"]) for r in per_seed[seeds[0]]["autotest"]]
    if keys:
        print(
            "\n| element | property | unit | reference | "
            + " | ".join(f"error s{s}" for s in seeds)
            + " | tolerance | seeds within |"
        )
        print("|---|---|---|---|" + "---|" * len(seeds) + "---|---|")
        for el, prop in keys:
            rows = [
                next(r for r in per_seed[s]["autotest"] if (r["element"], r["property"]) == (el, prop)) for s in seeds
            ]
            tol = rows[0]["tolerance"]
            print(
                f"| {el} | {prop} | {rows[0]['unit']} | {rows[0]['reference']:.4g} | "
                + " | ".join(f"{r['abs_error']:.3g}" for r in rows)
                + f" | {'-' if tol is None else f'{tol:g}'} | {sum(r['passed'] for r in rows)} of {len(rows)} |"
            )
        within = [sum(r["passed"] for r in per_seed[s]["autotest"]) for s in seeds]
        total = sum(len(per_seed[s]["autotest"]) for s in seeds)
        print(
            f"\nautotest rows within tolerance: {sum(within)} of {total} (per seed: {', '.join(map(str, within))} "
            f"of {len(keys)}); labels per seed: {', '.join(str(per_seed[s]['labels']) for s in seeds)}"
        )
    print(f"wrote {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
