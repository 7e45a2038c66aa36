"""One fingerprint: a campaign file and the same campaign built from Makers in Python name their jobs
alike (``al_flows.workflow.config.fingerprint_of``), and the when-to-stop settings stay outside it, so a
Python-API campaign is extended by raising ``max_rounds`` as a campaign file is."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from ase.build import bulk
from jobflow import JobStore, run_locally
from maggma.stores import MemoryStore

from al_flows.active_learning import (
    ActiveLearningMaker,
    AseLabelMaker,
    MDExploreMaker,
    SelectMaker,
    StopPolicy,
    TestSetConfig,
    TrainMemberMaker,
)
from al_flows.active_learning.config import CampaignConfig, InitialCopies
from al_flows.campaign.config import load_campaign, validate_campaign
from al_flows.campaign.record import CampaignRecord
from al_flows.exploration import NVTSettings
from al_flows.frames.extxyz import frames_text
from al_flows.potential import ModelSettings, TrainingSettings
from al_flows.selection import LabelBudget, SelectionSettings
from al_flows.structures.initial_data import given_structures

ROOT = Path(__file__).resolve().parents[2]
CU = bulk("Cu", "fcc", a=3.6, cubic=True)

MODEL = {"n_atom_basis": 16, "n_interactions": 1, "n_rbf": 10, "cutoff": 4.0}
TRAINING = {"epochs": 3, "batch_size": 4, "lr": 2e-3, "lr_patience": 5, "val_fraction": 0.2}
MD = {"n_runs": 1, "temperatures_K": [600.0], "n_steps": 40, "record_every": 10}
SELECTION = {"trust_lo": 0.0, "trust_hi": 100.0, "max_candidates": 2}
INITIAL = {"n_rattled": 4, "rattle_sigma": 0.04, "strain_max": 0.01}


def campaign_file(max_rounds: int = 1) -> dict:
    """The campaign as a campaign file would hold it, starting from the structure given as extxyz text."""
    return {
        "name": "both_ways",
        "seed": 5,
        "elements": ["Cu"],
        # the structures as make(structures) records them: checked, with their ids
        "initial": {"structures": [{"kind": "given", "frames": frames_text(given_structures(CU, ["Cu"]))}], **INITIAL},
        "model": MODEL,
        "training": TRAINING,
        "ensemble_size": 2,
        "explorers": [{"kind": "md", "name": "md", **MD}],
        "selection": SELECTION,
        "labeller": {"kind": "ase", "calculator": "emt"},
        "test_set": {"kind": "perturbed", "n_per_structure": 2},
        "max_rounds": max_rounds,
        "convergence": {"accurate_ratio": 0.99},
    }


def python_maker(max_rounds: int = 1, **policy) -> ActiveLearningMaker:
    """The same campaign built from Makers and settings objects, as docs/python_api.md shows."""
    return ActiveLearningMaker(
        campaign="both_ways",
        seed=5,
        ensemble_size=2,
        initial=InitialCopies(**INITIAL),
        train_maker=TrainMemberMaker(model=ModelSettings(**MODEL), training=TrainingSettings(**TRAINING)),
        explore_makers=[MDExploreMaker(name="md", settings=NVTSettings(**MD))],
        select_maker=SelectMaker(settings=SelectionSettings(**SELECTION)),
        label_maker="emt",
        test_set=TestSetConfig(kind="perturbed", n_per_structure=2),
        stop_policy=StopPolicy(max_rounds=max_rounds, accurate_ratio=0.99, **policy),
    )


def test_a_campaign_file_and_its_python_makers_have_one_fingerprint():
    config = validate_campaign(campaign_file())
    maker = python_maker().with_structures(CU)
    assert len(config.fingerprint()) == 16
    assert maker.fingerprint == config.fingerprint()
    assert ActiveLearningMaker.from_config(config).fingerprint == config.fingerprint()
    # an ASE label Maker built by hand names the campaign as the calculator's name does
    by_hand = ActiveLearningMaker(**{**python_maker().__dict__, "label_maker": AseLabelMaker(calculator="emt")})
    assert by_hand.with_structures(CU).fingerprint == config.fingerprint()
    # the same keys stay out of both: when to stop, and how fast to run
    other_stop = python_maker(max_rounds=7, budget=LabelBudget(labels_total=9)).with_structures(CU)
    assert other_stop.fingerprint == maker.fingerprint
    faster = copy.deepcopy(campaign_file(max_rounds=7))
    faster["training"] = {**TRAINING, "device": "cpu", "max_retries": 3}
    assert validate_campaign(faster).fingerprint() == config.fingerprint()
    # and a setting that changes the results changes both alike
    wider = campaign_file()
    wider["selection"] = {**SELECTION, "max_candidates": 3}
    wider_maker = ActiveLearningMaker(
        **{**python_maker().__dict__, "select_maker": SelectMaker(settings=SelectionSettings(**wider["selection"]))}
    )
    assert wider_maker.with_structures(CU).fingerprint == validate_campaign(wider).fingerprint()
    assert validate_campaign(wider).fingerprint() != config.fingerprint()


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "flows").glob("*.yaml")))
def test_every_shipped_campaign_file_builds_makers_with_its_fingerprint(name):
    config, base_dir = load_campaign(ROOT / "flows" / name)
    if not isinstance(config, CampaignConfig):
        pytest.skip("a pool study builds no ActiveLearningMaker")
    maker = ActiveLearningMaker.from_config(config, base_dir)
    assert maker.fingerprint == config.fingerprint()
    assert maker.stop_policy.max_rounds == config.max_rounds


def test_a_python_api_campaign_is_extended_by_raising_max_rounds():
    store = JobStore(MemoryStore(), additional_stores={"data": MemoryStore()})
    first = python_maker(max_rounds=1).make(CU)
    run_locally(first, store=store, create_folders=False, log=False)
    record = CampaignRecord(store, "both_ways")
    assert record.result()["stop_reason"] == "round limit" and sorted(record.summaries()) == [0]
    more = python_maker(max_rounds=2).with_structures(CU)
    assert more.fingerprint == first.jobs[0].metadata["fingerprint"]  # the same campaign
    last = record.summaries()[0]
    # the continued flow reads the stored round's outputs: external references, as al-flows runs it
    flow = more.continue_from(last, store)
    run_locally(flow, store=store, create_folders=False, log=False, allow_external_references=True)
    summaries = CampaignRecord(store, "both_ways").summaries()
    assert sorted(summaries) == [0, 1]
    # round 0 stopped the first run and labelled nothing; its selection is labelled before round 1 trains
    assert last["n_labelled"] == 0 and summaries[0]["n_labelled"] == 2
    assert summaries[1]["n_labels_total"] == last["n_labels_total"] + 2
    assert CampaignRecord(store, "both_ways").result()["n_rounds"] == 2
