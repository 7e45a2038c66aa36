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
from al_flows.selection.trust_levels import (
    SelectionResult,
    SelectionSettings,
    StopDecision,
    select,
    stop_decision,
)
from al_flows.workflow import progress
from al_flows.workflow.jobs import al_job, field, field_or_none, load_ensemble

__all__ = ["SelectMaker", "FeatureReader", "records"]


class FeatureReader:
    """Per-atom features of ``frames`` from the first member of the ensemble of ``models``
    (TrainingDocuments), loaded on the worker's device on the first call (the ``features`` of
    :func:`al_flows.selection.trust_levels.select`); ``device``: where it ran, None before."""

    def __init__(self, frames: list, models: list):
        self.frames, self.models = frames, models
        self.device: str | None = None

    def __call__(self, indices: list[int]) -> list[np.ndarray]:
        """Atom features of ``frames[i]`` for each of ``indices``."""
        ensemble = load_ensemble(self.models)
        self.device = str(ensemble.device)
        return ensemble.atom_features([self.frames[i] for i in indices])


def records(frames: list, result: SelectionResult) -> list[dict]:
    """One provenance record per explored frame: ids, deviation, class, whether it was selected and,
    with pick diverse, why (``pick``, ``pick_rank``, ``pick_distance``: :class:`SelectionResult`)."""
    chosen = set(result.selected)
    return [
        {
            "frame_id": a.info["frame_id"],
            "explorer": a.info.get("explorer", ""),
            "parent_id": a.info.get("parent_id", ""),
            "deviation": as_float(a.info.get("deviation")),
            "status": status,
            "selected": i in chosen,
            **result.picks.get(i, {}),
        }
        for i, (a, status) in enumerate(zip(frames, result.status, strict=True))
    ]


@dataclass
class SelectMaker(Maker):
    """Classify frames as accurate/candidate/failed, pick at most ``max_candidates`` new
    candidates, and decide whether the campaign stops after this round."""

    name: str = "select"
    settings: SelectionSettings = dc_field(default_factory=SelectionSettings)
    target_accurate_ratio: float | None = 0.95
    target_survival_ps: float | None = None
    max_rounds: int = 5
    n_stages: int = 1

    def decide(
        self,
        accurate_ratio: float,
        n_explored: int,
        round: int,
        median_survival_ps: float | None = None,
        stage: int = 0,
    ) -> StopDecision:
        """Whether the campaign stops after ``round`` (in exploration stage ``stage``), and the next
        round's stage (:func:`al_flows.selection.stop_decision` with this Maker's targets, round
        limit and number of stages)."""
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
        )

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
        models: list | None = None,
    ) -> SelectionDocument:
        """``calibration``: the previous round's CalibrationDocument; its next levels replace the
        configured ones (when its fit was not applied they are the levels that round used, so a
        calibrated campaign keeps its last calibrated levels). ``models``: the round's
        TrainingDocuments, given (by the flow) only with ``pick: diverse``, whose first member's atom
        features the picking reads; the ensemble is loaded only when the candidates exceed the cap,
        and then the document records its ``device``."""
        start = time.perf_counter()
        frames = [a for e in explorations for a in frames_from_bytes(field(e, "frames_blob"))]
        ens_id = field(explorations[0], "ensemble_id") if explorations else ""
        settings = self.settings
        if calibration is not None:  # fitted levels, or the levels in use when the fit was not applied
            settings = settings.model_copy(
                update={
                    "trust_lo": field(calibration, "trust_lo_next"),
                    "trust_hi": field(calibration, "trust_hi_next"),
                }
            )
        features = FeatureReader(frames, models) if models is not None else None
        result = select(frames, settings, exclude_ids=exclude_ids, seed=seed, features=features)
        device = features.device if features is not None else None
        chosen = [frames[i] for i in result.selected]
        for atoms in chosen:
            atoms.info["selection"] = settings.strategy  # kept with the label (provenance)
        survival = [t for e in explorations for t in (field_or_none(e, "survival_times_ps") or [])]
        median_survival = float(np.median(survival)) if survival else None
        decision = self.decide(result.accurate_ratio, len(frames), round, median_survival, stage)
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
            **({"pick": settings.pick, "device": device} if device else {}),
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
            pick=settings.pick if settings.strategy == "deviation" else None,
            diverse_features=settings.diverse_features if settings.needs_features else None,
            device=device,
            records=records(frames, result),
            wall_time=time.perf_counter() - start,
            selected_blob=frames_text(chosen),
        )
