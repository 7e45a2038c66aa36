"""The VASP reference of convergence properties (``convergence.properties`` with a VASP labeller),
from atomate2's own EOS and elastic flows, run once per campaign and kept in the store.

``VaspPropertyReferenceMaker.make(convergence, campaign)`` returns a job that replaces itself with,
for each element: atomate2's ``EosMaker`` flow on the element's ground-state crystal (one-atom cell
at ASE's reference lattice constant; six cells from -5 % to +5 % linear strain, ions relaxed at
fixed cell), and, when an elastic constant is listed, a job that scales the crystal to the EOS
minimum and atomate2's ``ElasticMaker`` flow on it; then a collect job whose output is the
:class:`PropertyReferenceDocument`. The DFT settings are the labeller's
(:func:`al_flows.labelling.vasp_inputs.property_reference_makers`).

Values (:func:`reference_values`): the Birch-Murnaghan fit of atomate2's EOS post-processing gives
``v0`` (Angstrom^3/atom), ``e0`` (eV/atom), ``B`` (GPa) and ``a0`` (Angstrom, from v0); the elastic
document's IEEE-format tensor gives ``C11``, ``C12``, ``C44`` (GPa). Other autotest rows (defect,
surface and stacking-fault energies, other lattices) have no VASP reference here and are refused
by :func:`al_flows.validation.properties.check_vasp_properties`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from jobflow import Flow, Job, JobConfig, Maker, OnMissing, Response
from pymatgen.io.ase import AseAtomsAdaptor

from al_flows.active_learning.jobs.properties import reference_document
from al_flows.active_learning.schemas import PropertyReferenceDocument
from al_flows.labelling.vasp_inputs import property_reference_makers
from al_flows.validation.lattices import a_from_volume, crystal, guess_lattice_constant
from al_flows.validation.properties import PropertyConvergence, check_vasp_properties
from al_flows.workflow import progress
from al_flows.workflow.jobs import al_job
from al_flows.workflow.jobs import field as output_field

__all__ = [
    "reference_values",
    "VaspPropertyReferenceMaker",
]

_ELASTIC = ("C11", "C12", "C44")
_EOS_MODEL = "birch_murnaghan"


def reference_values(eos_output: dict, n_atoms: int, lattice: str, elastic_output=None) -> dict[str, float]:
    """The reference properties of one element from atomate2's EOS flow output (``relax`` fits,
    energies in eV per cell of ``n_atoms`` atoms, volumes in Angstrom^3) and, when given, its
    ElasticDocument (``elastic_tensor.ieee_format``, GPa)."""
    fit = eos_output["relax"]["EOS"][_EOS_MODEL]
    if "exception" in fit:
        raise ValueError(f"VASP property reference: the EOS fit failed ({fit['exception']})")
    v0 = float(fit["v0"]) / n_atoms
    out = {"v0": v0, "e0": float(fit["e0"]) / n_atoms, "B": float(fit["b0 GPa"]), "a0": a_from_volume(v0, lattice)}
    if elastic_output is not None:
        tensor = output_field(output_field(elastic_output, "elastic_tensor"), "ieee_format")
        out |= {"C11": float(tensor[0][0]), "C12": float(tensor[0][1]), "C44": float(tensor[3][3])}
    return out


def ground_state(element: str, lattice: str):
    """The one-atom ``lattice`` crystal of ``element`` at ASE's reference lattice constant (pymatgen)."""
    return AseAtomsAdaptor.get_structure(crystal(element, lattice, guess_lattice_constant(element, lattice)))


@al_job
def at_eos_volume(structure, eos_output: dict):
    """``structure`` scaled isotropically to the EOS minimum's volume (Birch-Murnaghan fit)."""
    scaled = structure.copy()
    scaled.scale_lattice(float(eos_output["relax"]["EOS"][_EOS_MODEL]["v0"]))
    return scaled


@dataclass
class VaspPropertyReferenceMaker(Maker):
    """The labeller's (VASP) values of the listed properties, from atomate2's EOS and elastic flows.

    ``eos_maker`` / ``elastic_maker``: atomate2 Makers (default: built from ``static_maker``, the
    labeller's StaticMaker, with ``kpoints``); ``reference``: the labeller's name in documents;
    ``vasp_category`` / ``collect_category``: FireWorks categories of the VASP flows and of the
    dispatch and collect jobs; ``metadata``: added to every job (campaign, fingerprint)."""

    name: str = "vasp property reference"
    static_maker: Maker | None = None
    kpoints: dict | None = None
    eos_maker: Maker | None = None
    elastic_maker: Maker | None = None
    reference: str = "vasp"
    vasp_category: str = "vasp"
    collect_category: str = "cpu"
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.eos_maker is None or self.elastic_maker is None:
            if self.static_maker is None:
                raise ValueError(
                    "VaspPropertyReferenceMaker: give static_maker (the labeller's) or both atomate2 Makers"
                )
            eos, elastic = property_reference_makers(self.static_maker, self.kpoints)
            self.eos_maker = self.eos_maker or eos
            self.elastic_maker = self.elastic_maker or elastic

    def make(self, convergence: PropertyConvergence, campaign: str) -> Job:
        """The dispatch job (its output: the PropertyReferenceDocument)."""
        check_vasp_properties([t.name for t in convergence.targets], convergence.settings.lattice)
        return self.dispatch(convergence, campaign)

    @al_job
    def dispatch(self, convergence: PropertyConvergence, campaign: str):
        """Replace itself with the EOS (and elastic) flow of every listed element and the collect job."""
        start = time.time()
        eos_maker, elastic_maker = self.eos_maker, self.elastic_maker
        if eos_maker is None or elastic_maker is None:  # __post_init__ sets both
            raise ValueError("VaspPropertyReferenceMaker: eos_maker and elastic_maker must be set")
        lattice = convergence.settings.lattice
        flows, eos, elastic, n_atoms = [], {}, {}, {}
        for element, names in convergence.names_by_element().items():
            tag = {**self.metadata, "campaign": campaign, "stage": "property_reference_vasp", "element": element}
            structure = ground_state(element, lattice)
            n_atoms[element] = len(structure)
            eos_flow = eos_maker.make(structure)
            eos_flow.name = f"eos {element}"
            parts = [eos_flow]
            eos[element] = eos_flow.output
            if any(n in _ELASTIC for n in names):
                scaled = at_eos_volume(structure, eos_flow.output)
                scaled.name = f"at eos volume {element}"
                scaled.update_config({"expose_store": True})  # a failure is recorded in the store
                elastic_flow = elastic_maker.make(scaled.output)
                elastic_flow.name = f"elastic {element}"
                parts += [scaled, elastic_flow]
                elastic[element] = elastic_flow.output
            sub = Flow(parts, name=f"property reference {element}")
            sub.update_metadata(tag, dynamic=True)
            sub.update_config({"manager_config": {"_category": self.vasp_category}}, dynamic=True)
            flows.append(sub)
        collect = collect_vasp_properties(eos, elastic, n_atoms, convergence, campaign, self.reference, start)
        collect.config = JobConfig(
            on_missing_references=OnMissing.NONE,
            manager_config={"_category": self.collect_category},
            expose_store=True,  # a failure is recorded in the store
        )
        collect.update_metadata({**self.metadata, "campaign": campaign, "stage": "property_reference_vasp"})
        progress.report("property reference", -1, reference=self.reference, vasp_flows=len(flows))
        return Response(replace=Flow([*flows, collect], output=collect.output))


@al_job(output_schema=PropertyReferenceDocument)
def collect_vasp_properties(
    eos: dict, elastic: dict, n_atoms: dict, convergence: PropertyConvergence, campaign: str, reference: str, start
) -> PropertyReferenceDocument:
    """The PropertyReferenceDocument of the listed properties from the elements' EOS and elastic
    outputs (a flow that left no output is named in a one-line error); ``start``: when the dispatch
    ran (epoch seconds), so ``wall_time`` spans the whole reference, queue waits included."""
    lattice = convergence.settings.lattice
    values: dict[str, dict[str, float]] = {}
    for element, names in convergence.names_by_element().items():
        outputs = (("EOS", eos.get(element)), ("elastic", elastic.get(element, "")))  # "": not needed
        missing = [what for what, out in outputs if out is None]
        if missing:
            raise ValueError(
                f"VASP property reference of {element}: the {' and '.join(missing)} flow left no output (see its "
                "VASP jobs' failures); fix them and run the campaign again"
            )
        got = reference_values(eos[element], n_atoms[element], lattice, elastic.get(element))
        values[element] = {n: got[n] for n in names}
    progress.report("property reference done", -1, reference=reference)
    return reference_document(convergence, campaign, reference, values, time.time() - float(start))
