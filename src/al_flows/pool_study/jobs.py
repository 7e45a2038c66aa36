"""The jobs of a pool study (Sprueill et al.): pool, active sampling, static baselines,
comparison, shear runs, pathways and the ASE validation of the minima; the VASP validation is
:mod:`al_flows.pool_study.vasp_validation` and the whole study :mod:`al_flows.pool_study.flows`.

Every job carries ``metadata = {"campaign": study name, "fingerprint", "round": -1, "stage"}``;
stages: pool, active_sampling, baseline, compare, shear, pathways, validation (VASP: validation_dispatch,
vasp_validation per static/relax job, validation for the collect job).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Literal

import numpy as np
from jobflow import Maker

from al_flows.exploration.labeller_md import nvt_pool
from al_flows.exploration.shear import ShearSettings
from al_flows.exploration.shear_sequential import run_shear
from al_flows.exploration.shear_steps import run_seed
from al_flows.frames.extxyz import frames_from_bytes, frames_text
from al_flows.labelling.ase import calculator_factory
from al_flows.pool_study.active_sampling import ActiveSamplingSettings, run_active_sampling, static_epochs, train_static
from al_flows.pool_study.config import (
    ImportSource,
    PoolConfig,
    ShearStudyConfig,
    ValidationConfig,
)
from al_flows.pool_study.minima_validation import select_minima, validate_minimum
from al_flows.pool_study.schemas import (
    ComparisonDocument,
    PoolDocument,
    SamplingDocument,
    ShearRunsDocument,
    ShearStudyDocument,
    ValidationDocument,
)
from al_flows.pool_study.shear_pool import labeller_shear_pool
from al_flows.pool_study.shear_study import (
    pathways,
    relative_to_reference,
    step_record,
    tree_branches,
    unsheared_reference,
)
from al_flows.pool_study.strategies import (
    heldout_metrics,
    split_test,
    strategy_row,
    table_markdown,
    uniform_split,
    uniform_train,
)
from al_flows.pool_study.vasp_validation import validation_document
from al_flows.potential.model import ModelSettings, TrainingSettings
from al_flows.potential.training import Trainer
from al_flows.potential.weights import weights_text
from al_flows.structures.initial_data import build_structures
from al_flows.workflow import progress
from al_flows.workflow.config import AseLabeller
from al_flows.workflow.jobs import al_job, field, model_calculator

__all__ = [
    "PoolMaker",
    "ActiveSamplingMaker",
    "StaticBaselineMaker",
    "ShearRunsMaker",
    "MinimaValidationMaker",
    "compare_strategies",
    "shear_pathways",
]


# ``dc_field(default_factory=<pydantic settings class>)  # type: ignore[arg-type]``: mypy (without the pydantic
# plugin) does not see defaults given as ``Field(value, ...)``, so it takes these classes for ones that need arguments.


def _pool_frames(pool) -> tuple[list, np.ndarray]:
    """Frames of a PoolDocument and the positions of its test frames."""
    frames = frames_from_bytes(field(pool, "frames_blob"))
    test = set(field(pool, "test_ids"))
    return frames, np.array([k for k, a in enumerate(frames) if a.info["frame_id"] in test], dtype=int)


def _ids(frames, idx) -> list[str]:
    return [frames[int(k)].info["frame_id"] for k in idx]


@dataclass
class PoolMaker(Maker):
    """Build the labelled pool from its sources (imported files, labeller MD) and hold out the
    test frames. Frames seen twice (same frame_id) are kept once."""

    name: str = "pool"
    pool: PoolConfig | None = None
    labeller: AseLabeller = dc_field(default_factory=AseLabeller)  # type: ignore[arg-type]
    base_dir: str = "."

    @al_job(output_schema=PoolDocument)
    def make(self, study: str, seed: int) -> PoolDocument:
        """The labelled pool frames of the configured source, with their test split."""
        start = time.perf_counter()
        if self.pool is None:
            raise ValueError("PoolMaker.pool: no pool configuration given")
        frames, sources = [], []
        for i, src in enumerate(self.pool.sources):
            got = self._source_frames(i, src, seed)
            sources.append({"index": i, "kind": src.kind, "n_frames": len(got)})
            frames.extend(got)
        seen, unique = set(), []
        for atoms in frames:
            if atoms.info["frame_id"] not in seen:
                seen.add(atoms.info["frame_id"])
                unique.append(atoms)
        if len(unique) < 3:
            raise ValueError(
                f"pool.sources: only {len(unique)} distinct labelled frames; active sampling needs many more"
            )
        _, test_idx = split_test(len(unique), self.pool.test_fraction, seed)
        progress.report("pool", -1, frames=len(unique), test=len(test_idx))
        return PoolDocument(
            study=study,
            n_frames=len(unique),
            frame_ids=[a.info["frame_id"] for a in unique],
            test_ids=_ids(unique, test_idx),
            counts_by_source=_counts_by_source(unique),
            records=[_pool_record(a) for a in unique],
            sources=sources,
            wall_time=time.perf_counter() - start,
            frames_blob=frames_text(unique),
        )

    def _source_frames(self, i: int, src, seed: int) -> list:
        """The labelled frames of ``pool.sources[i]``: imported files, labeller shear or labeller MD."""
        from al_flows.pool_study.pool_import import import_frames, import_tree

        if isinstance(src, ImportSource):
            path = Path(self.base_dir) / src.path
            try:
                return (import_tree if path.is_dir() else import_frames)(path, stride=src.stride)
            except (ValueError, FileNotFoundError) as exc:
                raise ValueError(f"pool.sources[{i}].path: {exc}") from None
        structures = build_structures(src.structures, self.base_dir, where=f"pool.sources[{i}].structures")
        make_calc = calculator_factory(self.labeller.calculator, self.labeller.calculator_kwargs())
        if src.kind == "labeller_shear":
            shear = ShearSettings(**src.model_dump(include=set(ShearSettings.model_fields)))
            return labeller_shear_pool(
                structures,
                make_calc,
                shear,
                seed + i,
                self.labeller.labeller_name(),
                src.md_temperatures_K,
                src.md_steps,
                src.md_timestep_fs,
                src.md_interval,
            )
        return nvt_pool(
            structures,
            make_calc,
            src.temperatures_K,
            src.n_steps,
            src.timestep_fs,
            src.interval,
            seed=seed + i,
            labeller=self.labeller.labeller_name(),
        )


_RECORD_KEYS = (
    "source_file",
    "source_step",
    "source_format",
    "explorer",
    "parent_id",
    "temperature_K",
    "step",
    "opt_step",
    "gamma",
    "labeller",
)


def _pool_record(atoms) -> dict:
    """The provenance record of a pool frame (its frame_id and the ``_RECORD_KEYS`` of its info)."""
    return {"frame_id": atoms.info["frame_id"], **{k: atoms.info.get(k) for k in _RECORD_KEYS}}


def _counts_by_source(frames) -> dict[str, int]:
    """Frames per source format (imported) or explorer (labeller sources)."""
    counts: dict[str, int] = {}
    for atoms in frames:
        key = str(atoms.info.get("source_format") or atoms.info.get("explorer") or "unknown")
        counts[key] = counts.get(key, 0) + 1
    return counts


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
        train_ids=_ids(frames, run.train_idx),
        val_ids=_ids(frames, run.val_idx),
        initial_train_ids=_ids(frames, run.initial_train_idx),
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
        frames, test_idx = _pool_frames(pool)
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
        frames, test_idx = _pool_frames(pool)
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


@dataclass
class ShearRunsMaker(Maker):
    """Perturbed shear runs ``runs`` of one system with the study's model; run r of system i
    uses the noise seed (run_seed(seed, i), r), so results do not depend on how runs are split
    into jobs. Every relaxed step is analysed (:func:`al_flows.pool_study.shear_study.step_record`)."""

    name: str = "shear runs"
    settings: ShearStudyConfig = dc_field(default_factory=ShearStudyConfig)  # type: ignore[arg-type]
    base_dir: str = "."

    @al_job(output_schema=ShearRunsDocument)
    def make(self, model_doc, system: int, runs: list, study: str, seed: int) -> ShearRunsDocument:
        """Shear runs ``runs`` of structure ``system`` with the final active-sampling model."""
        start = time.perf_counter()
        structure = build_structures(self.settings.structures, self.base_dir, where="shear_study.structures")[system]
        name = str(structure.info.get("structure_id"))
        shear = ShearSettings(**{k: getattr(self.settings, k) for k in ShearSettings.model_fields})
        calc = model_calculator(model_doc)
        reference = unsheared_reference(structure, calc, shear.fmax, shear.max_opt_steps, shear.optimizer)
        frames: list = []
        records: list[dict] = []
        dropped: list[dict] = []
        for r in runs:
            got = run_shear(
                structure,
                calc,
                shear,
                seed=run_seed(seed, system),
                run=r,
                parent_id=name,
                explorer="shear_study",
                dropped=dropped,
            )
            frames.extend(got)
            records.extend({**step_record(f, structure), "system": name} for f in got)
        progress.report(
            "shear",
            -1,
            system=name,
            runs=len(runs),
            frames=len(frames),
            **({"dropped": len(dropped)} if dropped else {}),
        )
        return ShearRunsDocument(
            study=study,
            system=name,
            model_id=field(model_doc, "model_id"),
            runs=list(runs),
            records=relative_to_reference(records, reference),
            reference=reference,
            dropped=dropped,
            wall_time=time.perf_counter() - start,
            frames_blob=frames_text(frames),
        )


@al_job(output_schema=ShearStudyDocument)
def shear_pathways(
    study: str, runs_docs: list, merge_tol: float, defect_threshold: float, gamma_max: float
) -> ShearStudyDocument:
    """Merge each system's runs into pathways; keep the last frame of each pathway's
    representative run that reached gamma_max (the minima to validate)."""
    by_system: dict[str, list[dict]] = {}
    references: dict[str, dict] = {}
    frames_by_id = {}
    for doc in runs_docs:
        by_system.setdefault(field(doc, "system"), []).extend(field(doc, "records"))
        ref = doc.get("reference") if isinstance(doc, dict) else doc.reference  # absent in older documents
        references.setdefault(field(doc, "system"), ref or {})
        for atoms in frames_from_bytes(field(doc, "frames_blob")):
            frames_by_id[atoms.info["frame_id"]] = atoms
    systems: dict[str, dict] = {}
    minima = []
    for name, records in by_system.items():
        paths = pathways(records, merge_tol, defect_threshold)
        counts: dict[str, int] = {}
        for p in paths:
            counts[p["type"]] = counts.get(p["type"], 0) + 1
            if p["final_gamma"] >= gamma_max - 1e-9 and p["final_frame_id"] in frames_by_id:
                minima.append(frames_by_id[p["final_frame_id"]])
        systems[name] = {
            "n_runs": len({r["run"] for r in records}),
            "n_pathways": len(paths),
            "counts_by_type": counts,
            "pathways": paths,
            "tree": tree_branches(records, merge_tol),
            "reference": references[name],
        }
        progress.report("pathways", -1, system=name, pathways=len(paths))
    return ShearStudyDocument(
        study=study,
        model_id=field(runs_docs[0], "model_id") if runs_docs else "",
        merge_tol=merge_tol,
        systems=systems,
        n_runs=sum(s["n_runs"] for s in systems.values()),
        minima_blob=frames_text(minima),
    )


@dataclass
class MinimaValidationMaker(Maker):
    """The ``n_minima`` highest-energy gamma_max minima re-checked with the labeller
    (:mod:`al_flows.pool_study.minima_validation`)."""

    name: str = "validate minima"
    settings: ValidationConfig = dc_field(default_factory=ValidationConfig)  # type: ignore[arg-type]
    labeller: AseLabeller = dc_field(default_factory=AseLabeller)  # type: ignore[arg-type]

    @al_job(output_schema=ValidationDocument)
    def make(self, shear_study, model_doc, study: str) -> ValidationDocument:
        """Relax the highest-energy gamma_max minima with the labeller and report spurious ones."""
        start = time.perf_counter()
        s = self.settings
        chosen = select_minima(frames_from_bytes(field(shear_study, "minima_blob")), s.n_minima)
        make_ref = calculator_factory(self.labeller.calculator, self.labeller.calculator_kwargs())
        rows, relaxed = [], []
        for atoms in chosen:
            row, ref_min = validate_minimum(
                atoms, make_ref, lambda: model_calculator(model_doc), s.fmax, s.max_steps, s.spurious_tol
            )
            rows.append(row)
            relaxed.append(ref_min)
        doc = validation_document(
            study, self.labeller.labeller_name(), rows, relaxed, [], s, time.perf_counter() - start
        )
        progress.report("validation", -1, minima=doc.n_minima, spurious=doc.n_spurious, agree=doc.n_agree_single)
        return doc
