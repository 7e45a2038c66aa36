"""Jobs before round 0 of the active-learning loop: the starting structures, the perturbed copies
labelled as initial data, and the fixed test set (perturbed copies or frames of the labeller)."""

from __future__ import annotations

from collections import Counter

from al_flows.active_learning.config import InitialCopies, TestSetConfig
from al_flows.active_learning.jobs.labelling import AseLabelMaker
from al_flows.active_learning.schemas import StructuresDocument, TestSetDocument
from al_flows.frames.extxyz import frames_from_bytes, frames_text
from al_flows.labelling.ase import calculator_factory
from al_flows.structures.initial_data import build_structures, perturbed_copies
from al_flows.validation.heldout import NONEQUILIBRIUM, labeller_test_frames, subset_of, tag
from al_flows.workflow import progress
from al_flows.workflow.jobs import al_job, field

__all__ = ["starting_structures", "perturbed_structures", "test_set_from_labels", "labeller_test_set"]


@al_job(output_schema=StructuresDocument)
def starting_structures(
    initial: InitialCopies,
    base_dir: str,
    campaign: str,
    elements: list | None = None,
    seed: int = 0,
) -> StructuresDocument:
    """The campaign's starting structures (explorers start from these), built from
    ``initial.structures`` (those passed to ``ActiveLearningMaker.make`` are a ``given`` source)."""
    structures = build_structures(getattr(initial, "structures", []), base_dir, elements, seed)
    progress.report("structures", -1, n=len(structures))
    return StructuresDocument(
        campaign=campaign,
        n_structures=len(structures),
        structure_ids=[a.info["structure_id"] for a in structures],
        structures_blob=frames_text(structures),
    )


@al_job(data=["selected_blob"])
def perturbed_structures(
    structures, n: int, sigma: float, strain_max: float, seed: int, explorer: str = "initial", originals: bool = False
) -> dict:
    """Rattled and strained copies of the starting structures, to be labelled (the initial
    data, or a ``perturbed`` test set); with ``originals`` the structures themselves too."""
    starts = frames_from_bytes(field(structures, "structures_blob"))
    copies = perturbed_copies(starts, n, sigma, strain_max, seed)
    if originals:
        for atoms in starts:
            atoms.info.update(
                round=-1, parent_id=atoms.info.get("structure_id", ""), model_id="", deviation=float("nan")
            )
        copies = starts + copies
    for atoms in copies:
        atoms.info["explorer"] = explorer
    return {"n_frames": len(copies), "selected_blob": frames_text(copies)}


@al_job(output_schema=TestSetDocument)
def test_set_from_labels(labels, campaign: str) -> TestSetDocument:
    """The labelled perturbed copies as the fixed test set."""
    frames = tag(frames_from_bytes(field(labels, "labelled_blob")), NONEQUILIBRIUM, "perturbed")
    progress.report("test set", -1, frames=len(frames))
    return _test_set_document(frames, campaign)


@al_job(output_schema=TestSetDocument)
def labeller_test_set(
    structures, settings: TestSetConfig, labeller: AseLabelMaker, campaign: str, seed: int
) -> TestSetDocument:
    """The fixed test set computed with the labeller itself (kinds mixed and labeller_shear;
    al_flows.validation.heldout): never trained on."""
    starts = frames_from_bytes(field(structures, "structures_blob"))
    make_calc = calculator_factory(labeller.calculator, labeller.calculator_kwargs)
    frames = labeller_test_frames(starts, make_calc, settings, seed, labeller.labeller_name, labeller.max_force)
    subsets = Counter(subset_of(a) for a in frames)
    progress.report("test set", -1, frames=len(frames), **subsets)
    return _test_set_document(frames, campaign)


def _test_set_document(frames: list, campaign: str) -> TestSetDocument:
    """The fixed test set's document: its frames (extxyz text) and their ids."""
    return TestSetDocument(
        campaign=campaign,
        n_frames=len(frames),
        frame_ids=[a.info["frame_id"] for a in frames],
        frames_blob=frames_text(frames),
    )
