"""Trust-level selection of a round's explored frames (DP-GEN) and the stop decision."""

from __future__ import annotations

import time
from dataclasses import dataclass
from dataclasses import field as dc_field

import numpy as np
from jobflow import Maker

from al_flows.workflow import progress
from al_flows.frames.dataset import frames_from_bytes
from al_flows.selection.calibration import (
    CalibrationSettings,
    calibrated_levels,
    fit_relation,
    limit_change,
    max_force_errors,
)
from al_flows.active_learning.schemas import CalibrationDocument, SelectionDocument, frames_text
from al_flows.workflow.jobs import al_job, field
from al_flows.frames.provenance import as_float
from al_flows.selection.trust_levels import SelectionSettings, select, stop_decision


@dataclass
class SelectMaker(Maker):
    """Classify frames as accurate/candidate/failed, pick at most ``max_candidates`` new
    candidates, and decide whether the campaign stops after this round."""

    name: str = "select"
    settings: SelectionSettings = dc_field(default_factory=SelectionSettings)
    target_accurate_ratio: float = 0.95
    max_rounds: int = 5

    @al_job(data=["selected_blob"], output_schema=SelectionDocument)
    def make(self, explorations: list, exclude_ids: list, campaign: str, round: int, seed: int, calibration=None) -> SelectionDocument:
        """``calibration``: the previous round's CalibrationDocument; its next levels replace the
        configured ones (when its fit was not applied they are the levels that round used, so a
        calibrated campaign keeps its last calibrated levels)."""
        start = time.perf_counter()
        frames = [a for e in explorations for a in frames_from_bytes(field(e, "frames_blob"))]
        ens_id = field(explorations[0], "ensemble_id") if explorations else ""
        settings = self.settings
        if calibration is not None:  # fitted levels, or the levels in use when the fit was not applied
            settings = settings.model_copy(update={"trust_lo": field(calibration, "trust_lo_next"), "trust_hi": field(calibration, "trust_hi_next")})
        result = select(frames, settings, exclude_ids=exclude_ids, seed=seed)
        chosen = [frames[i] for i in result.selected]
        for atoms in chosen:
            atoms.info["selection"] = settings.strategy  # kept with the label (provenance)
        chosen_idx = set(result.selected)
        decision = stop_decision(result.accurate_ratio, len(frames), round, self.target_accurate_ratio, self.max_rounds)
        progress.report(
            "select", round, explored=len(frames), accurate=result.n_accurate, candidate=result.n_candidate,
            failed=result.n_failed, selected=len(chosen), accurate_ratio=f"{result.accurate_ratio:.3f}",
        )
        return SelectionDocument(
            campaign=campaign,
            round=round,
            ensemble_id=ens_id,
            n_explored=len(frames),
            n_accurate=result.n_accurate,
            n_candidate=result.n_candidate,
            n_failed=result.n_failed,
            n_duplicate=result.n_duplicate,
            n_selected=len(chosen),
            strategy=settings.strategy,
            accurate_ratio=result.accurate_ratio,
            converged=decision.converged,
            stop=decision.stop,
            trust_lo=settings.trust_lo,
            trust_hi=settings.trust_hi,
            records=[
                {"frame_id": a.info["frame_id"], "explorer": a.info.get("explorer", ""), "parent_id": a.info.get("parent_id", ""),
                 "deviation": as_float(a.info.get("deviation")), "status": status, "selected": i in chosen_idx}
                for i, (a, status) in enumerate(zip(frames, result.status, strict=True))
            ],
            wall_time=time.perf_counter() - start,
            selected_blob=frames_text(chosen),
        )


@al_job(output_schema=CalibrationDocument)
def calibrate_levels(models: list, labels, selection, campaign: str, round: int, settings: CalibrationSettings) -> CalibrationDocument:
    """Fit deviation -> true error on the frames just labelled (true error: largest atomic force
    error of this round's ensemble mean) and set the next round's trust levels."""
    from al_flows.workflow.jobs import ensemble_id, load_ensemble, model_ids_of

    frames = frames_from_bytes(field(labels, "labelled_blob")) if field(labels, "n_labelled") else []
    dev = np.array([as_float(a.info.get("deviation")) for a in frames], dtype=float)
    err = np.zeros(0)
    if frames:
        pred = load_ensemble(models).predict(frames)
        err = max_force_errors(pred.mean_forces, [a.get_forces() for a in frames])
    fit = fit_relation(dev, err, settings.relation)
    used = (field(selection, "trust_lo"), field(selection, "trust_hi"))
    lo, hi, reason = calibrated_levels(fit, settings, used)
    note = ""
    if not reason:
        lo, hi, note = limit_change((lo, hi), used, settings.max_change_factor)
    progress.report("calibrate", round, points=fit["n"], trust_lo_next=f"{lo:.3f}", trust_hi_next=f"{hi:.3f}", kept=bool(reason))
    return CalibrationDocument(
        campaign=campaign,
        round=round,
        ensemble_id=ensemble_id(model_ids_of(models)),
        points=[{"frame_id": a.info["frame_id"], "deviation": float(d), "error": float(e)} for a, d, e in zip(frames, dev, err, strict=True)],
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
