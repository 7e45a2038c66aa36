"""A frame explored again after it was labelled is not labelled twice: the round's select job gets
the dataset's frame ids and skips the explored frames among them (``n_duplicate``)."""

from ase.calculators.singlepoint import SinglePointCalculator
from jobflow import Flow, JobStore, job, run_locally
from jobflow.core.reference import OutputReference
from maggma.stores import MemoryStore

from al_flows.active_learning import ActiveLearningMaker
from al_flows.active_learning.jobs.labelling import AseLabelMaker
from al_flows.active_learning.jobs.merge import merge_labels
from al_flows.active_learning.jobs.selection import SelectMaker
from al_flows.campaign.config import validate_campaign
from al_flows.frames.extxyz import frames_from_bytes, frames_text
from al_flows.frames.ids import frame_id
from al_flows.selection.trust_levels import SelectionSettings
from al_flows.workflow.jobs import DATA_STORE
from helpers import emt_labelled_multilayer


def _dataset_and_exploration(label_settings: str = ""):
    """The dataset document of two labelled frames, and an exploration document of two frames in
    the trust window: one of the dataset's frames explored again (same positions, no labels) and a
    new one. ``label_settings``: those of the dataset's labels."""
    labelled = [emt_labelled_multilayer(s) for s in (0, 1)]
    for a in labelled:
        a.info.update(round=-1, explorer="initial", parent_id="pristine", label_settings=label_settings)
    dataset = merge_labels.original(None, {"labelled_blob": frames_text(labelled)}, "c", -1)
    explored = []
    for atoms in (labelled[0], emt_labelled_multilayer(2)):
        a = atoms.copy()  # the explorer's frame: positions and cell, its own provenance
        a.calc = None
        a.info = {"frame_id": frame_id(a), "deviation": 0.5, "explorer": "shear", "parent_id": "pristine"}
        explored.append(a)
    assert explored[0].info["frame_id"] in dataset.frame_ids and explored[1].info["frame_id"] not in dataset.frame_ids
    exploration = {"frames_blob": frames_text(explored), "ensemble_id": "e"}
    return dataset, exploration, explored


def test_select_job_skips_an_explored_frame_already_in_the_dataset():
    dataset, exploration, explored = _dataset_and_exploration()
    maker = SelectMaker(settings=SelectionSettings(trust_lo=0.0, trust_hi=1.0, max_candidates=5, pick="random"))
    doc = SelectMaker.make.original(maker, [exploration], dataset.frame_ids, "c", 0, seed=0)
    assert (doc.n_explored, doc.n_candidate, doc.n_duplicate, doc.n_selected) == (2, 2, 1, 1)
    assert [a.info["frame_id"] for a in frames_from_bytes(doc.selected_blob)] == [explored[1].info["frame_id"]]
    assert [r["selected"] for r in doc.records] == [False, True]


@job
def _emit(doc):
    return doc


def test_the_rounds_select_job_is_given_the_dataset_ids_and_the_frame_is_labelled_once(tiny_dict):
    """The flow's wiring: select_job passes the dataset's frame_ids; the label job then labels one frame."""
    maker = ActiveLearningMaker.from_config(validate_campaign(tiny_dict))  # trust window [0, 100): all candidates
    assert isinstance(maker.label_maker, AseLabelMaker)
    dataset, exploration, explored = _dataset_and_exploration(maker.label_maker.label_settings)
    ds_job, ex_job = _emit(dataset.model_dump()), _emit(exploration)
    sel = maker.select_job([ex_job], OutputReference(ds_job.uuid), [], [], None, 0, {})
    lab = maker.label_maker.make(sel.output, "tiny", 0)
    merged = merge_labels(OutputReference(ds_job.uuid), lab.output, "tiny", 0)
    store = JobStore(MemoryStore(), additional_stores={DATA_STORE: MemoryStore()})
    out = run_locally(
        Flow([ds_job, ex_job, sel, lab, merged]), store=store, create_folders=False, log=False, ensure_success=True
    )
    s, labels, m = (out[j.uuid][1].output for j in (sel, lab, merged))
    assert (s.n_explored, s.n_duplicate, s.n_selected) == (2, 1, 1)
    assert (labels.n_requested, labels.n_labelled) == (1, 1)  # one label computed, not two
    assert [a.info["frame_id"] for a in frames_from_bytes(labels.labelled_blob)] == [explored[1].info["frame_id"]]
    assert (m.n_frames, m.n_added) == (3, 1)
    assert isinstance(frames_from_bytes(labels.labelled_blob)[0].calc, SinglePointCalculator)
