"""Jobs that measure a round of the active-learning loop: the ensemble's errors on the fixed test
set, and the round's summary (one row of report.json and the checkpoint a later run continues from)."""

from __future__ import annotations

import time

import numpy as np
from jobflow import CURRENT_JOB

from al_flows.active_learning.schemas import EvaluationDocument, RoundSummary
from al_flows.frames.extxyz import frames_from_bytes
from al_flows.potential.deviation import pairwise_force_disagreement
from al_flows.selection.budget import BudgetSpent, spend
from al_flows.selection.calibration_record import residuals_of
from al_flows.validation.heldout import holdout_errors
from al_flows.workflow import progress
from al_flows.workflow.jobs import al_job, ensemble_id, field, field_or_none, load_ensemble, model_ids_of
from al_flows.workflow.store_queries import timing_records
from al_flows.workflow.timing import stage_times

__all__ = ["evaluate", "round_summary", "extended_summary", "subset_columns", "budget_columns"]

# the fields a round summary copies from the round's selection and evaluation documents
FROM_SELECTION = (
    "n_explored",
    "n_accurate",
    "n_candidate",
    "n_failed",
    "accurate_ratio",
    "converged",
    "stop",
    "trust_lo",
    "trust_hi",
)
FROM_EVALUATION = (
    "val_force_rmse",
    "test_force_rmse",
    "test_energy_rmse_per_atom",
    "test_force_r2",
    "test_force_rel_rmse",
)


@al_job(output_schema=EvaluationDocument)
def evaluate(models: list, test_set, campaign: str, round: int) -> EvaluationDocument:
    """Ensemble-mean errors on the fixed test set; validation error = mean of the members'; the members'
    disagreement on it (the ensemble's diversity, :func:`~al_flows.potential.deviation.pairwise_force_disagreement`)."""
    start = time.perf_counter()
    frames = frames_from_bytes(field(test_set, "frames_blob"))
    ensemble = load_ensemble(models)
    pred = ensemble.predict(frames)
    ref_e = np.array([a.get_potential_energy() for a in frames])
    errors = holdout_errors(frames, pred.mean_energies, pred.mean_forces)
    test_force_rmse, test_energy_rmse = errors["force_rmse"], errors["energy_rmse_per_atom"]
    val = float(np.mean([field(m, "val_force_rmse") for m in models]))
    r2 = errors["force_r2"]
    progress.report(
        "evaluate",
        round,
        test_force_rmse=f"{test_force_rmse:.4f}",
        test_force_r2="n/a" if r2 is None else f"{r2:.3f}",
        test_energy_rmse_per_atom=f"{test_energy_rmse:.5f}",
    )
    return EvaluationDocument(
        campaign=campaign,
        round=round,
        ensemble_id=ensemble_id(model_ids_of(models)),
        device=str(ensemble.device),
        n_test=len(frames),
        test_force_rmse=test_force_rmse,
        test_energy_rmse_per_atom=test_energy_rmse,
        test_force_r2=errors["force_r2"],
        test_force_rel_rmse=errors["force_rel_rmse"],
        test_subsets=errors["subsets"],
        val_force_rmse=val,
        member_disagreement=pairwise_force_disagreement(pred.forces),
        test_energies=ref_e.tolist(),
        predicted_energies=pred.mean_energies.tolist(),
        test_points=[{**p, "sample": "test"} for p in residuals_of(frames, pred.energies, pred.forces, round)],
        wall_time=time.perf_counter() - start,
    )


@al_job(output_schema=RoundSummary)
def round_summary(
    campaign: str,
    fingerprint: str,
    round: int,
    model_ids: list,
    n_labels_total: int,
    evaluation,
    selection,
    labels,
    dataset_uuid: str,
    structures_uuid: str,
    test_uuid: str,
    calibration_uuid: str = "",
    calibration=None,
) -> RoundSummary:
    """One row of report.json; also the checkpoint a later run continues from. ``calibration``: the
    round's CalibrationDocument (its figures are copied; taking it as an input also orders the
    record before the next round's training)."""
    store = CURRENT_JOB.store
    summary = RoundSummary(
        campaign=campaign,
        fingerprint=fingerprint,
        stage_times=stage_times(timing_records(store, campaign, round)) if store is not None else {},
        round=round,
        n_labels_total=n_labels_total,
        **{key: field(selection, key) for key in FROM_SELECTION},
        **{key: field(evaluation, key) for key in FROM_EVALUATION},
        n_labelled=field(labels, "n_labelled"),
        n_label_failures=field(labels, "n_failed"),
        median_survival_ps=field_or_none(selection, "median_survival_ps"),
        stage=field_or_none(selection, "stage") or 0,
        next_stage=field_or_none(selection, "next_stage") or 0,
        properties=field_or_none(selection, "properties") or [],
        properties_met=field_or_none(selection, "properties_met"),
        trust_lo_levels=field_or_none(selection, "trust_lo_levels") or [],
        levels_settled=field_or_none(selection, "levels_settled"),
        bound_share=field_or_none(selection, "bound_share"),
        bound_streak=field_or_none(selection, "bound_streak") or 0,
        calibration=calibration_columns(calibration),
        member_disagreement=field_or_none(evaluation, "member_disagreement"),
        **subset_columns(field(evaluation, "test_subsets")),
        ensemble_id=ensemble_id(list(model_ids)),
        model_ids=list(model_ids),
        dataset_uuid=dataset_uuid,
        structures_uuid=structures_uuid,
        test_uuid=test_uuid,
        calibration_uuid=calibration_uuid,
        stop_reason=field_or_none(selection, "stop_reason") or "",
        **budget_columns(field_or_none(selection, "budget"), selection, labels),
    )
    progress.report(
        "round done",
        round,
        labels=summary.n_labels_total + summary.n_labelled,
        accurate_ratio=f"{summary.accurate_ratio:.3f}",
    )
    return summary


@al_job(output_schema=RoundSummary)
def extended_summary(summary: dict, extension, labels, dataset_uuid: str, budgeted: bool = False) -> RoundSummary:
    """The RoundSummary ``summary`` of a round that stopped the campaign, once a run extending the
    campaign has labelled the round's selection (``extension``: its ExtensionSelection; ``labels``:
    the LabelDocument; ``dataset_uuid``: the merge that added them): ``n_labelled``,
    ``n_label_failures`` and ``dataset_uuid`` count those labels, and, with a labelling budget
    (``budgeted``), what was spent after the round and the frames skipped for the budget. It replaces
    the round's first summary (``labelled_on_extension``), so the report, status and a later
    continuation read the round as labelled."""
    kept = {k: v for k, v in summary.items() if k in RoundSummary.model_fields}
    update: dict = {
        "n_labelled": field(labels, "n_labelled"),
        "n_label_failures": field(labels, "n_failed"),
        "dataset_uuid": dataset_uuid,
        "labelled_on_extension": True,
    }
    budget = field_or_none(extension, "budget")
    if budgeted and budget is not None:
        before = BudgetSpent.model_validate(kept.get("spent_after") or budget["spent_before"])
        measured = field_or_none(labels, "core_hours")
        after = spend(
            before,
            field(labels, "n_requested"),
            measured,
            field_or_none(labels, "n_timed") or 0,
            budget.get("core_hours_per_label"),
        )
        timed = measured is not None or budget.get("core_hours_per_label") is not None or after.timed_runs > 0
        update |= {
            "spent_before": kept.get("spent_before") or before.model_dump(),
            "spent_after": after.model_dump(),
            "labels_spent": after.labels,
            "core_hours_spent": after.core_hours if timed else None,
            "n_budget_skipped": len(field_or_none(extension, "budget_skipped") or []),
        }
    out = RoundSummary(**{**kept, **update})
    progress.report(
        "round labelled on extension", out.round, labelled=out.n_labelled, labels=out.n_labels_total + out.n_labelled
    )
    return out


def calibration_columns(calibration) -> dict | None:
    """The calibration figures a round summary shows (from its CalibrationDocument; None without one):
    Spearman correlation and scale of the labelled frames' errors on their deviation, the coverage of
    the bound in force during the round on the selected, random-sample and test frames, the test
    frames' miscalibration area and raw coverage, and the next round's bound (scale, residuals,
    nominal coverage, 90th percentile on the test frames, eV/Angstrom)."""
    if calibration is None:
        return None
    m = field_or_none(calibration, "measures") or {}
    bound = field_or_none(calibration, "bound") or {}
    test = field_or_none(calibration, "test_bound") or {}

    def get(kind: str, key: str):
        return (m.get(kind) or {}).get(key)

    return {
        "spearman": get("all", "spearman"),
        "scale": get("all", "scale"),
        "coverage_selected": get("selected", "coverage"),
        "coverage_random": get("random", "coverage"),
        "coverage_test": get("test", "coverage"),
        "raw_coverage_test": get("test", "raw_coverage"),
        "miscalibration_area_test": get("test", "miscalibration_area"),
        "nominal_coverage": bound.get("coverage"),
        "bound_scale": bound.get("scale"),
        "bound_residuals": bound.get("n"),
        "test_p90_bound": test.get("p90_bound"),
        "test_p90_error": test.get("p90_error"),
    }


def subset_columns(subsets: dict) -> dict:
    """The per-subset columns of a round summary from an evaluation's ``test_subsets``."""
    out = {}
    for name in ("relaxed", "nonequilibrium"):
        errs = (subsets or {}).get(name) or {}
        out[f"test_force_rmse_{name}"] = errs.get("force_rmse")
        out[f"test_energy_rmse_per_atom_{name}"] = errs.get("energy_rmse_per_atom")
    return out


def budget_columns(budget: dict | None, selection, labels) -> dict:
    """The labelling-budget fields of a round summary (none without a budget): what the rounds
    spent before and after this round's labels (:func:`al_flows.selection.budget.spend`), the
    labels and core-hours spent so far, and the frames left for the budget."""
    if budget is None:
        return {}
    before = BudgetSpent.model_validate(budget["spent_before"])
    per_label = budget.get("core_hours_per_label")
    measured = field_or_none(labels, "core_hours")
    after = spend(before, field(labels, "n_requested"), measured, field_or_none(labels, "n_timed") or 0, per_label)
    timed = measured is not None or per_label is not None or after.timed_runs > 0  # a VASP labeller
    return {
        "spent_before": before.model_dump(),
        "spent_after": after.model_dump(),
        "labels_spent": after.labels,
        "core_hours_spent": after.core_hours if timed else None,
        "n_budget_skipped": len(field_or_none(selection, "budget_skipped") or []),
    }
