"""Validation of NNP shear minima with VASP (Fig. 6 of Sprueill et al., with DFT): per minimum an atomate2
StaticMaker job (single point) and a RelaxMaker job (ionic positions at fixed cell), then a
collect job that relaxes each VASP minimum back with the NNP and writes the table.

Jobs carry metadata ``{campaign, fingerprint, round: -1, stage: "vasp_validation", frame_id,
calculation: "static" | "relax"}``; a failed VASP job leaves its minimum out of the table, with
the reason, and never stops the others.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from dataclasses import field as dc_field

from jobflow import CURRENT_JOB, Flow, Job, JobConfig, Maker, OnMissing, OutputReference, Response
from pymatgen.io.ase import AseAtomsAdaptor

from al_flows.frames.extxyz import frames_from_bytes, frames_text
from al_flows.labelling.vasp_inputs import with_system_tag
from al_flows.labelling.vasp_labels import LabelError, failure_reason, get_path
from al_flows.pool_study.config import ValidationConfig
from al_flows.pool_study.minima_validation import select_minima, validation_row
from al_flows.pool_study.schemas import ValidationDocument
from al_flows.workflow import progress
from al_flows.workflow.jobs import al_job, field, model_calculator, resolve_reference, route


def _energy(task_doc) -> float:
    reason = failure_reason(task_doc)
    if reason:
        raise LabelError(reason)
    return float(get_path(task_doc, "output", "energy"))


def _structure(task_doc):
    s = get_path(task_doc, "output", "structure")
    if isinstance(s, dict):
        from pymatgen.core import Structure

        s = Structure.from_dict(s)
    return AseAtomsAdaptor.get_atoms(s)


def validation_document(
    study, labeller, rows, relaxed, failures, settings: ValidationConfig, wall_time
) -> ValidationDocument:
    """The ValidationDocument of a set of rows (shared by the ASE and VASP validations)."""
    d = [abs(r["d_single_per_atom"]) for r in rows]
    return ValidationDocument(
        study=study,
        labeller=labeller,
        rows=rows,
        failures=failures,
        n_minima=len(rows),
        n_spurious=sum(r["spurious"] for r in rows),
        n_agree_single=sum(x <= settings.agree_tol for x in d),
        max_abs_d_single_per_atom=float(max(d)) if d else float("nan"),
        agree_tol=settings.agree_tol,
        spurious_tol=settings.spurious_tol,
        wall_time=wall_time,
        relaxed_blob=frames_text(relaxed),
    )


@dataclass
class VaspMinimaValidationMaker(Maker):
    """The ``n_minima`` highest-energy gamma_max minima re-checked with VASP (static + relax)."""

    name: str = "validate minima vasp"
    settings: ValidationConfig = dc_field(default_factory=ValidationConfig)
    static_maker: Maker | None = None
    relax_maker: Maker | None = None
    labeller_name: str = "vasp"
    metadata: dict = dc_field(default_factory=dict)
    vasp_category: str = "vasp"
    collect_category: str = "cpu"

    def make(self, shear_study, model_doc, study: str) -> Job:
        """Job validating the minima of ``shear_study`` (a document with ``minima_blob``) found with ``model_doc``."""
        j = self.dispatch(shear_study, model_doc, study)
        j.config = JobConfig(resolve_references=False, expose_store=True, pass_manager_config=False)
        return j

    @al_job
    def dispatch(self, shear_study, model_doc, study: str):
        """Replace itself by a static and a relax VASP job per selected minimum and a collect job
        that makes the ValidationDocument."""
        store = CURRENT_JOB.store
        minima = select_minima(
            frames_from_bytes(field(resolve_reference(shear_study, store), "minima_blob")), self.settings.n_minima
        )
        jobs: list[Job] = []
        statics: list[OutputReference] = []
        relaxes: list[OutputReference] = []
        for atoms in minima:
            fid = atoms.info["frame_id"]
            structure = AseAtomsAdaptor.get_structure(atoms)
            for kind, maker, outputs in (("static", self.static_maker, statics), ("relax", self.relax_maker, relaxes)):
                j = with_system_tag(maker, fid).make(structure)
                j.update_metadata(
                    {
                        **self.metadata,
                        "campaign": study,
                        "round": -1,
                        "stage": "vasp_validation",
                        "frame_id": fid,
                        "calculation": kind,
                    },
                    dynamic=False,
                )
                jobs.append(route(j, self.vasp_category))
                outputs.append(j.output)
        collect = collect_vasp_validation(
            frames_text(minima), statics, relaxes, model_doc, study, self.settings, self.labeller_name
        )
        collect.config = JobConfig(on_missing_references=OnMissing.NONE)
        collect.update_metadata({**self.metadata, "campaign": study, "round": -1, "stage": "validation"}, dynamic=False)
        route(collect, self.collect_category)
        progress.report("vasp validation", -1, minima=len(minima), jobs=len(jobs))
        return Response(replace=Flow([*jobs, collect], output=collect.output))


@al_job(output_schema=ValidationDocument)
def collect_vasp_validation(
    minima_text: str, statics: list, relaxes: list, model_doc, study: str, settings: ValidationConfig, labeller: str
):
    """Rows from the VASP TaskDocs; the NNP relaxes each VASP minimum back."""
    start = time.perf_counter()
    rows, relaxed, failures = [], [], []
    for atoms, static, relax in zip(frames_from_bytes(minima_text), statics, relaxes, strict=True):
        fid = atoms.info["frame_id"]
        try:
            if static is None or relax is None:
                raise LabelError(
                    "VASP job failed (custodian gave up, VASP crashed or its output could not be parsed); see the "
                    "job's directory"
                )
            e_ref, e_relaxed = _energy(static), _energy(relax)
            ref_min = _structure(relax)
        except LabelError as exc:
            failures.append({"frame_id": fid, "reason": str(exc)})
            continue
        ref_min.info = {**atoms.info}
        calcs = get_path(relax, "calcs_reversed") or [None]
        n_steps = len(get_path(calcs[0], "output", "ionic_steps") or [])
        rows.append(  # a relaxation that did not converge is a failed task (above), so this one converged
            validation_row(
                atoms,
                e_ref,
                ref_min,
                e_relaxed,
                True,
                n_steps,
                lambda: model_calculator(model_doc),
                settings.fmax,
                settings.max_steps,
                settings.spurious_tol,
            )
        )
        relaxed.append(ref_min)
    doc = validation_document(study, labeller, rows, relaxed, failures, settings, time.perf_counter() - start)
    progress.report("validation", -1, minima=doc.n_minima, spurious=doc.n_spurious, failed=len(failures))
    return doc
