"""What the campaign report reads from the JobStore: round summaries, selections, training curves,
the final ensemble on the test set, and whether the campaign finished.

A round's documents are the ones of its summary's ensemble where a summary exists, so a re-run
round shows its latest run. Energies eV (errors meV/atom where marked), forces and deviations
eV/Angstrom.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from al_flows.campaign.record import summaries_by_round
from al_flows.workflow.jobs import latest_outputs
from al_flows.workflow.store_queries import job_document

__all__ = [
    "STATUSES",
    "latest_docs",
    "round_summaries",
    "per_round",
    "deviations_by_round",
    "training_curves",
    "calibration_records",
    "parity_data",
    "STOP_REASON_WORDS",
    "campaign_status",
]

STATUSES = ("accurate", "candidate", "failed")


def latest_docs(store, campaign: str, stage: str, load: bool = False, criteria: dict | None = None) -> list[dict]:
    """Job documents of ``campaign`` at ``stage``: the highest index per uuid, output not None."""
    return latest_outputs(store, campaign, stage, criteria, None if load else ["output"], load)


def round_summaries(store, config) -> list[dict]:
    """RoundSummary outputs, one per round (the latest run), sorted by round."""
    return list(summaries_by_round(latest_docs(store, config.name, "summary")).values())


def per_round(docs: list[dict], summaries: list[dict], key: str = "ensemble_id") -> dict[int, list[dict]]:
    """Outputs grouped by round; where a round has a summary, only those of its ensemble
    (``key`` 'ensemble_id') or of its members (``key`` 'model_id')."""
    wanted = {s["round"]: set(s["model_ids"]) if key == "model_id" else {s["ensemble_id"]} for s in summaries}
    out: dict[int, list[dict]] = defaultdict(list)
    for d in sorted(docs, key=lambda d: d["index"]):
        o = d["output"]
        r = o["round"]
        if r in wanted and o.get(key) not in wanted[r]:
            continue
        out[r].append(o)
    return dict(sorted(out.items()))


def deviations_by_round(store, config, summaries: list[dict] | None = None) -> dict[int, dict]:
    """Per round: ``deviations`` {status: [eV/Å]} of the explored frames (None dropped),
    ``counts`` {status: n}, ``n_none`` (frames without a deviation), ``n_explored``,
    ``trust_lo`` / ``trust_hi`` (eV/Å), from the round's SelectionDocument."""
    summaries = round_summaries(store, config) if summaries is None else summaries
    out = {}
    for r, sels in per_round(latest_docs(store, config.name, "select"), summaries).items():
        sel = sels[-1]
        devs: dict[str, list[float]] = {s: [] for s in STATUSES}
        counts = dict.fromkeys(STATUSES, 0)
        n_none = 0
        for rec in sel.get("records", []):
            status = rec.get("status", "failed")
            counts[status] = counts.get(status, 0) + 1
            dev = rec.get("deviation")
            if dev is None or not math.isfinite(dev):
                n_none += 1
            else:
                devs.setdefault(status, []).append(float(dev))
        out[r] = {
            "deviations": devs,
            "counts": counts,
            "n_none": n_none,
            "n_explored": sum(counts.values()),
            "trust_lo": sel["trust_lo"],
            "trust_hi": sel["trust_hi"],
        }
    return out


def training_curves(store, config, summaries: list[dict] | None = None) -> dict[int, list[dict]]:
    """Per round, one entry per member: ``member``, ``epoch`` and ``val_force_rmse`` (eV/Å) lists."""
    summaries = round_summaries(store, config) if summaries is None else summaries
    out = {}
    for r, members in per_round(latest_docs(store, config.name, "train"), summaries, key="model_id").items():
        out[r] = [
            {
                "member": m["member"],
                "epoch": [c["epoch"] for c in m.get("curve", []) if c.get("val_force_rmse") is not None],
                "val_force_rmse": [
                    c["val_force_rmse"] for c in m.get("curve", []) if c.get("val_force_rmse") is not None
                ],
            }
            for m in sorted(members, key=lambda m: m["member"])
        ]
    return out


def calibration_records(store, config, summaries: list[dict] | None = None) -> list[dict]:
    """Per round, in order: its calibration record (CalibrationDocument output, of the summary's
    ensemble) with ``test_points``, the test frames' residuals from the round's EvaluationDocument
    ([] where it has none, as for evaluations from before calibration records)."""
    summaries = round_summaries(store, config) if summaries is None else summaries
    cals = per_round(latest_docs(store, config.name, "calibrate"), summaries)
    wanted = ["output.round", "output.ensemble_id", "output.test_points"]
    evals = per_round(latest_outputs(store, config.name, "evaluate", None, wanted), summaries)
    out = []
    for r, docs in cals.items():
        test = evals.get(r) or [{}]
        out.append({**docs[-1], "test_points": list(test[-1].get("test_points") or [])})
    return out


def parity_data(store, config, summary: dict) -> dict | None:
    """The ensemble of ``summary``'s round on the fixed test set: labelled and predicted energy
    per atom (eV/atom) and force components (eV/Å), with their RMSEs (energy meV/atom,
    force eV/Å); None where the models or the test set are not stored."""
    from al_flows.frames.extxyz import frames_from_bytes
    from al_flows.workflow.jobs import load_ensemble

    train = latest_docs(store, config.name, "train", load=True, criteria={"metadata.round": summary["round"]})
    by_id = {d["output"]["model_id"]: d["output"] for d in sorted(train, key=lambda d: d["index"])}
    if not summary["model_ids"] or any(m not in by_id for m in summary["model_ids"]):
        return None
    test = job_document(store, summary["test_uuid"])
    if test is None or test.get("output") is None:
        return None
    frames = frames_from_bytes(test["output"]["frames_blob"])
    if not frames:
        return None
    pred = load_ensemble([by_id[m] for m in summary["model_ids"]]).predict(frames)
    n_atoms = np.array([len(a) for a in frames])
    e_ref = np.array([a.get_potential_energy() for a in frames]) / n_atoms
    e_pred = pred.mean_energies / n_atoms
    f_ref = np.concatenate([a.get_forces() for a in frames]).ravel()
    f_pred = np.concatenate(pred.mean_forces).ravel()
    from al_flows.validation.heldout import subset_of

    subsets = np.array([subset_of(a) for a in frames])
    return {
        "round": summary["round"],
        "energy_subset": subsets,
        "force_subset": np.repeat(subsets, 3 * n_atoms),
        "energy_label": e_ref,
        "energy_pred": e_pred,
        "energy_rmse_mev": float(np.sqrt(np.mean((e_pred - e_ref) ** 2)) * 1000),
        "force_label": f_ref,
        "force_pred": f_pred,
        "force_rmse": float(np.sqrt(np.mean((f_pred - f_ref) ** 2))),
    }


#: how index.html names each stop reason of a finished campaign (CampaignResult.stop_reason)
STOP_REASON_WORDS = {
    "converged": "converged",
    "budget": "labelling budget spent (labeller.budget)",
    "round limit": "round limit reached (max_rounds)",
}


def campaign_status(store, config) -> str:
    """One line: finished after how many rounds, converged or not, and why it stopped (the stop
    reason of report.json: converged, the labelling budget or the round limit), or still running."""
    from al_flows.campaign.record import CampaignRecord

    result = CampaignRecord(store, config.name).result()
    if result is None:
        return "not finished (or still running)"
    reason = result.get("stop_reason") or ("converged" if result["converged"] else "round limit")
    if reason == "round limit":
        words = f"round limit reached (max_rounds: {config.max_rounds})"
    else:
        words = STOP_REASON_WORDS.get(reason, reason)
    state = "converged" if result["converged"] else "not converged"
    return f"finished after {result['n_rounds']} round(s), {state}; stop reason: {words}"
