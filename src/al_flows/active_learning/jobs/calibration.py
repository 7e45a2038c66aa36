"""The job that calibrates the trust levels after a round's labels (al_flows.selection.calibration):
fit deviation -> true error on the frames just labelled and set the next round's levels."""

from __future__ import annotations

import numpy as np

from al_flows.active_learning.schemas import CalibrationDocument
from al_flows.frames.extxyz import frames_from_bytes
from al_flows.frames.provenance import as_float
from al_flows.selection.calibration import (
    CalibrationSettings,
    calibrated_levels,
    fit_relation,
    limit_change,
    max_force_errors,
    window_points,
)
from al_flows.workflow import progress
from al_flows.workflow.jobs import al_job, ensemble_id, field, field_or_none, load_ensemble, model_ids_of

__all__ = ["calibrate_levels"]


@al_job(output_schema=CalibrationDocument)
def calibrate_levels(
    models: list, labels, selection, campaign: str, round: int, settings: CalibrationSettings, previous=None
) -> CalibrationDocument:
    """Fit deviation -> true error on the frames just labelled (true error: largest atomic force
    error of this round's ensemble mean), pooled with the pairs of the ``window_rounds - 1`` rounds
    before (from ``previous``, the round before's CalibrationDocument), and set the next round's
    trust levels."""
    frames = frames_from_bytes(field(labels, "labelled_blob")) if field(labels, "n_labelled") else []
    dev = np.array([as_float(a.info.get("deviation")) for a in frames], dtype=float)
    err, device = np.zeros(0), None
    if frames:
        ensemble = load_ensemble(models)
        pred, device = ensemble.predict(frames), str(ensemble.device)
        err = max_force_errors(pred.mean_forces, [a.get_forces() for a in frames])
    points = [
        {"frame_id": a.info["frame_id"], "deviation": float(d), "error": float(e)}
        for a, d, e in zip(frames, dev, err, strict=True)
    ]
    earlier = (field_or_none(previous, "fit_points") or []) if previous is not None else []
    pooled = window_points(earlier, points, round, settings.window_rounds)
    fit = fit_relation([p["deviation"] for p in pooled], [p["error"] for p in pooled], settings.relation)
    used = (field(selection, "trust_lo"), field(selection, "trust_hi"))
    lo, hi, reason = calibrated_levels(fit, settings, used)
    note = ""
    if not reason:
        lo, hi, note = limit_change((lo, hi), used, settings.max_change_factor)
    progress.report(
        "calibrate", round, points=fit["n"], trust_lo_next=f"{lo:.3f}", trust_hi_next=f"{hi:.3f}", kept=bool(reason)
    )
    return CalibrationDocument(
        campaign=campaign,
        round=round,
        ensemble_id=ensemble_id(model_ids_of(models)),
        device=device,
        points=points,
        fit_points=pooled,
        fit=fit,
        target_error_lo=settings.target_error_lo,
        target_error_hi=settings.target_error_hi,
        trust_lo_used=float(used[0]),
        trust_hi_used=float(used[1]),
        trust_lo_next=lo,
        trust_hi_next=hi,
        applied=not reason,
        reason=reason,
        note=note,
    )
