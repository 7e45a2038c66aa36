"""The jobs of one active-learning round, in round order: train a member, explore with the
ensemble, label frames with an ASE calculator and merge the labels into the
dataset (jobflow Makers and jobs over the science modules). The round itself is
:mod:`al_flows.active_learning.flows`; VASP labelling :mod:`al_flows.active_learning.vasp_jobs`;
the selection :mod:`al_flows.active_learning.select_job`; the autotest
:mod:`al_flows.active_learning.autotest_jobs`.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path

import numpy as np
from jobflow import CURRENT_JOB, Job, Maker

from al_flows.active_learning.schemas import (
    DatasetDocument,
    ExplorationDocument,
    LabelDocument,
    TrainingDocument,
)
from al_flows.exploration.md import NVTSettings, ScheduleSettings, langevin_schedule, nvt_explore, survival_times
from al_flows.exploration.shear import ShearSettings, shear_level
from al_flows.exploration.shear_batched import explore_shear_batched
from al_flows.exploration.shear_sequential import explore_shear
from al_flows.frames.dataset import Dataset
from al_flows.frames.extxyz import frames_from_bytes, frames_text
from al_flows.frames.provenance import explored_record, frame_errors, label_record
from al_flows.labelling.ase import LabelResult, calculator_factory, label_frames
from al_flows.potential.device import resolve_device
from al_flows.potential.ensemble import Ensemble
from al_flows.potential.model import ModelSettings, TrainingSettings
from al_flows.potential.training import train_member
from al_flows.potential.weights import weights_text
from al_flows.workflow import progress
from al_flows.workflow.jobs import (
    DATA_STORE,
    al_job,
    ensemble_id,
    field,
    load_ensemble,
    model_ids_of,
    stable_uuid,
)

__all__ = [
    "TrainMemberMaker",
    "ShearExploreMaker",
    "MDExploreMaker",
    "LabellingError",
    "check_success_fraction",
    "LabelCheckpoint",
    "AseLabelMaker",
    "merge_labels",
]


# ---------------------------------------- training
# Train one SchNet ensemble member on every label available so far.
#
# A member whose training diverges is retried at a lower learning rate (``lr_used`` and ``retries``
# of its TrainingDocument); when every attempt diverges the job fails with
# :class:`al_flows.potential.training.TrainingDivergedError` (one line: member, seed, learning rates tried, what
# to do), which stops the round.


@dataclass
class TrainMemberMaker(Maker):
    """Train one member; members of an ensemble differ only by ``seed``."""

    name: str = "train"
    model: ModelSettings = dc_field(default_factory=ModelSettings)
    training: TrainingSettings = dc_field(default_factory=TrainingSettings)
    elements: list[str] = dc_field(default_factory=list)

    @al_job(output_schema=TrainingDocument)
    def make(self, dataset, campaign: str, round: int, member: int, seed: int) -> TrainingDocument:
        """Train member ``member`` with ``seed`` on the frames of ``dataset`` (a DatasetDocument);
        its weights, train/val split, best epoch and validation errors go into the TrainingDocument."""
        start = time.perf_counter()
        data = Dataset.from_bytes(field(dataset, "dataset_blob"))
        device = resolve_device(self.training.device)
        progress.report("train", round, member=member, labels=len(data), device=device)
        trained = train_member(
            data.frames,
            self.model,
            self.training.model_copy(update={"device": device}),
            seed=seed,
            elements=self.elements or None,
            member=member,
            log=lambda msg: progress.report("train retry", round, member=member, why=msg),
        )
        pred = Ensemble.from_bytes([trained.blob], device=device).predict(data.frames)
        split = {**dict.fromkeys(trained.train_ids, "train"), **dict.fromkeys(trained.val_ids, "val")}
        errors = frame_errors(data.frames, pred.energies[0], [f[0] for f in pred.forces], split)
        doc = TrainingDocument(
            campaign=campaign,
            round=round,
            member=member,
            seed=seed,
            model_id=hashlib.sha1(trained.blob).hexdigest()[:16],
            n_train=trained.n_train,
            n_val=trained.n_val,
            train_ids=list(trained.train_ids),
            val_ids=list(trained.val_ids),
            best_epoch=trained.best_epoch,
            val_force_rmse=trained.val_force_rmse,
            val_energy_rmse_per_atom=trained.val_energy_rmse_per_atom,
            curve=trained.curve,
            frame_errors=errors,
            model_settings=self.model.model_dump(),
            training_settings=self.training.model_dump(),
            lr_used=trained.lr,
            retries=list(trained.retries),
            device=device,
            wall_time=time.perf_counter() - start,
            model_blob=weights_text(trained.blob),
        )
        progress.report("trained", round, member=member, val_force_rmse=f"{doc.val_force_rmse:.4f}")
        return doc


# ---------------------------------------- exploration
# Explore with a round's ensemble: perturbed stochastic shear (Sprueill et al.), Langevin MD with a
# randomised temperature schedule and early stop (ANI-Al), NVT MD raised per round (DP-GEN); docs/methods.md.
#
# Replicas (shear runs, MD trajectories) that blow up are dropped, their frames after the blow-up
# never recorded, and listed in ``ExplorationDocument.dropped`` (see :mod:`al_flows.exploration.replica_checks`);
# the others go on. A job whose every replica blew up still succeeds, with zero frames.


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
    prediction per optimiser step for every running replica (:func:`al_flows.exploration.shear.explore_shear_batched`;
    ASE's BFGS/LBFGS/FIRE per replica, so the same frames as the sequential path up to the float
    round-off of batched evaluation); ``batched=False`` or starting structures with constraints
    take the sequential path with the ensemble's ASE calculator."""

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


# ---------------------------------------- labelling
# Label frames with an ASE calculator, and merge labels into the dataset.


class LabellingError(RuntimeError):
    """Too few labels of a round succeeded to go on."""


def check_success_fraction(
    round: int, n_requested: int, n_labelled: int, failures: list[dict], min_fraction: float
) -> None:
    """Raise LabellingError when fewer than ``min_fraction`` of the requested labels succeeded."""
    if n_requested and n_labelled / n_requested < min_fraction:
        reasons = "; ".join(sorted({f["reason"] for f in failures}))[:400]
        raise LabellingError(
            f"round {round}: only {n_labelled}/{n_requested} labels succeeded, below "
            f"labeller.min_success_fraction={min_fraction} (reasons: {reasons}); fix the labeller and run again "
            f"(labels already computed are kept and reused)"
        )


class LabelCheckpoint:
    """Labels of a running label job, saved one frame at a time in the JobStore's data store
    (``{"kind": "label_checkpoint", "job_uuid", "frame_id", "data": extxyz}``), so that a run
    killed in the middle of labelling recomputes none of the labels already done: the job,
    run again with the same uuid, reads them back. Without a store (job run outside a
    JobStore) nothing is saved."""

    KIND = "label_checkpoint"

    def __init__(self, data_store, job_uuid: str | None):
        self.data, self.job_uuid = data_store, job_uuid

    @classmethod
    def of_current_job(cls) -> LabelCheckpoint:
        """The checkpoint of the job now running (jobflow's ``CURRENT_JOB``), in its store's data store."""
        store, current = CURRENT_JOB.store, CURRENT_JOB.job
        data = store.additional_stores.get(DATA_STORE) if store is not None else None
        return cls(data, current.uuid if current is not None else None)

    def load(self) -> dict:
        """{frame_id: labelled Atoms} saved by earlier runs of this job."""
        if self.data is None or self.job_uuid is None:
            return {}
        out = {}
        for doc in self.data.query({"kind": self.KIND, "job_uuid": self.job_uuid}, properties=["frame_id", "data"]):
            for atoms in frames_from_bytes(doc["data"]):
                out[doc["frame_id"]] = atoms
        return out

    def save(self, atoms) -> None:
        """Save one labelled frame under its ``frame_id`` (replacing an earlier save of it)."""
        if self.data is None or self.job_uuid is None:
            return
        from maggma.stores import GridFSStore

        fid = atoms.info["frame_id"]
        doc = {
            "blob_uuid": stable_uuid(self.job_uuid, self.KIND, fid),
            "kind": self.KIND,
            "job_uuid": self.job_uuid,
            "frame_id": fid,
            "data": frames_text([atoms]),
        }
        if isinstance(self.data, GridFSStore):  # GridFS searches only the fields kept as file metadata
            self.data.update([doc], key="blob_uuid", additional_metadata=["kind", "job_uuid", "frame_id"])
        else:
            self.data.update([doc], key="blob_uuid")


@dataclass
class AseLabelMaker(Maker):
    """Label every frame of ``selected_blob`` with an ASE calculator ('emt' by default);
    failures are recorded per frame, never fatal to the others."""

    name: str = "label"
    calculator: str = "emt"
    calculator_kwargs: dict = dc_field(default_factory=dict)
    max_force: float = 50.0
    min_success_fraction: float = 0.5
    label_settings: str = ""
    labeller_settings: dict = dc_field(default_factory=dict)

    def settings_section(self) -> dict:
        """The ``labeller`` section of a campaign file with this labeller (JSON data; it names the
        campaign's fingerprint): ``labeller_settings`` when it was built from one, else the
        calculator, its keyword arguments and the force limit."""
        if self.labeller_settings:
            return dict(self.labeller_settings)
        return {
            "kind": "ase",
            "calculator": self.calculator,
            "kwargs": dict(self.calculator_kwargs),
            "max_force": self.max_force,
        }

    @property
    def labeller_name(self) -> str:
        """``ase:<calculator>`` (``ase:eam:<potential file name>``), recorded as the ``labeller`` of every label."""
        file = self.potential_file()
        return f"ase:{self.calculator}" if file is None else f"ase:{self.calculator}:{file['name']}"

    def make(self, frames, campaign: str, round: int, skip: bool = False) -> Job:
        """Job labelling the frames of ``frames`` (a document with ``selected_blob``)."""
        j = self.label(frames, campaign, round, skip)
        j.config.expose_store = True  # per-frame checkpoints, see LabelCheckpoint
        return j

    @al_job(output_schema=LabelDocument)
    def label(self, frames, campaign: str, round: int, skip: bool = False) -> LabelDocument:
        """Label the frames of ``frames`` one at a time (``skip``: label none), reusing the
        checkpointed labels of an earlier run of this job; fails with LabellingError below
        ``min_success_fraction``."""
        start = time.perf_counter()
        todo = [] if skip else frames_from_bytes(field(frames, "selected_blob"))
        checkpoint = LabelCheckpoint.of_current_job()
        saved = checkpoint.load()
        progress.report("label", round, frames=len(todo), **({"reused": len(saved)} if saved else {}))
        make_calc = calculator_factory(self.calculator, self.calculator_kwargs)
        result = LabelResult()
        for atoms in todo:
            fid = atoms.info.get("frame_id")
            if fid in saved:
                result.labelled.append(saved[fid])
                continue
            one = label_frames([atoms], make_calc, self.labeller_name, self.max_force)
            for done in one.labelled:
                done.info["label_settings"] = self.label_settings
                checkpoint.save(done)
            result.labelled += one.labelled
            result.failed += one.failed
        if result.failed:
            progress.report("label failures", round, failed=len(result.failed))
        check_success_fraction(round, len(todo), len(result.labelled), result.failed, self.min_success_fraction)
        return LabelDocument(
            campaign=campaign,
            round=round,
            labeller=self.labeller_name,
            n_requested=len(todo),
            n_labelled=len(result.labelled),
            n_failed=len(result.failed),
            failures=result.failed,
            records=[label_record(a) for a in result.labelled],
            wall_time=time.perf_counter() - start,
            label_settings=self.label_settings,
            potential_file=self.potential_file(),
            labelled_blob=frames_text(result.labelled),
        )

    def potential_file(self) -> dict | None:
        """calculator eam: the potential file's name and sha256; else None."""
        if self.calculator.lower() != "eam":
            return None
        return {"name": Path(self.calculator_kwargs["potential"]).name, "sha256": self.calculator_kwargs.get("sha256")}


@al_job(output_schema=DatasetDocument)
def merge_labels(dataset, labels, campaign: str, round: int, allow_mixed_settings: bool = False) -> DatasetDocument:
    """Dataset of the previous round (None for the initial data) plus this round's labels.

    Refuses labels computed with other settings than the dataset's (``label_settings``)
    unless ``allow_mixed_settings``."""
    data = Dataset.from_bytes(field(dataset, "dataset_blob")) if dataset is not None else Dataset()
    new = frames_from_bytes(field(labels, "labelled_blob"))
    if not allow_mixed_settings:
        have = {a.info.get("label_settings", "") for a in data}
        incoming = {a.info.get("label_settings", "") for a in new}
        if len(have | incoming) > 1:
            raise LabellingError(
                f"round {round}: labels with different settings would be mixed ({sorted(have | incoming)}); "
                f"keep the labeller settings of the campaign or set labeller.allow_mixed_settings: true"
            )
    added = data.add(new)
    progress.report("dataset", round, labels=len(data), added=len(added))
    return DatasetDocument(
        campaign=campaign,
        round=round,
        n_frames=len(data),
        n_added=len(added),
        frame_ids=data.ids,
        counts_by_explorer=data.counts_by("explorer"),
        dataset_blob=frames_text(data),
    )
