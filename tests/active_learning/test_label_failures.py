"""Fault injection in labelling: a labeller that raises, returns NaN or absurd forces for some
frames. Those frames become failed labels with their reasons; the others are labelled, the
round goes on, and no failed frame reaches the dataset."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from ase.calculators.emt import EMT

from al_flows.campaign.config import validate_campaign
from al_flows.campaign.run import CampaignError, run_campaign
from al_flows.campaign.stores import make_job_store
from al_flows.frames.dataset import Dataset
from al_flows.frames.extxyz import frames_from_bytes

FAULTS = ("raise", "nan", "huge", "ok")


def fault_of(atoms) -> str:
    """The fault injected for an explored frame (initial and test-set frames are labelled normally)."""
    if atoms.info.get("round", -1) < 0 or "frame_id" not in atoms.info:
        return "ok"
    return FAULTS[int(hashlib.sha1(atoms.info["frame_id"].encode()).hexdigest(), 16) % len(FAULTS)]


class FaultyEMT(EMT):
    """EMT, except on explored frames: raise, NaN energy, or forces x 1e4, chosen by frame id."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        fault = fault_of(atoms)
        if fault == "raise":
            raise RuntimeError("SCF did not converge (injected)")
        super().calculate(atoms, properties, system_changes)
        if fault == "nan":
            self.results["energy"] = float("nan")
        elif fault == "huge":
            self.results["forces"] = self.results["forces"] * 1e4


def _campaign(tiny_dict, min_success_fraction):
    tiny_dict["labeller"] = {
        "kind": "ase",
        "calculator": "tests.active_learning.test_label_failures.FaultyEMT",
        "max_force": 50.0,
        "min_success_fraction": min_success_fraction,
    }
    tiny_dict["selection"]["max_candidates"] = 12
    tiny_dict["explorers"][0]["n_runs"] = 2
    return validate_campaign(tiny_dict)


def test_failed_labels_are_recorded_and_kept_out_of_the_dataset(tmp_path, tiny_dict):
    config = _campaign(tiny_dict, 0.0)
    report = run_campaign(config, ".", tmp_path, echo=lambda *_: None)
    assert report["finished"]
    store = make_job_store(config.store, tmp_path)
    store.connect()
    try:
        lab = store.query_one({"metadata.campaign": "tiny", "metadata.stage": "label", "metadata.round": 0}, load=True)[
            "output"
        ]
        sel = store.query_one(
            {"metadata.campaign": "tiny", "metadata.stage": "select", "metadata.round": 0}, load=True
        )["output"]
        chosen = frames_from_bytes(sel["selected_blob"])
        expected = {a.info["frame_id"]: fault_of(a) for a in chosen}
        assert set(expected.values()) >= {"raise", "nan", "huge", "ok"}  # every fault was injected
        reasons = {f["frame_id"]: f["reason"] for f in lab["failures"]}
        assert set(reasons) == {fid for fid, f in expected.items() if f != "ok"}
        for fid, reason in reasons.items():
            assert {"raise": "RuntimeError: SCF did not converge (injected)", "nan": "non-finite energy or forces"}.get(
                expected[fid], "above labeller.max_force=50.0"
            ) in reason
        assert lab["n_labelled"] == sum(f == "ok" for f in expected.values()) and lab["n_failed"] == len(reasons)
        merged = store.query_one(
            {"metadata.campaign": "tiny", "metadata.stage": "merge", "metadata.round": 0}, load=True
        )["output"]
        data = Dataset.from_bytes(merged["dataset_blob"])
        assert not set(reasons) & set(data.ids)
        assert all(np.isfinite(a.get_potential_energy()) and np.abs(a.get_forces()).max() < 50 for a in data)
        assert report["rounds"][0]["n_labelled"] == lab["n_labelled"]
    finally:
        store.close()


def test_too_many_failed_labels_stop_the_round_with_the_reasons(tmp_path, tiny_dict):
    config = _campaign(tiny_dict, 0.9)
    with pytest.raises(
        CampaignError,
        match=r"only \d+/\d+ labels succeeded, below labeller.min_success_fraction=0.9 \(reasons: .*SCF did not "
        r"converge",
    ):
        run_campaign(config, ".", tmp_path, echo=lambda *_: None)
