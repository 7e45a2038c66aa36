"""The job that records, every round, how well the ensemble's deviation tracks its true error
(docs/methods.md, "Calibrated error bounds"), before the round's labels are trained on.

For the frames the round labelled (its selection and its uniformly drawn calibration sample) and
for the fixed test set, the round's own ensemble, which has not trained on them, gives residuals
(deviation, true error; :func:`al_flows.selection.calibration_record.residuals_of`). The job
records the measures of :mod:`al_flows.selection.calibration_record` per kind, checks the bound in
force during the round (fitted on the residuals of the rounds before) against them, and fits the
bound the next round reads on every residual so far (:mod:`al_flows.selection.conformal`). With
``selection.calibrate`` it also fits the next round's trust levels (:mod:`al_flows.selection.calibration`).

The next round's summary takes this job's output, so the next round's training, planned after the
summary, never starts before the record is written.
"""

from __future__ import annotations

import numpy as np

from al_flows.active_learning.schemas import CalibrationDocument
from al_flows.frames.extxyz import frames_from_bytes
from al_flows.selection.calibration import calibrated_levels, fit_relation, limit_change, window_points
from al_flows.selection.calibration_record import residual_measures, residuals_of
from al_flows.selection.conformal import ConformalBound, covered, fit_conformal
from al_flows.selection.trust_levels import SelectionSettings
from al_flows.workflow import progress
from al_flows.workflow.jobs import al_job, ensemble_id, field, field_or_none, load_ensemble, model_ids_of

__all__ = ["calibrate", "trust_level_fit", "test_bound_summary"]


def trust_level_fit(points: list[dict], previous, selection, round_: int, settings: SelectionSettings) -> dict:
    """With ``selection.calibrate``: the fit of deviation -> error on this round's labelled ``points``
    (pooled with the rounds before within ``window_rounds``, from ``previous``, the round before's
    CalibrationDocument) and the next round's trust levels, as CalibrationDocument fields; {} without it."""
    cal = settings.calibrate
    if cal is None:
        return {}
    pairs = [{"frame_id": p["frame_id"], "deviation": p["deviation"], "error": p["error"]} for p in points]
    earlier = (field_or_none(previous, "fit_points") or []) if previous is not None else []
    pooled = window_points(earlier, pairs, round_, cal.window_rounds)
    fit = fit_relation([p["deviation"] for p in pooled], [p["error"] for p in pooled], cal.relation)
    used = (field(selection, "trust_lo"), field(selection, "trust_hi"))
    lo, hi, reason = calibrated_levels(fit, cal, used)
    note = ""
    if not reason:
        lo, hi, note = limit_change((lo, hi), used, cal.max_change_factor)
    return {
        "fit_points": pooled,
        "fit": fit,
        "target_error_lo": cal.target_error_lo,
        "target_error_hi": cal.target_error_hi,
        "trust_lo_used": float(used[0]),
        "trust_hi_used": float(used[1]),
        "trust_lo_next": lo,
        "trust_hi_next": hi,
        "applied": not reason,
        "reason": reason,
        "note": note,
    }


def test_bound_summary(bound: ConformalBound, test_points: list[dict]) -> dict:
    """The bound fitted on every residual so far, read on the test frames of the ensemble that
    produced this round's residuals: its median and 90th percentile (eV/Angstrom), the true error's,
    and the share of test frames it covers; {} without test frames or a finite bound."""
    if not test_points or not bound.finite:
        return {}
    b = bound.bounds([p["deviation"] for p in test_points])
    err = np.array([p["error"] for p in test_points], dtype=float)
    return {
        "median_bound": float(np.nanmedian(b)),
        "p90_bound": float(np.nanpercentile(b, 90)),
        "median_error": float(np.median(err)),
        "p90_error": float(np.percentile(err, 90)),
        "coverage": float(covered(bound, test_points).mean()),
    }


def per_element_coverage(bound: ConformalBound | None, points: list[dict]) -> dict:
    """Per element of the most-deviating atom: the share of ``points`` the pooled ``bound`` covers and
    their count ({} without a finite bound)."""
    if bound is None or not bound.finite:
        return {}
    out = {}
    for element in sorted({str(p["element"]) for p in points if p.get("element")}):
        group = [p for p in points if p.get("element") == element]
        out[str(element)] = {"coverage": float(covered(bound, group).mean()), "n": len(group)}
    return out


@al_job(output_schema=CalibrationDocument)
def calibrate(
    models: list,
    labels,
    selection,
    evaluation,
    campaign: str,
    round: int,
    settings: SelectionSettings,
    previous=None,
) -> CalibrationDocument:
    """The round's calibration record (module doc): ``models`` the round's TrainingDocuments,
    ``labels`` its LabelDocument, ``selection`` its SelectionDocument, ``evaluation`` its
    EvaluationDocument (the test set's residuals), ``previous`` the round before's CalibrationDocument
    (None in the first round, or for a campaign begun before calibration records)."""
    frames = frames_from_bytes(field(labels, "labelled_blob")) if field(labels, "n_labelled") else []
    device = None
    points: list[dict] = []
    if frames:
        ensemble = load_ensemble(models)
        pred, device = ensemble.predict(frames), str(ensemble.device)
        points = residuals_of(frames, pred.energies, pred.forces, round)
    earlier = list(field_or_none(previous, "residuals") or []) if previous is not None else []
    test_points = list(field_or_none(evaluation, "test_points") or [])
    cov, per = settings.bound.coverage, settings.bound.min_per_element
    kinds = {
        "all": points,
        "selected": [p for p in points if p["sample"] == "selected"],
        "random": [p for p in points if p["sample"] == "random"],
        "test": test_points,
    }
    measures = {k: residual_measures(pts, earlier, cov, per) for k, pts in kinds.items() if pts or k == "all"}
    before = fit_conformal(earlier, cov, per) if earlier else None
    residuals = earlier + points
    bound = fit_conformal(residuals, cov, per)
    test = test_bound_summary(bound, test_points)
    levels = trust_level_fit(points, previous, selection, round, settings)
    m = measures.get("test") or measures["all"]
    progress.report(
        "calibration",
        round,
        labelled=len(points),
        spearman="n/a" if measures["all"]["spearman"] is None else f"{measures['all']['spearman']:.2f}",
        test_coverage="n/a" if m.get("coverage") is None else f"{m['coverage']:.2f}",
        bound_scale=f"{bound.scale:.2f}" if bound.finite else "none yet",
        **({"trust_lo_next": f"{levels['trust_lo_next']:.3f}", "kept": bool(levels["reason"])} if levels else {}),
    )
    return CalibrationDocument(
        campaign=campaign,
        round=round,
        ensemble_id=ensemble_id(model_ids_of(models)),
        device=device,
        points=points,
        residuals=residuals,
        measures=measures,
        bound_before=before.as_dict() if before is not None else None,
        bound=bound.as_dict(),
        test_bound=test,
        per_element_coverage=per_element_coverage(before, test_points),
        bound_streak=int(field_or_none(selection, "bound_streak") or 0),
        **levels,
    )
