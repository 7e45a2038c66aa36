"""The selection job of a round: classify the explored frames by the trust window (DP-GEN),
pick the frames to label and decide whether the campaign stops, or moves to its next exploration
stage, after this round (jobflow Maker over :mod:`al_flows.selection`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from dataclasses import field as dc_field

import numpy as np
from jobflow import Maker

from al_flows.active_learning.schemas import SelectionDocument
from al_flows.frames.dataset import frames_from_bytes, frames_text
from al_flows.frames.provenance import as_float
from al_flows.selection.trust_levels import SelectionSettings, StopDecision, select, stop_decision
from al_flows.validation.properties import PropertyConvergence
from al_flows.workflow import progress
from al_flows.workflow.jobs import al_job, field, field_or_none

__all__ = ["SelectMaker"]


@dataclass
class SelectMaker(Maker):
    """Classify frames as accurate/candidate/failed, pick at most ``max_candidates`` new
    candidates, and decide whether the campaign stops after this round. ``properties``: the
    autotest properties the campaign converges on (``convergence.properties``), or None."""

    name: str = "select"
    settings: SelectionSettings = dc_field(default_factory=SelectionSettings)
    target_accurate_ratio: float | None = 0.95
    target_survival_ps: float | None = None
    max_rounds: int = 5
    n_stages: int = 1
    step_back_failed_ratio: float | None = None
    properties: PropertyConvergence | None = None

    def decide(
        self,
        accurate_ratio: float,
        n_explored: int,
        round: int,
        median_survival_ps: float | None = None,
        stage: int = 0,
        property_results: list[dict] | None = None,
        failed_ratio: float | None = None,
    ) -> StopDecision:
        """Whether the campaign stops after ``round`` (in exploration stage ``stage``), and the next
        round's stage (:func:`al_flows.selection.stop_decision` with this Maker's targets, round
        limit, number of stages and, for an auto schedule, its step-back threshold).
        ``property_results``: the round's property rows (:func:`al_flows.validation.properties.property_result`),
        judged with this Maker's tolerances; ``failed_ratio``: failed / explored frames of the round."""
        met = None if self.properties is None else self.properties.met(property_results)
        return stop_decision(
            accurate_ratio,
            n_explored,
            round,
            self.target_accurate_ratio,
            self.max_rounds,
            median_survival_ps,
            self.target_survival_ps,
            stage,
            self.n_stages,
            properties_met=met,
            properties_only=self.properties is not None and self.properties.properties_only,
            failed_ratio=failed_ratio,
            step_back_failed_ratio=self.step_back_failed_ratio,
        )

    def decide_from_summary(self, summary: dict) -> StopDecision:
        """:meth:`decide` again for a stored RoundSummary, with this Maker's (possibly changed) targets."""
        n_explored = summary["n_explored"]
        return self.decide(
            summary["accurate_ratio"],
            n_explored,
            summary["round"],
            summary.get("median_survival_ps"),
            summary.get("stage") or 0,
            summary.get("properties"),
            failed_ratio=summary.get("n_failed", 0) / n_explored if n_explored else None,
        )

    def round_settings(self, calibration=None) -> SelectionSettings:
        """The selection settings of a round: the calibrated trust levels of ``calibration`` (the previous
        round's CalibrationDocument: its fitted levels, or the levels in use when the fit was not applied)
        in place of the configured ones."""
        if calibration is None:
            return self.settings
        update = {"trust_lo": field(calibration, "trust_lo_next"), "trust_hi": field(calibration, "trust_hi_next")}
        return self.settings.model_copy(update=update)

    @al_job(output_schema=SelectionDocument)
    def make(
        self,
        explorations: list,
        exclude_ids: list,
        campaign: str,
        round: int,
        seed: int,
        calibration=None,
        stage: int = 0,
        properties=None,
    ) -> SelectionDocument:
        """``calibration``: the previous round's CalibrationDocument; its next levels replace the
        configured ones (when its fit was not applied they are the levels that round used, so a
        calibrated campaign keeps its last calibrated levels). ``properties``: the round's
        PropertiesDocument (``convergence.properties``), whose rows join the stop decision."""
        start = time.perf_counter()
        frames = [a for e in explorations for a in frames_from_bytes(field(e, "frames_blob"))]
        ens_id = field(explorations[0], "ensemble_id") if explorations else ""
        settings = self.round_settings(calibration)
        result = select(frames, settings, exclude_ids=exclude_ids, seed=seed)
        chosen = [frames[i] for i in result.selected]
        for atoms in chosen:
            atoms.info["selection"] = settings.strategy  # kept with the label (provenance)
        chosen_idx = set(result.selected)
        survival = [t for e in explorations for t in (field_or_none(e, "survival_times_ps") or [])]
        median_survival = float(np.median(survival)) if survival else None
        prop_rows = list(field(properties, "results")) if properties is not None else []
        met = self.properties.met(prop_rows) if self.properties is not None else None
        failed_ratio = result.n_failed / len(frames) if frames else None
        decision = self.decide(
            result.accurate_ratio, len(frames), round, median_survival, stage, prop_rows, failed_ratio=failed_ratio
        )
        if decision.next_stage != stage:
            progress.report("exploration stage done", round, done=stage, next=decision.next_stage)
        progress.report(
            "select",
            round,
            explored=len(frames),
            accurate=result.n_accurate,
            candidate=result.n_candidate,
            failed=result.n_failed,
            selected=len(chosen),
            accurate_ratio=f"{result.accurate_ratio:.3f}",
            **({} if met is None else {"properties_within": f"{sum(r['within'] for r in prop_rows)}/{len(prop_rows)}"}),
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
            median_survival_ps=median_survival,
            stage=stage,
            next_stage=decision.next_stage,
            converged=decision.converged,
            stop=decision.stop,
            trust_lo=settings.trust_lo,
            trust_hi=settings.trust_hi,
            properties=prop_rows,
            properties_met=met,
            records=[
                {
                    "frame_id": a.info["frame_id"],
                    "explorer": a.info.get("explorer", ""),
                    "parent_id": a.info.get("parent_id", ""),
                    "deviation": as_float(a.info.get("deviation")),
                    "status": status,
                    "selected": i in chosen_idx,
                }
                for i, (a, status) in enumerate(zip(frames, result.status, strict=True))
            ],
            wall_time=time.perf_counter() - start,
            selected_blob=frames_text(chosen),
        )
