"""The Table I jobs of a pool study (Sprueill et al.): active sampling over the pool, static baselines
trained with its budget, and the comparison of their held-out errors (losses, force RMSE in eV/Angstrom).

Every job carries ``metadata = {"campaign": study name, "fingerprint", "round": -1, "stage"}``
(:mod:`al_flows.pool_study.flows`); stages: active_sampling, baseline, compare.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Literal

import numpy as np
from jobflow import Maker

from al_flows.pool_study.active_sampling import ActiveSamplingSettings, run_active_sampling, static_epochs, train_static
from al_flows.pool_study.pool_jobs import frame_ids_at, pool_document_frames
from al_flows.pool_study.schemas import ComparisonDocument, SamplingDocument
from al_flows.pool_study.strategies import heldout_metrics, strategy_row, table_markdown, uniform_split, uniform_train
from al_flows.potential.model import ModelSettings, TrainingSettings
from al_flows.potential.training import Trainer
from al_flows.potential.weights import weights_text
from al_flows.workflow import progress
from al_flows.workflow.jobs import al_job, field

__all__ = ["ActiveSamplingMaker", "StaticBaselineMaker", "compare_strategies"]


# ``dc_field(default_factory=<pydantic settings class>)  # type: ignore[arg-type]``: mypy (without the pydantic
# plugin) does not see defaults given as ``Field(value, ...)``, so it takes these classes for ones that need arguments.


def _sampling_document(
    study, run, frames, trainer, metrics, model, training, settings, seed, start
) -> SamplingDocument:
    iterations = []
    for it in run.iterations:
        rec = dict(it)
        rec["included"] = [
            {"frame_id": frames[x["index"]].info["frame_id"], "error": x["error"], "p": x["p"]} for x in it["included"]
        ]
        iterations.append(rec)
    row = strategy_row(run.strategy, run.best, run.final, len(run.train_idx), len(run.val_idx), run.n_steps, metrics)
    return SamplingDocument(
        study=study,
        strategy=run.strategy,
        seed=seed,
        model_id=hashlib.sha1(run.blob).hexdigest()[:16],
        n_train=len(run.train_idx),
        n_val=len(run.val_idx),
        n_steps=run.n_steps,
        n_epochs=len(run.curve),
        row=row,
        curve=run.curve,
        iterations=iterations,
        train_ids=frame_ids_at(frames, run.train_idx),
        val_ids=frame_ids_at(frames, run.val_idx),
        initial_train_ids=frame_ids_at(frames, run.initial_train_idx),
        n_reserve=len(run.reserve_idx),
        model_settings=model.model_dump(),
        training_settings=training.model_dump(),
        settings=settings,
        wall_time=time.perf_counter() - start,
        model_blob=weights_text(run.blob),
        final_model_blob=weights_text(run.final_blob),
    )


@dataclass
class ActiveSamplingMaker(Maker):
    """Active sampling over the pool (test frames excluded); see :mod:`al_flows.pool_study.active_sampling`."""

    name: str = "active sampling"
    model: ModelSettings = dc_field(default_factory=ModelSettings)
    training: TrainingSettings = dc_field(default_factory=TrainingSettings)
    settings: ActiveSamplingSettings = dc_field(default_factory=ActiveSamplingSettings)  # type: ignore[arg-type]
    elements: list[str] = dc_field(default_factory=list)

    @al_job(output_schema=SamplingDocument)
    def make(self, pool, study: str, seed: int) -> SamplingDocument:
        """Active sampling on the pool (Sprueill et al.): filtered frames trained on, round after round."""
        start = time.perf_counter()
        frames, test_idx = pool_document_frames(pool)
        rest = np.setdiff1d(np.arange(len(frames)), test_idx)
        trainer = Trainer(frames, self.model, self.training, seed, self.elements or None)
        run = run_active_sampling(trainer, rest, self.settings, seed, log=lambda m: progress.logger.info(m))
        metrics = heldout_metrics(trainer, test_idx)
        progress.report(
            "active sampling", -1, train=len(run.train_idx), test_force_rmse=f"{metrics['test_force_rmse']:.4f}"
        )
        return _sampling_document(
            study, run, frames, trainer, metrics, self.model, self.training, self.settings.model_dump(), seed, start
        )


@dataclass
class StaticBaselineMaker(Maker):
    """Static training with the active run's budget: ``uniform`` (a uniform random 8/9 of the
    non-test pool, validated on the active run's validation frames with ``validation`` 'common' or on
    the remaining ninth with 'own') or ``active_set`` (the active run's final training and
    validation frames)."""

    name: str = "baseline"
    model: ModelSettings = dc_field(default_factory=ModelSettings)
    training: TrainingSettings = dc_field(default_factory=TrainingSettings)
    elements: list[str] = dc_field(default_factory=list)
    budget: Literal["steps", "epochs"] = "steps"
    validation: str = "common"

    @al_job(output_schema=SamplingDocument)
    def make(self, pool, active, strategy: str, study: str, seed: int) -> SamplingDocument:
        """A static baseline (uniform or the active set) trained once with the same budget."""
        start = time.perf_counter()
        frames, test_idx = pool_document_frames(pool)
        position = {a.info["frame_id"]: k for k, a in enumerate(frames)}
        active_val = np.array([position[i] for i in field(active, "val_ids")], dtype=int)
        rest = np.setdiff1d(np.arange(len(frames)), test_idx)
        if strategy == "uniform" and self.validation == "common":
            train_idx, val_idx = uniform_train(rest, active_val, seed), active_val
        elif strategy == "uniform":
            train_idx, val_idx = uniform_split(rest, seed)
        elif strategy == "active_set":
            train_idx = np.array([position[i] for i in field(active, "train_ids")], dtype=int)
            val_idx = active_val
        else:
            raise ValueError(f"strategy: unknown baseline {strategy!r}; use uniform or active_set")
        trainer = Trainer(frames, self.model, self.training, seed, self.elements or None)
        n_epochs = static_epochs(
            trainer, len(train_idx), self.budget, field(active, "n_steps"), field(active, "n_epochs")
        )
        run = train_static(trainer, train_idx, val_idx, n_epochs, strategy, seed)
        metrics = heldout_metrics(trainer, test_idx)
        progress.report(
            f"baseline {strategy}", -1, epochs=n_epochs, test_force_rmse=f"{metrics['test_force_rmse']:.4f}"
        )
        settings = {"budget": self.budget, "validation": self.validation, "active_n_steps": field(active, "n_steps")}
        return _sampling_document(
            study, run, frames, trainer, metrics, self.model, self.training, settings, seed, start
        )


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b and np.isfinite(a) and np.isfinite(b) else float("nan")


@al_job(output_schema=ComparisonDocument)
def compare_strategies(study: str, runs: list) -> ComparisonDocument:
    """Table I of Sprueill et al. for the runs (active first) and uniform/active ratios of validation loss, test loss
    and test force RMSE."""
    rows = [dict(field(r, "row")) for r in runs]
    by = {r["strategy"]: r for r in rows}
    ratios = {}
    for other in ("uniform", "active_set"):
        if other in by and "active" in by:
            a, b = by["active"], by[other]
            ratios[f"{other}_over_active_best_val_loss"] = _ratio(b["best_val_loss"], a["best_val_loss"])
            ratios[f"{other}_over_active_test_loss"] = _ratio(b["test_loss"], a["test_loss"])
            ratios[f"{other}_over_active_test_force_rmse"] = _ratio(b["test_force_rmse"], a["test_force_rmse"])
    table = table_markdown(rows)
    progress.report("compare", -1, **{k: f"{v:.3g}" for k, v in ratios.items() if "test_force" in k})
    return ComparisonDocument(study=study, rows=rows, table=table, ratios=ratios)
