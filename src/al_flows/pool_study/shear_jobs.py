"""The shear-study jobs of a pool study (Sprueill et al.) with the study's model: perturbed shear runs,
their pathways, and the validation of the gamma_max minima with an ASE labeller (the VASP validation is
:mod:`al_flows.pool_study.vasp_validation`); lengths in Angstrom, energies in eV.

Every job carries ``metadata = {"campaign": study name, "fingerprint", "round": -1, "stage"}``
(:mod:`al_flows.pool_study.flows`); stages: shear, pathways, validation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from dataclasses import field as dc_field

from jobflow import Maker

from al_flows.exploration.shear import ShearSettings
from al_flows.exploration.shear_sequential import run_shear
from al_flows.exploration.shear_steps import run_seed
from al_flows.frames.extxyz import frames_from_bytes, frames_text
from al_flows.labelling.ase import calculator_factory
from al_flows.pool_study.config import ShearStudyConfig, ValidationConfig
from al_flows.pool_study.minima_validation import select_minima, validate_minimum
from al_flows.pool_study.schemas import ShearRunsDocument, ShearStudyDocument, ValidationDocument
from al_flows.pool_study.shear_study import (
    pathways,
    relative_to_reference,
    step_record,
    tree_branches,
    unsheared_reference,
)
from al_flows.pool_study.vasp_validation import validation_document
from al_flows.structures.initial_data import build_structures
from al_flows.workflow import progress
from al_flows.workflow.config import AseLabeller
from al_flows.workflow.jobs import al_job, field, model_calculator

__all__ = ["ShearRunsMaker", "MinimaValidationMaker", "shear_pathways"]


# ``dc_field(default_factory=<pydantic settings class>)  # type: ignore[arg-type]``: mypy (without the pydantic
# plugin) does not see defaults given as ``Field(value, ...)``, so it takes these classes for ones that need arguments.


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
