"""The training job of a round: train one SchNet ensemble member on every label available so far
(jobflow Maker over :mod:`al_flows.potential.training`).

With ``training.warm_start`` a member starts from the weights of the same member of the round before
(``previous``, its TrainingDocument) and trains ``training.epochs_warm`` epochs, unless
:mod:`al_flows.active_learning.member_start` says why it trains from scratch; the TrainingDocument
records which (``start``, ``warm_start_from``, ``scratch_reason``).

A member whose training diverges is retried at a lower learning rate (``lr_used`` and ``retries``
of its TrainingDocument); when every attempt diverges the job fails with
:class:`al_flows.potential.training.TrainingDivergedError` (one line: member, seed, learning rates tried, what
to do), which stops the round."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from dataclasses import field as dc_field

from jobflow import Maker

from al_flows.active_learning.member_start import labels_from, scratch_round, warm_start_of
from al_flows.active_learning.schemas import TrainingDocument
from al_flows.frames.dataset import Dataset
from al_flows.frames.provenance import frame_errors
from al_flows.potential.device import resolve_device
from al_flows.potential.ensemble import Ensemble
from al_flows.potential.model import ModelSettings, TrainingSettings
from al_flows.potential.training import TrainedMember, train_member
from al_flows.potential.weights import weights_text
from al_flows.workflow import progress
from al_flows.workflow.jobs import al_job, field

__all__ = ["TrainMemberMaker"]


@dataclass
class TrainMemberMaker(Maker):
    """Train one member; members of an ensemble differ only by ``seed``."""

    name: str = "train"
    model: ModelSettings = dc_field(default_factory=ModelSettings)
    training: TrainingSettings = dc_field(default_factory=TrainingSettings)
    elements: list[str] = dc_field(default_factory=list)

    @al_job(output_schema=TrainingDocument)
    def make(
        self,
        dataset,
        campaign: str,
        round: int,
        member: int,
        seed: int,
        previous=None,
        previous_uuid: str | None = None,
    ) -> TrainingDocument:
        """Train member ``member`` with ``seed`` on the frames of ``dataset`` (a DatasetDocument);
        its weights, train/val split, best epoch and validation errors go into the TrainingDocument.
        ``previous`` (``training.warm_start`` only): the TrainingDocument of the same member of the round
        before, from whose weights it starts (its train job: ``previous_uuid``)."""
        start = time.perf_counter()
        data = Dataset.from_bytes(field(dataset, "dataset_blob"))
        device = resolve_device(self.training.device)
        elements = self.elements or None
        warm, reason = None, scratch_round(self.training, round)
        if not reason:
            warm, reason = warm_start_of(previous, self.training, self.model, data.frames, elements)
        how = {"start": f"warm from {warm.model_id}"} if warm is not None else {}
        progress.report("train", round, member=member, labels=len(data), device=device, **how)
        trained = train_member(
            data.frames,
            self.model,
            self.training.model_copy(update={"device": device}),
            seed=seed,
            elements=elements,
            member=member,
            log=lambda msg: progress.report("train retry", round, member=member, why=msg),
            warm=warm,
        )
        pred = Ensemble.from_bytes([trained.blob], device=device).predict(data.frames)
        split = {**dict.fromkeys(trained.train_ids, "train"), **dict.fromkeys(trained.val_ids, "val")}
        errors = frame_errors(data.frames, pred.energies[0], [f[0] for f in pred.forces], split)
        provenance = {
            "start": "scratch" if warm is None else "warm",
            "warm_start_from": None if warm is None else warm.model_id,
            "warm_start_uuid": None if warm is None else previous_uuid,
            "scratch_reason": reason,
            "labels_from": labels_from(data.frames),
            "frame_errors": errors,
            "device": device,
            "wall_time": time.perf_counter() - start,
        }
        doc = self.document(trained, campaign, round, member, provenance)
        progress.report("trained", round, member=member, val_force_rmse=f"{doc.val_force_rmse:.4f}")
        return doc

    def document(self, trained: TrainedMember, campaign: str, round: int, member: int, more: dict) -> TrainingDocument:
        """The TrainingDocument of ``trained`` (``more``: the fields the job measured: how it started,
        its frame errors, device and wall time)."""
        return TrainingDocument(
            campaign=campaign,
            round=round,
            member=member,
            seed=trained.seed,
            model_id=hashlib.sha1(trained.blob).hexdigest()[:16],
            n_train=trained.n_train,
            n_val=trained.n_val,
            train_ids=list(trained.train_ids),
            val_ids=list(trained.val_ids),
            best_epoch=trained.best_epoch,
            val_force_rmse=trained.val_force_rmse,
            val_energy_rmse_per_atom=trained.val_energy_rmse_per_atom,
            curve=trained.curve,
            model_settings=self.model.model_dump(),
            training_settings=self.training.model_dump(),
            lr_used=trained.lr,
            retries=list(trained.retries),
            model_blob=weights_text(trained.blob),
            **more,
        )
