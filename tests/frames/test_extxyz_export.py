"""`al-flows export ... dataset --format extxyz`: provenance as plain per-frame keys that
ase.io.read gives back exactly, no al_info blob; the store's internal format is unchanged."""

import math

import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read
from jobflow import JobStore
from maggma.stores import MemoryStore

from al_flows.campaign.export import export_dataset
from al_flows.campaign.record import CampaignRecord
from al_flows.frames.dataset import Dataset
from al_flows.frames.extxyz import frames_from_bytes, frames_text
from al_flows.frames.extxyz_export import export_info
from helpers import emt_labelled_multilayer

INITIAL = {
    "round": -1,
    "explorer": "initial",
    "parent_id": "multilayer-2x2x2-pristine",
    "model_id": "",
    "deviation": math.nan,
    "copy": 0,
    "labeller": "ase:emt",
    "label_settings": "ase:emt:732fd463bcfe",
}
EXPLORED = {
    "variant": "VNi(N1)",
    "size": (2, 2, 2),
    "lattice_constant": 3.58,
    "structure_id": "multilayer-2x2x2-VNi(N1)",
    "explorer": "shear",
    "parent_id": "multilayer-2x2x2-VNi(N1)",
    "run": 0,
    "step": 3,
    "gamma": 0.29627379099995005,
    "energy": 2.179985332562696,
    "deviation": 0.054063550195940474,
    "converged": True,
    "n_opt_steps": 0,
    "seed": 1536505878,
    "round": 1,
    "model_id": "eef192465ced1d32",
    "labeller": "vasp",
    "task_uuid": "",
    "label_settings": "vasp:1e5",
}


def _frames():
    """Two initial and two explored frames shaped like a campaign's labels, with values ASE's
    extxyz reader would re-type: numeric-looking ids and settings, "T", a 1-element tuple."""
    frames = []
    for k, info in enumerate(
        [
            INITIAL,
            {**INITIAL, "copy": 1, "frame_id": "0123456789012345"},
            EXPLORED,
            {**EXPLORED, "frame_id": "12e4567890123456", "label_settings": "T", "size": (4,), "deviation": None},
        ]
    ):
        atoms = emt_labelled_multilayer(k)
        e, f = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f)
        atoms.info = dict(info)
        frames.append(atoms)
    return Dataset(frames)


@pytest.fixture
def record():
    """A store with one merge document holding the dataset in the store's internal format."""
    store = JobStore(MemoryStore())
    store.connect()
    data = _frames()
    store.docs_store.update(
        [
            {
                "uuid": "m",
                "index": 1,
                "metadata": {"campaign": "c", "stage": "merge", "round": 1},
                "output": {"round": 1, "dataset_blob": frames_text(data.frames)},
            }
        ],
        key=["uuid", "index"],
    )
    yield CampaignRecord(store, "c")
    store.close()


def _expected(info: dict) -> dict:
    """What the exported frame must carry for a stored frame's info (the documented mapping)."""
    out = {"origin": "initial" if info["round"] < 0 else "explored"}
    for key, value in info.items():
        key = {"model_id": "ensemble_id", "energy": "explore_energy"}.get(key, key)
        if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
            continue
        out[key] = np.asarray(value) if isinstance(value, tuple) else value
    return out


def test_exported_keys_equal_the_stores_dataset(record, tmp_path):
    stored = record.final_dataset()
    path = export_dataset(record, tmp_path / "d.extxyz", "extxyz")
    text = path.read_text()
    assert "al_info" not in text and "b64:" not in text
    back = read(path, ":")
    assert [a.info["frame_id"] for a in back] == stored.ids
    assert "0123456789012345" in stored.ids and "12e4567890123456" in stored.ids  # would be re-typed as numbers
    for want_atoms, got in zip(stored, back, strict=True):
        want = _expected(want_atoms.info)
        assert set(got.info) == set(want), want_atoms.info["frame_id"]
        for key, value in want.items():
            if isinstance(value, np.ndarray):
                assert isinstance(got.info[key], np.ndarray) and np.array_equal(got.info[key], value), key
            else:
                assert type(got.info[key]) in (
                    {type(value)}
                    | ({np.int64} if type(value) is int else set())
                    | ({np.float64} if type(value) is float else set())
                ), key
                assert got.info[key] == value, key
        # labels: the energy is written in full precision; forces and positions as %16.8f (rounding <= 5e-9)
        assert got.get_potential_energy() == want_atoms.get_potential_energy()
        np.testing.assert_allclose(got.get_forces(), want_atoms.get_forces(), rtol=0, atol=5e-9)
        np.testing.assert_allclose(got.positions, want_atoms.positions, rtol=0, atol=5e-9)


def test_initial_frames_say_what_they_are(record, tmp_path):
    back = read(export_dataset(record, tmp_path / "d.extxyz", "extxyz"), ":")
    initial = [a for a in back if a.info["round"] == -1]
    assert len(initial) == 2
    for a in initial:
        assert a.info["origin"] == "initial" and a.info["explorer"] == "initial"
        assert "deviation" not in a.info and "ensemble_id" not in a.info and "al_info" not in a.info
    explored = [a for a in back if a.info["round"] == 1]
    assert [a.info["origin"] for a in explored] == ["explored", "explored"]
    assert (
        explored[0].info["ensemble_id"] == "eef192465ced1d32" and explored[0].info["deviation"] == 0.054063550195940474
    )
    assert "deviation" not in explored[1].info  # None at selection: left out, not nan
    assert not any(isinstance(v, float) and math.isnan(v) for a in back for v in a.info.values())


def test_store_round_trip_keeps_the_internal_format(record):
    stored = record.final_dataset()
    blob = stored.to_bytes()
    assert b"al_info" in blob
    again = frames_from_bytes(blob)
    assert [a.info for a in again][0]["model_id"] == "" and math.isnan(again[0].info["deviation"])
    assert again[2].info["size"] == (2, 2, 2) and again[3].info["frame_id"] == "12e4567890123456"


def test_export_info_renames_calculator_keys_and_warns_on_what_it_cannot_keep():
    with pytest.warns(UserWarning, match=r"info\['blob'\] not written"):
        info = export_info({"round": 0, "free_energy": 1.5, "blob": object(), "Lattice": "x"})
    assert info == {"round": 0, "origin": "explored", "info_free_energy": 1.5, "info_Lattice": "x"}
