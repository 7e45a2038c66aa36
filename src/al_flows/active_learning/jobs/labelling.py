"""The ASE labelling job of a round: label the selected frames one at a time with an ASE calculator
(:class:`AseLabelMaker`, over :mod:`al_flows.labelling.ase`), saving each label as it is done
(:class:`LabelCheckpoint`) so that a killed job recomputes none of them; a round whose labels mostly
failed stops with :class:`LabellingError` (:func:`check_success_fraction`, also used by the VASP
labelling of :mod:`al_flows.active_learning.jobs.vasp_labelling`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path

from jobflow import CURRENT_JOB, Job, Maker

from al_flows.active_learning.schemas import LabelDocument
from al_flows.frames.extxyz import frames_from_bytes, frames_text
from al_flows.frames.provenance import label_record
from al_flows.labelling.ase import LabelResult, calculator_factory, label_frames
from al_flows.workflow import progress
from al_flows.workflow.jobs import DATA_STORE, al_job, field, stable_uuid

__all__ = ["LabellingError", "check_success_fraction", "LabelCheckpoint", "AseLabelMaker"]


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
        campaign's fingerprint), which :func:`~al_flows.active_learning.labeller_slot.label_maker_for`
        fills in for a Maker built by hand."""
        return dict(self.labeller_settings)

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
