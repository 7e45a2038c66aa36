"""Explore with a round's ensemble: perturbed stochastic shear (METHODS A4)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from dataclasses import field as dc_field

import numpy as np
from jobflow import Maker, job

from al_flows import progress
from al_flows.dataset import frames_from_bytes
from al_flows.documents import ExplorationDocument, frames_text
from al_flows.makers._common import ensemble_id, field, load_ensemble, model_ids_of
from al_flows.provenance import explored_record
from al_flows.shear import ShearSettings, explore_shear


@dataclass
class ShearExploreMaker(Maker):
    """Relax perturbed, progressively sheared copies of every starting structure with the
    ensemble mean; every relaxed frame keeps its energy, gamma and model deviation."""

    name: str = "shear"
    settings: ShearSettings = dc_field(default_factory=ShearSettings)

    @job(data=["frames_blob"], output_schema=ExplorationDocument)
    def make(self, structures, models: list, campaign: str, round: int, seed: int) -> ExplorationDocument:
        start = time.perf_counter()
        ens_id = ensemble_id(model_ids_of(models))
        ensemble = load_ensemble(models)
        starts = frames_from_bytes(field(structures, "structures_blob"))
        progress.report(f"explore {self.name}", round, structures=len(starts), runs=self.settings.n_runs)
        frames = explore_shear(starts, ensemble.calculator(), self.settings, seed=seed, explorer=self.name)
        for atoms in frames:
            atoms.info.update(round=round, model_id=ens_id)
        deviations = [float(a.info.get("deviation", np.nan)) for a in frames]
        progress.report(f"explored {self.name}", round, frames=len(frames))
        return ExplorationDocument(
            campaign=campaign,
            round=round,
            explorer=self.name,
            ensemble_id=ens_id,
            n_frames=len(frames),
            deviations=deviations,
            frames=[explored_record(a) for a in frames],
            wall_time=time.perf_counter() - start,
            frames_blob=frames_text(frames),
        )
