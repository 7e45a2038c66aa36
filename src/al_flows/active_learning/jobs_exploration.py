"""Explore with a round's ensemble: perturbed stochastic shear (Sprueill et al.), Langevin MD with a
randomised temperature schedule and early stop (ANI-Al), NVT MD raised per round (DP-GEN); docs/methods.md.

Replicas (shear runs, MD trajectories) that blow up are dropped, their frames after the blow-up
never recorded, and listed in ``ExplorationDocument.dropped`` (see :mod:`al_flows.exploration.replica_checks`);
the others go on. A job whose every replica blew up still succeeds, with zero frames."""

from __future__ import annotations

import time
from dataclasses import dataclass
from dataclasses import field as dc_field

import numpy as np
from jobflow import Maker

from al_flows.workflow import progress
from al_flows.frames.dataset import frames_from_bytes
from al_flows.active_learning.schemas import ExplorationDocument, frames_text
from al_flows.workflow.jobs import al_job, ensemble_id, field, load_ensemble, model_ids_of
from al_flows.frames.provenance import explored_record
from al_flows.exploration.md import NVTSettings, ScheduleSettings, langevin_schedule, nvt_explore
from al_flows.exploration.shear import ShearSettings, explore_shear, explore_shear_batched


def _document(frames, campaign, round, explorer, ens_id, start, dropped) -> ExplorationDocument:
    for atoms in frames:
        atoms.info.update(round=round, model_id=ens_id)
    deviations = [float(a.info.get("deviation", np.nan)) for a in frames]
    progress.report(f"explored {explorer}", round, frames=len(frames), **({"dropped_replicas": len(dropped)} if dropped else {}))
    for d in dropped:
        progress.report(f"{explorer} replica dropped", round, replica=d["replica"], step=d["step"], reason=d["reason"])
    return ExplorationDocument(
        campaign=campaign,
        round=round,
        explorer=explorer,
        ensemble_id=ens_id,
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
    progress.report(f"explore {maker.name}", round, structures=len(starts), runs=maker.settings.n_runs)
    return start, ensemble_id(model_ids_of(models)), load_ensemble(models), starts


@dataclass
class ShearExploreMaker(Maker):
    """Relax perturbed, progressively sheared copies of every starting structure with the
    ensemble mean; every relaxed frame keeps its energy, gamma and model deviation.

    With ``settings.batched`` (default) all runs are relaxed in lockstep, one batched ensemble
    prediction per optimiser step for every running replica (:func:`al_flows.exploration.shear.explore_shear_batched`;
    ASE's BFGS/LBFGS/FIRE per replica, so the same frames as the sequential path up to the float
    round-off of batched evaluation); ``batched=False`` or starting structures with constraints
    take the sequential path with the ensemble's ASE calculator."""

    name: str = "shear"
    settings: ShearSettings = dc_field(default_factory=ShearSettings)

    @al_job(data=["frames_blob"], output_schema=ExplorationDocument)
    def make(self, structures, models: list, campaign: str, round: int, seed: int) -> ExplorationDocument:
        start, ens_id, ensemble, starts = _prepare(self, structures, models, round)
        dropped: list[dict] = []
        if self.settings.batched and not any(a.constraints for a in starts):
            frames = explore_shear_batched(starts, ensemble, self.settings, seed=seed, explorer=self.name, dropped=dropped)
        else:
            frames = explore_shear(starts, ensemble.calculator(), self.settings, seed=seed, explorer=self.name, dropped=dropped)
        return _document(frames, campaign, round, self.name, ens_id, start, dropped)


@dataclass
class MDExploreMaker(Maker):
    """Molecular dynamics driven by the ensemble (all trajectories in one batched prediction per
    step): ``ScheduleSettings`` runs the ANI-Al sampler, ``NVTSettings`` the DP-GEN one."""

    name: str = "md"
    settings: ScheduleSettings | NVTSettings = dc_field(default_factory=NVTSettings)

    @al_job(data=["frames_blob"], output_schema=ExplorationDocument)
    def make(self, structures, models: list, campaign: str, round: int, seed: int) -> ExplorationDocument:
        start, ens_id, ensemble, starts = _prepare(self, structures, models, round)
        dropped: list[dict] = []
        if isinstance(self.settings, ScheduleSettings):
            frames = langevin_schedule(starts, ensemble, self.settings, seed, explorer=self.name, dropped=dropped)
            stopped = [a for a in frames if a.info.get("stopped")]
            progress.report(f"{self.name} trajectories", round, stopped=len(stopped), of=self.settings.n_runs,
                            mean_time_ps=f"{np.mean([a.info['time_ps'] for a in stopped]) if stopped else self.settings.t_max_ps:.2f}")
        else:
            frames = nvt_explore(starts, ensemble, self.settings, round, seed, explorer=self.name, dropped=dropped)
        return _document(frames, campaign, round, self.name, ens_id, start, dropped)
