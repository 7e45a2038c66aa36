"""Benchmark: active sampling vs uniform 8:1:1 static training at equal optimiser steps (Sprueill et al.).

Runs the pool study of ``flows/cuni_pool_emt.yaml`` (EMT-labelled Cu-Ni pool) without its shear
study and validation, for each seed given, and prints per seed and as a median:

    uniform/active best-validation-loss ratio   (Sprueill et al.'s Table I measure; > 1: active better)
    uniform/active held-out test force RMSE ratio (same test frames for both; > 1: active better)

Baseline named in the output: "uniform" (static training on a uniform random 8:1 split of the
non-test pool, same model settings, same number of optimiser steps as the active run).

    .venv/bin/python benchmarks/active_vs_uniform.py [--seeds 0 1 2] [--config flows/cuni_pool_emt.yaml] [--keep DIR]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    from al_flows.campaign.config import validate_campaign
    from al_flows.campaign.run import run_campaign
    from al_flows.pool_study.strategies import table_markdown

    logging.getLogger("jobflow").setLevel(logging.WARNING)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "flows" / "cuni_pool_emt.yaml"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--keep", help="keep the work directories under this directory")
    args = ap.parse_args()
    data = yaml.safe_load(Path(args.config).read_text())
    data.pop("shear_study", None)
    data.pop("validation", None)
    data["baselines"] = {"uniform": True, "active_set": True, "budget": "steps"}
    val_ratios, test_ratios = [], []
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="al_bench_"))
    for seed in args.seeds:
        config = validate_campaign(dict(data, seed=seed, name=f"{data['name']}_bench_s{seed}"), source=args.config)
        start = time.perf_counter()
        report = run_campaign(config, Path(args.config).resolve().parent, base / f"seed{seed}", echo=lambda *_: None)
        r = report["ratios"]
        val_ratios.append(r["uniform_over_active_best_val_loss"])
        test_ratios.append(r["uniform_over_active_test_force_rmse"])
        print(f"seed {seed} ({time.perf_counter() - start:.0f} s)")
        print(table_markdown(report["table"]))
        print(
            f"seed {seed}: uniform/active best val loss = {val_ratios[-1]:.3f}; "
            f"uniform/active test force RMSE = {test_ratios[-1]:.3f}; "
            f"active-set/active test force RMSE = {r['active_set_over_active_test_force_rmse']:.3f}",
            flush=True,
        )
    print(
        f"median over {len(args.seeds)} seed(s) (baseline: uniform 8:1:1 static, equal optimiser steps): "
        f"uniform/active best val loss = {statistics.median(val_ratios):.3f}, "
        f"uniform/active test force RMSE = {statistics.median(test_ratios):.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
