"""Labelled frames with provenance: ids, extxyz round trips, de-duplication, schnetpack export."""

import math

import numpy as np
import pytest
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from al_flows.frames.dataset import Dataset
from al_flows.frames.extxyz import frames_from_bytes, frames_to_bytes
from al_flows.frames.ids import frame_id
from al_flows.frames.info import PROVENANCE_KEYS
from al_flows.structures.multilayer import cuni_multilayer


def _labelled(atoms, rnd=-1, explorer="initial", model_id="", deviation=float("nan"), **extra):
    atoms = atoms.copy()
    calc = EMT()
    atoms.calc = calc
    e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f, stress=s)
    atoms.info.update(
        round=rnd,
        explorer=explorer,
        parent_id="multilayer-2x2x2-pristine",
        model_id=model_id,
        deviation=deviation,
        labeller="emt",
        **extra,
    )
    atoms.info["frame_id"] = frame_id(atoms)
    return atoms


@pytest.fixture(scope="module")
def frames():
    base = cuni_multilayer((2, 2, 2))
    rng = np.random.default_rng(0)
    out = []
    for k in range(3):
        a = base.copy()
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        out.append(_labelled(a))
    b = base.copy()
    b.positions += rng.normal(0, 0.05, b.positions.shape)
    out.append(
        _labelled(
            b,
            rnd=2,
            explorer="shear",
            model_id="ens-abc",
            deviation=0.123,
            gamma=0.25,
            step=3,
            run=1,
            converged=True,
            num_str="123",
            flag="T",
        )
    )
    out[-1].info["energy"] = float(out[-1].get_potential_energy())  # as shear frames carry it
    return out


def _assert_same(a, b):
    assert a.get_chemical_symbols() == b.get_chemical_symbols()
    np.testing.assert_allclose(a.positions, b.positions, atol=1e-8, rtol=0)
    np.testing.assert_allclose(a.cell[:], b.cell[:], atol=1e-8, rtol=0)
    assert (a.pbc == b.pbc).all()
    assert abs(a.get_potential_energy() - b.get_potential_energy()) < 1e-8
    np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=1e-8, rtol=0)
    np.testing.assert_allclose(a.get_stress(), b.get_stress(), atol=1e-8, rtol=0)
    np.testing.assert_array_equal(a.arrays["plane"], b.arrays["plane"])
    assert set(a.info) == set(b.info)
    for key, value in a.info.items():
        other = b.info[key]
        if isinstance(value, float) and math.isnan(value):
            assert isinstance(other, float) and math.isnan(other), key
        else:
            assert other == value and type(other) is type(value), (key, value, other)


def test_frame_id_properties(frames):
    a = frames[0]
    fid = frame_id(a)
    assert len(fid) == 16 and int(fid, 16) >= 0
    assert frame_id(a.copy()) == fid
    shifted = a.copy()
    shifted.positions += a.cell[0] - 2 * a.cell[2]
    assert frame_id(shifted) == fid
    pristine = cuni_multilayer((2, 2, 2))
    lattice_shift = pristine.copy()
    lattice_shift.positions += pristine.cell[1]  # atoms on the cell faces
    assert frame_id(lattice_shift) == frame_id(pristine)
    rattled = a.copy()
    rattled.rattle(0.01, seed=1)
    assert frame_id(rattled) != fid
    assert frame_id(frames[1]) != fid


def test_frame_id_depends_on_species():
    """Swapping the species of a Cu and a Ni atom (positions, cell, pbc unchanged) is another frame."""
    a = cuni_multilayer((2, 2, 2))
    i, j = int(np.flatnonzero(a.numbers == 29)[0]), int(np.flatnonzero(a.numbers == 28)[0])
    swapped = a.copy()
    swapped.numbers[[i, j]] = a.numbers[[j, i]]
    assert sorted(swapped.numbers) == sorted(a.numbers) and (swapped.numbers != a.numbers).sum() == 2
    np.testing.assert_array_equal(swapped.positions, a.positions)
    assert frame_id(swapped) != frame_id(a)
    back = swapped.copy()
    back.numbers[[i, j]] = swapped.numbers[[j, i]]
    assert frame_id(back) == frame_id(a)


@pytest.mark.parametrize("strain", [np.diag([0.01, 0.0, 0.0]), np.array([[0, 0.02, 0], [0, 0, 0], [0, 0, 0]])])
def test_frame_id_depends_on_cell(strain):
    """A larger or sheared cell around the same Cartesian positions is another frame. The positions
    sit 0.3 A inside the cell, so wrapping leaves them unchanged in both cells: only the cell differs."""
    from ase.geometry import wrap_positions

    a = cuni_multilayer((2, 2, 2))
    a.positions += 0.3
    other = a.copy()
    other.set_cell(a.cell[:] @ (np.eye(3) + strain), scale_atoms=False)
    for atoms in (a, other):
        # wrapping round-trips through fractional coordinates: float64 round-off (~1e-15 A), far
        # below the 1e-4 A to which frame_id rounds positions
        np.testing.assert_allclose(
            wrap_positions(atoms.positions, atoms.cell, pbc=atoms.pbc, eps=1e-7), a.positions, rtol=0, atol=1e-9
        )
    assert not np.allclose(other.cell[:], a.cell[:])
    assert frame_id(other) != frame_id(a)


def test_bytes_round_trip_keeps_everything(frames):
    blob = frames_to_bytes(frames)
    assert isinstance(blob, bytes)
    assert blob.decode("utf-8").startswith("32\n")
    back = frames_from_bytes(blob)
    assert len(back) == len(frames)
    for a, b in zip(frames, back):
        _assert_same(a, b)
        assert isinstance(b.calc, SinglePointCalculator)
    for key in PROVENANCE_KEYS:
        assert key in back[0].info
    assert math.isnan(back[0].info["deviation"])
    assert back[0].info["model_id"] == ""
    assert back[0].info["round"] == -1
    assert back[3].info["deviation"] == 0.123
    assert back[3].info["num_str"] == "123" and back[3].info["flag"] == "T"
    assert back[3].info["converged"] is True
    assert back[3].info["energy"] == frames[3].get_potential_energy()
    assert frames_from_bytes(b"") == []


def test_dataset_file_round_trip(frames, tmp_path):
    ds = Dataset(frames)
    path = tmp_path / "data.extxyz"
    ds.write_extxyz(path)
    back = Dataset.read_extxyz(path)
    assert back.ids == ds.ids
    for a, b in zip(ds, back):
        _assert_same(a, b)
    back2 = Dataset.from_bytes(ds.to_bytes())
    assert back2.ids == ds.ids
    assert ds.counts_by("round") == {-1: 3, 2: 1}
    assert back.counts_by("explorer") == {"initial": 3, "shear": 1}


def test_dedup_and_container_protocol(frames):
    ds = Dataset()
    added = ds.add(frames[:2] + [frames[0]])  # repeat inside the batch
    assert len(added) == 2 and len(ds) == 2
    translated = frames[1].copy()
    translated.calc = SinglePointCalculator(
        translated, energy=frames[1].get_potential_energy(), forces=frames[1].get_forces()
    )
    translated.info.pop("frame_id")
    translated.positions += frames[1].cell[2]
    assert ds.add([translated]) == []  # same structure, shifted by a lattice vector
    rattled = frames[1].copy()
    rattled.rattle(0.02, seed=3)
    rattled.calc = SinglePointCalculator(rattled, energy=0.0, forces=np.zeros((len(rattled), 3)))
    rattled.info.pop("frame_id")
    new = ds.add(rattled)
    assert len(new) == 1 and len(ds) == 3
    assert new[0].info["frame_id"] == frame_id(rattled)
    assert new[0].info["frame_id"] in ds
    assert "nope" not in ds
    assert ds[new[0].info["frame_id"]] is ds[2]
    assert [a.info["frame_id"] for a in ds] == ds.ids
    assert len(ds.frames) == 3 and len(ds[0:2]) == 2
    # stored frames are copies: mutating the caller's atoms does not change the dataset
    frames[0].info["labeller"] = "changed"
    try:
        assert ds[0].info["labeller"] == "emt"
    finally:
        frames[0].info["labeller"] = "emt"


def test_missing_labels_rejected(frames):
    ds = Dataset()
    unlabelled = frames[0].copy()  # Atoms.copy drops the calculator
    with pytest.raises(ValueError, match=r"frame 1 \(frame_id .*missing label"):
        ds.add([frames[1], unlabelled])
    assert len(ds) == 0  # nothing added from a rejected batch
    energy_only = frames[0].copy()
    energy_only.calc = SinglePointCalculator(energy_only, energy=1.0)
    with pytest.raises(ValueError, match="forces"):
        ds.add([energy_only])


def test_to_ase_atoms_data(frames, tmp_path):
    from ase.db import connect
    from schnetpack.data import ASEAtomsData

    import al_flows  # noqa: F401
    from al_flows.frames.ase_db import info_from_db_row

    ds = Dataset(frames)
    path = tmp_path / "train.db"
    data = ds.to_ase_atoms_data(path)
    assert len(data) == len(ds)
    reread = ASEAtomsData(str(path))
    assert reread.units["energy"] == "eV" and reread.units["forces"] == "eV/Ang"
    assert set(reread.available_properties) == {"energy", "forces"}
    for i, atoms in enumerate(ds):
        item = reread[i]
        assert float(item["energy"][0]) == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
        np.testing.assert_allclose(item["forces"].numpy(), atoms.get_forces(), atol=1e-10)
        np.testing.assert_allclose(item["_positions"].numpy(), atoms.positions, atol=1e-10)
    with connect(str(path)) as conn:
        row = conn.get(4)
        assert row.key_value_pairs["explorer"] == "shear"
        assert row.key_value_pairs["round"] == 2
        assert row.key_value_pairs["model_id"] == "ens-abc"
        info = info_from_db_row(conn.get(1))
        assert info["model_id"] == "" and math.isnan(info["deviation"])
        assert info["frame_id"] == ds.ids[0]
    with pytest.raises(FileExistsError, match="path"):
        ds.to_ase_atoms_data(path)
    assert len(ds.to_ase_atoms_data(path, overwrite=True)) == len(ds)
