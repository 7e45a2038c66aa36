"""Benchmark: time to a finished potential, members trained from scratch each round against
warm-started members (``training.warm_start``), on whole campaigns with the same seeds.

Two campaigns, each run twice (scratch, warm) with ``run_campaign`` on the embedded store:

- ``cuni_dpgen``: the DP-GEN Cu–Ni example (flows/cuni_dpgen_eam.yaml: EAM labels, staged MD),
  to convergence or its round limit;
- ``cuni_shear``: the Cu–Ni shear campaign of the demo (flows/demo_cuni_emt.yaml) with the Cu–Ni EAM
  as labeller (CuNi.eam.alloy), a fixed number of rounds.

For each run: wall time, rounds, labels, whether it converged, the final round's test force RMSE
(eV/Å) and energy RMSE (meV/atom) on the campaign's own test set, the autotest rows within
tolerance (campaigns with an ``autotest`` section), and the wall and CPU time per stage of every
round (:mod:`al_flows.workflow.timing`). Then per campaign the ratios warm / scratch. The last line:

    time ratio (warm/scratch) = X; test RMSE ratio = Y

(summed wall time and the geometric mean of the test force RMSE ratios over the campaigns).
Target: X <= 0.5 with Y <= 1.05 and no autotest row lost. Figures are evidence: the script prints
whatever it measures.

``--quick`` (under 15 minutes on 2 cores): both campaigns shrunk (DP-GEN: the alloy's fcc and hcp
cells only, a small test set, one MD stage of 300 K; 3 rounds of each campaign, so rounds 1 and 2
train warm; 3-member ensembles of 24 epochs, 6 warm; no autotest), so that it exercises every part;
its ratios are not the full run's.

    .venv/bin/python benchmarks/time_to_potential.py --quick --out DIR
    .venv/bin/python benchmarks/time_to_potential.py --out DIR
    .venv/bin/python benchmarks/time_to_potential.py --summarise DIR
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

MODES = ("scratch", "warm")


def campaign_settings(name: str, quick: bool, seed: int) -> dict:
    """The campaign file of ``name`` (module doc), shrunk with ``quick``."""
    if name == "cuni_dpgen":
        data = yaml.safe_load((ROOT / "flows" / "cuni_dpgen_eam.yaml").read_text())
        if quick:
            alloy = {**data["initial"]["structures"][2], "lattices": ["fcc", "hcp"], "scales": [1.0]}
            data["initial"]["structures"] = [{**alloy, "n_displaced": 0}]
            data["test_set"] = {"kind": "mixed", "max_frames": 12, "md_steps": 60, "n_sheared": 1}
            md = data["explorers"][0]
            md["stages"] = [{"temperatures_K": [300], "n_steps": 100}]
            md["n_starts"] = 4
            data["max_rounds"] = 3
            data["convergence"] = {"accurate_ratio": 1.0}  # every round runs: both modes train the same rounds
            data.pop("autotest", None)
    elif name == "cuni_shear":
        data = yaml.safe_load((ROOT / "flows" / "demo_cuni_emt.yaml").read_text())
        data["labeller"] = {"kind": "ase", "calculator": "eam", "potential": "CuNi.eam.alloy"}
        data["max_rounds"] = 3 if quick else 8
        data["convergence"] = {"accurate_ratio": 1.0}  # a fixed number of rounds
    else:
        raise SystemExit(f"unknown campaign {name!r}")
    if quick:
        data["ensemble_size"] = 3
        data["training"] = {**data["training"], "epochs": 24}
    data["seed"] = seed
    data["store"] = {"kind": "embedded"}
    return data


def run_one(name: str, mode: str, quick: bool, seed: int, out: Path) -> dict:
    """Run campaign ``name`` in ``mode`` (scratch or warm) into ``out``; its figures (module doc)."""
    from al_flows.campaign.config import validate_campaign
    from al_flows.campaign.record import CampaignRecord
    from al_flows.campaign.run import open_store, run_campaign

    data = campaign_settings(name, quick, seed)
    data["training"] = {**data["training"], "warm_start": mode == "warm"}
    data["name"] = f"ttp_{name}_{mode}_s{seed}"
    config = validate_campaign(copy.deepcopy(data), source=name)
    workdir = out / "campaigns" / data["name"]
    t0 = time.perf_counter()
    report = run_campaign(config, ROOT, workdir, echo=lambda *_: None)
    wall = time.perf_counter() - t0
    store = open_store(config, workdir)
    try:
        record = CampaignRecord(store, config.name)
        times = {str(k): v for k, v in record.stage_times().items()}
    finally:
        store.close()
    rounds = report["rounds"]
    last = rounds[-1] if rounds else {}
    auto = report.get("autotest") or {}
    return {
        "wall_s": round(wall, 1),
        "rounds": len(rounds),
        "labels": (last.get("n_labels_total") or 0) + (last.get("n_labelled") or 0),
        "converged": report.get("converged"),
        "test_force_rmse": last.get("test_force_rmse"),
        "test_energy_rmse_mev": 1000 * last["test_energy_rmse_per_atom"] if last else None,
        "autotest_passed_rows": sum(1 for r in auto.get("rows", []) if r.get("passed", r.get("within"))),
        "autotest_rows": len(auto.get("rows", [])),
        "stage_times": times,
        "member_disagreement": [r.get("member_disagreement") for r in rounds],
    }


def stage_table(run: dict) -> list[str]:
    """Per round: wall seconds per stage, overhead and CPU."""
    lines = []
    for k, t in sorted(run["stage_times"].items(), key=lambda kv: int(kv[0])):
        stages = " ".join(f"{s}={v['wall_s']:.0f}" for s, v in t["stages"].items())
        label = "initial" if int(k) < 0 else f"round {k}"
        lines.append(f"    {label:<9} {stages} overhead={t['overhead_s']:.0f} | cpu={t['total_cpu_s']:.0f}")
    return lines


def summarise(results: dict) -> str:
    """Print every table of ``results`` and return the last line."""
    meta = results["meta"]
    print(f"\n{'QUICK run' if meta['quick'] else 'full run'}; seed {meta['seed']}; {meta['machine']}")
    walls = {m: 0.0 for m in MODES}
    rmse_logs = []
    for name, by_mode in results["runs"].items():
        print(f"\n== {name} ==")
        for mode in MODES:
            r = by_mode.get(mode)
            if r is None:
                continue
            walls[mode] += r["wall_s"]
            auto = f"; autotest {r['autotest_passed_rows']}/{r['autotest_rows']}" if r["autotest_rows"] else ""
            print(
                f"  {mode:<8} wall {r['wall_s']:.0f} s, {r['rounds']} rounds, {r['labels']} labels, "
                f"converged {r['converged']}, test F RMSE {r['test_force_rmse']:.4f} eV/A, "
                f"E RMSE {r['test_energy_rmse_mev']:.1f} meV/atom{auto}"
            )
            print("\n".join(stage_table(r)))
        if all(m in by_mode for m in MODES):
            s, w = by_mode["scratch"], by_mode["warm"]
            ratio = w["test_force_rmse"] / s["test_force_rmse"]
            rmse_logs.append(math.log(ratio))
            lost = s["autotest_passed_rows"] - w["autotest_passed_rows"]
            print(
                f"  warm/scratch: wall {w['wall_s'] / s['wall_s']:.2f}, test F RMSE {ratio:.3f}, "
                f"test E RMSE {w['test_energy_rmse_mev'] / s['test_energy_rmse_mev']:.3f}, "
                f"labels {w['labels']}/{s['labels']}, autotest rows lost {max(lost, 0)}"
            )
    time_ratio = walls["warm"] / walls["scratch"] if walls["scratch"] else float("nan")
    rmse_ratio = math.exp(sum(rmse_logs) / len(rmse_logs)) if rmse_logs else float("nan")
    line = f"time ratio (warm/scratch) = {time_ratio:.2f}; test RMSE ratio = {rmse_ratio:.3f}"
    print(line)
    return line


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shrunk campaigns: under 15 min on 2 cores")
    ap.add_argument("--campaigns", nargs="+", default=["cuni_dpgen", "cuni_shear"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    ap.add_argument("--summarise", default=None, help="only reprint the tables of DIR/results.json")
    args = ap.parse_args()
    if args.summarise:
        summarise(json.loads((Path(args.summarise) / "results.json").read_text()))
        return 0
    import torch

    torch.set_num_threads(2)
    out = Path(args.out or f"runs/time_to_potential{'_quick' if args.quick else ''}")
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "meta": {
            "quick": args.quick,
            "seed": args.seed,
            "machine": platform.platform(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        },
        "runs": {},
    }
    for name in args.campaigns:
        for mode in MODES:
            print(f"{name} {mode} ...", flush=True)
            results["runs"].setdefault(name, {})[mode] = run_one(name, mode, args.quick, args.seed, out)
            (out / "results.json").write_text(json.dumps(results, indent=2))
    summarise(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
