"""The exploration jobs of a round, driven by the round's ensemble: perturbed stochastic shear
(Sprueill et al.; :class:`ShearExploreMaker`), Langevin MD with a randomised temperature schedule
and early stop (ANI-Al) or NVT MD raised per round (DP-GEN; :class:`MDExploreMaker`);
docs/methods.md. Jobflow Makers over :mod:`al_flows.exploration`.

Replicas (shear runs, MD trajectories) that blow up are dropped, their frames after the blow-up
never recorded, and listed in ``ExplorationDocument.dropped`` (see :mod:`al_flows.exploration.replica_checks`);
the others go on. A job whose every replica blew up still succeeds, with zero frames."""

from __future__ import annotations

import time
from dataclasses import dataclass
from dataclasses import field as dc_field

import numpy as np
from jobflow import Maker

from al_flows.active_learning.schemas import ExplorationDocument
from al_flows.exploration.md import NVTSettings, ScheduleSettings, langevin_schedule, nvt_explore, survival_times
from al_flows.exploration.shear import ShearSettings, shear_level
from al_flows.exploration.shear_batched import explore_shear_batched
from al_flows.exploration.shear_sequential import explore_shear
from al_flows.frames.extxyz import frames_from_bytes, frames_text
from al_flows.frames.provenance import explored_record
from al_flows.workflow import progress
from al_flows.workflow.jobs import al_job, ensemble_id, field, load_ensemble, model_ids_of

__all__ = ["ShearExploreMaker", "MDExploreMaker"]


def _document(frames, campaign, round, explorer, ens_id, start, dropped, device) -> ExplorationDocument:
    for atoms in frames:
        atoms.info.update(round=round, model_id=ens_id)
    deviations = [float(a.info.get("deviation", np.nan)) for a in frames]
    progress.report(
        f"explored {explorer}", round, frames=len(frames), **({"dropped_replicas": len(dropped)} if dropped else {})
    )
    for d in dropped:
        progress.report(f"{explorer} replica dropped", round, replica=d["replica"], step=d["step"], reason=d["reason"])
    return ExplorationDocument(
        campaign=campaign,
        round=round,
        explorer=explorer,
        ensemble_id=ens_id,
        device=device,
        n_frames=len(frames),
        deviations=deviations,
        frames=[explored_record(a) for a in frames],
        dropped=list(dropped),
        wall_time=time.perf_counter() - start,
        frames_blob=frames_text(frames),
    )


def _prepare(maker, structures, models, round):
    """(start time, ensemble id, Ensemble, starting structures) of an explore job."""
    start = time.perf_counter()
    starts = frames_from_bytes(field(structures, "structures_blob"))
    ensemble = load_ensemble(models)
    progress.report(
        f"explore {maker.name}", round, structures=len(starts), runs=maker.settings.n_runs, device=str(ensemble.device)
    )
    return start, ensemble_id(model_ids_of(models)), ensemble, starts


@dataclass
class ShearExploreMaker(Maker):
    """Relax perturbed, progressively sheared copies of every starting structure with the
    ensemble mean; every relaxed frame keeps its energy, gamma and model deviation.

    With ``settings.batched`` (default) all runs are relaxed in lockstep, one batched ensemble
    prediction per optimiser step for every running replica
    (:func:`al_flows.exploration.shear_batched.explore_shear_batched`; ASE's BFGS/LBFGS/FIRE steps,
    batched over the replicas or one ASE optimiser per replica as ``settings.optimizer_engine``
    says, so the same frames as the sequential path up to the float round-off of batched
    evaluation); ``batched=False`` or starting structures with constraints take the sequential path
    with the ensemble's ASE calculator."""

    name: str = "shear"
    settings: ShearSettings = dc_field(default_factory=ShearSettings)

    @al_job(output_schema=ExplorationDocument)
    def make(
        self, structures, models: list, campaign: str, round: int, seed: int, stage: int = 0
    ) -> ExplorationDocument:
        """Shear runs from the frames of ``structures`` (``structures_blob``) with the ensemble of
        the TrainingDocuments ``models`` (to the gamma_max of level ``stage`` of an auto schedule);
        the relaxed frames go into the ExplorationDocument."""
        start, ens_id, ensemble, starts = _prepare(self, structures, models, round)
        dropped: list[dict] = []
        settings = shear_level(self.settings, stage)
        if settings.batched and not any(a.constraints for a in starts):
            frames = explore_shear_batched(starts, ensemble, settings, seed=seed, explorer=self.name, dropped=dropped)
        else:
            frames = explore_shear(
                starts, ensemble.calculator(), settings, seed=seed, explorer=self.name, dropped=dropped
            )
        return _document(frames, campaign, round, self.name, ens_id, start, dropped, str(ensemble.device))


@dataclass
class MDExploreMaker(Maker):
    """Molecular dynamics driven by the ensemble (all trajectories in one batched prediction per
    step): ``ScheduleSettings`` runs the ANI-Al sampler, ``NVTSettings`` the DP-GEN one."""

    name: str = "md"
    settings: ScheduleSettings | NVTSettings = dc_field(default_factory=NVTSettings)

    @al_job(output_schema=ExplorationDocument)
    def make(
        self, structures, models: list, campaign: str, round: int, seed: int, stage: int = 0
    ) -> ExplorationDocument:
        """MD trajectories from the frames of ``structures`` (``structures_blob``) with the ensemble
        of the TrainingDocuments ``models`` (in exploration stage ``stage`` when the settings have
        stages); the recorded snapshots go into the ExplorationDocument."""
        start, ens_id, ensemble, starts = _prepare(self, structures, models, round)
        dropped: list[dict] = []
        survival: list[float] = []
        if isinstance(self.settings, ScheduleSettings):
            frames = langevin_schedule(starts, ensemble, self.settings, seed, explorer=self.name, dropped=dropped)
            survival = survival_times(frames, dropped, self.settings.n_runs, self.settings.t_max_ps)
            progress.report(
                f"{self.name} trajectories",
                round,
                stopped=sum(bool(a.info.get("stopped")) for a in frames),
                of=self.settings.n_runs,
                median_survival_ps=f"{np.median(survival):.2f}",
            )
        else:
            frames = nvt_explore(
                starts, ensemble, self.settings, round, seed, explorer=self.name, dropped=dropped, stage=stage
            )
        doc = _document(frames, campaign, round, self.name, ens_id, start, dropped, str(ensemble.device))
        doc.survival_times_ps = survival
        return doc
