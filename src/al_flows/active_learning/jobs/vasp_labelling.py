"""Label frames with VASP through atomate2's StaticMaker (custodian, pymatgen, emmet).

``VaspLabelMaker.make(frames)`` returns a dispatch job that replaces itself with one
atomate2 ``StaticMaker`` job per frame plus a collect job:

- each static job has ``SYSTEM = <frame id>`` in its INCAR and metadata
  ``{campaign, round, stage: "vasp", frame_id, label_settings}``, so a crash or a
  resubmission redoes only that structure;
- a frame that already has a successful TaskDoc in the store with the same label
  settings is not recomputed: the collect job reads the stored TaskDoc instead;
- the collect job runs even when static jobs failed (missing outputs become None) and
  records those frames as failed labels with their reasons, and the core-hours of the runs that
  reported timings (``core_hours``, ``n_timed``: the cost a labelling budget counts).
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field

from jobflow import (
    CURRENT_JOB,
    Flow,
    Job,
    JobConfig,
    Maker,
    OnMissing,
    OutputReference,
    Response,
)
from pymatgen.io.ase import AseAtomsAdaptor

from al_flows.active_learning.jobs.labelling import check_success_fraction
from al_flows.active_learning.schemas import LabelDocument
from al_flows.frames.extxyz import frames_from_bytes, frames_text
from al_flows.frames.provenance import label_record
from al_flows.labelling.vasp_inputs import with_system_tag
from al_flows.labelling.vasp_labels import LabelError, label_from_taskdoc, run_core_hours
from al_flows.workflow import progress
from al_flows.workflow.jobs import al_job, field, resolve_reference, route


def existing_taskdoc_uuid(store, campaign: str, frame_id: str, label_settings: str) -> str | None:
    """uuid of a stored successful static job for this frame and these settings, if any."""
    docs = store.query(
        {
            "metadata.campaign": campaign,
            "metadata.stage": "vasp",
            "metadata.frame_id": frame_id,
            "metadata.label_settings": label_settings,
        },
        properties=["uuid", "index", "output.state"],
    )
    for d in sorted(docs, key=lambda d: -d["index"]):
        state = str((d.get("output") or {}).get("state", "")).split(".")[-1].lower()
        if state == "successful":
            return d["uuid"]
    return None


@dataclass
class VaspLabelMaker(Maker):
    """One atomate2 StaticMaker job per frame; failures isolated per frame."""

    name: str = "vasp label"
    static_maker: Maker | None = None
    labeller_name: str = "vasp:pnnl-cuni"
    label_settings: str = ""
    max_force: float = 50.0
    min_success_fraction: float = 0.5
    static_metadata: dict = dc_field(default_factory=dict)
    static_category: str = "vasp"
    collect_category: str = "cpu"
    labeller_settings: dict = dc_field(default_factory=dict)

    def settings_section(self) -> dict:
        """The ``labeller`` section of a campaign file with this labeller (JSON data; it names the
        campaign's fingerprint): ``labeller_settings`` when it was built from one, else the label
        settings id of the StaticMaker (a hash of its settings) and the force limit."""
        if self.labeller_settings:
            return dict(self.labeller_settings)
        return {"kind": "vasp", "label_settings": self.label_settings, "max_force": self.max_force}

    def make(self, frames, campaign: str, round: int, skip=False) -> Job:
        """``frames``: a reference to a document with ``selected_blob``."""
        j = self.dispatch(frames, campaign, round, skip)
        # references are resolved by the job itself, so it can pass them on unresolved
        j.config = JobConfig(resolve_references=False, expose_store=True, pass_manager_config=False)
        return j

    @al_job
    def dispatch(self, frames, campaign: str, round: int, skip=False):
        """Replace itself by one static VASP job per frame still unlabelled (a frame with a TaskDoc
        of the same ``label_settings`` reuses it) and a collect job that makes the LabelDocument;
        an empty LabelDocument when there is nothing to label."""
        store = CURRENT_JOB.store
        todo = (
            []
            if resolve_reference(skip, store)
            else frames_from_bytes(field(resolve_reference(frames, store), "selected_blob"))
        )
        if not todo:
            return LabelDocument(
                campaign=campaign,
                round=round,
                labeller=self.labeller_name,
                n_requested=0,
                n_labelled=0,
                n_failed=0,
                failures=[],
                core_hours=0.0,
                label_settings=self.label_settings,
                labelled_blob="",
            )
        statics, refs, reused = [], [], 0
        for atoms in todo:
            fid = atoms.info["frame_id"]
            uuid = existing_taskdoc_uuid(store, campaign, fid, self.label_settings)
            if uuid is not None:
                refs.append(OutputReference(uuid))
                reused += 1
                continue
            static = with_system_tag(self.static_maker, fid).make(AseAtomsAdaptor.get_structure(atoms))
            static.update_metadata(
                {
                    **self.static_metadata,
                    "campaign": campaign,
                    "round": round,
                    "stage": "vasp",
                    "frame_id": fid,
                    "label_settings": self.label_settings,
                },
                dynamic=False,
            )
            statics.append(route(static, self.static_category))
            refs.append(static.output)
        progress.report("vasp label", round, frames=len(todo), new_jobs=len(statics), reused=reused)
        collect = collect_vasp_labels(
            frames,
            refs,
            [r.uuid for r in refs],
            campaign,
            round,
            self.labeller_name,
            self.label_settings,
            self.max_force,
            self.min_success_fraction,
        )
        collect.config = JobConfig(on_missing_references=OnMissing.NONE)
        collect.update_metadata(
            {**self.static_metadata, "campaign": campaign, "round": round, "stage": "vasp_collect"}, dynamic=False
        )
        route(collect, self.collect_category)
        return Response(replace=Flow([*statics, collect], output=collect.output))


@al_job(output_schema=LabelDocument)
def collect_vasp_labels(
    frames,
    task_docs: list,
    task_uuids: list[str],
    campaign: str,
    round: int,
    labeller: str,
    label_settings: str,
    max_force: float,
    min_success_fraction: float,
) -> LabelDocument:
    """Labelled frames from their TaskDocs; a missing TaskDoc (the job failed) or an
    unsuccessful one becomes a failed label with its reason."""
    todo = frames_from_bytes(field(frames, "selected_blob"))
    labelled, failures = [], []
    timings = [h for h in (run_core_hours(doc) for doc in task_docs if doc is not None) if h is not None]
    for atoms, doc, uuid in zip(todo, task_docs, task_uuids, strict=True):
        fid = atoms.info["frame_id"]
        if doc is None:
            failures.append(
                {
                    "frame_id": fid,
                    "task_uuid": uuid,
                    "reason": "VASP job failed (custodian gave up, VASP crashed or its output could not be parsed); "
                    "see the job's directory",
                }
            )
            continue
        try:
            labelled.append(label_from_taskdoc(atoms, doc, uuid, labeller, label_settings, max_force))
        except LabelError as exc:
            failures.append({"frame_id": fid, "task_uuid": uuid, "reason": str(exc)})
    check_success_fraction(round, len(todo), len(labelled), failures, min_success_fraction)
    progress.report("labelled", round, ok=len(labelled), failed=len(failures))
    return LabelDocument(
        campaign=campaign,
        round=round,
        labeller=labeller,
        n_requested=len(todo),
        n_labelled=len(labelled),
        n_failed=len(failures),
        failures=failures,
        records=[label_record(a) for a in labelled],
        core_hours=float(sum(timings)),
        n_timed=len(timings),
        label_settings=label_settings,
        labelled_blob=frames_text(labelled),
    )
