"""Exported models: `al-flows export ... model` files load with Ensemble.from_files, and the
example of docs/models.md, run verbatim, gives the numbers of the stored ensemble."""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from ase.io import read, write
from jobflow import JobStore
from maggma.stores import MemoryStore

from al_flows.campaign.export import ExportError, export_model
from al_flows.campaign.record import CampaignRecord
from al_flows.potential.ensemble import Ensemble
from al_flows.potential.model import ModelSettings, TrainingSettings
from al_flows.potential.training import train_member
from al_flows.potential.weights import weights_text
from helpers import emt_labelled_multilayer

DOC = (Path(__file__).resolve().parents[2] / "docs" / "models.md").read_text()
EXAMPLE = re.search(
    r"## Energy, forces and model deviation of a structure\n.*?```python\n(.*?)```", DOC, flags=re.S
).group(1)
MODEL = ModelSettings(n_atom_basis=8, n_interactions=1, n_rbf=8, cutoff=4.0)
TRAINING = TrainingSettings(epochs=2, batch_size=4, lr=2e-3, lr_patience=5, val_fraction=0.2)


@pytest.fixture(scope="module")
def record():
    """A store holding the train documents of a tiny 3-member ensemble in round 0 and a 2-member one in round 1."""
    frames = [emt_labelled_multilayer(seed) for seed in range(6)]
    store = JobStore(MemoryStore())
    store.connect()
    docs = []
    for k, n_members in ((0, 3), (1, 2)):
        for i in range(n_members):
            blob = train_member(frames, MODEL, TRAINING, seed=10 * k + i).blob
            docs.append(
                {
                    "uuid": f"t{k}{i}",
                    "index": 1,
                    "metadata": {"campaign": "c", "stage": "train", "round": k},
                    "output": {"round": k, "member": i, "model_id": f"m{k}{i}", "model_blob": weights_text(blob)},
                }
            )
    store.docs_store.update(docs, key=["uuid", "index"])
    yield CampaignRecord(store, "c")
    store.close()


def _structure(tmp_path) -> Path:
    """A sheared, rattled Cu-Ni multilayer (not a training frame), written for the example to read."""
    atoms = emt_labelled_multilayer(99)
    cell = atoms.cell.array.copy()
    cell[0, 1] += 0.4
    atoms.set_cell(cell, scale_atoms=True)
    atoms.calc = None
    write(tmp_path / "structure.extxyz", atoms)
    return tmp_path / "structure.extxyz"


def test_docs_example_gives_the_stored_ensembles_numbers(record, tmp_path, monkeypatch, capsys):
    paths = export_model(record, tmp_path / "models")
    assert [p.name for p in paths] == ["round1_member0.pt", "round1_member1.pt"]
    atoms = read(_structure(tmp_path))
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(EXAMPLE, ns)  # noqa: S102 - the documented example, verbatim
    _, blobs = record.ensemble_blobs()
    pred = Ensemble.from_bytes(blobs).predict([atoms])
    # Same weights (the stored blobs), the same float64 structure read from the same file and the
    # same code (the calculator calls Ensemble.predict on one frame); CPU kernels are deterministic,
    # so the numbers are identical, not merely close.
    assert ns["energy"] == pred.mean_energies[0]
    assert np.array_equal(ns["forces"], pred.mean_forces[0])
    assert ns["deviation"] == pred.deviation[0] > 0
    assert len(ns["ensemble"]) == 2
    assert f"model deviation = {pred.deviation[0]:.4f} eV/Å" in capsys.readouterr().out
    # the deviation follows the atoms: moved atoms give a new calculation, not the cached value
    atoms2 = ns["atoms"]
    atoms2.positions[0] += 0.3
    moved = Ensemble.from_bytes(blobs).predict([atoms2])
    assert atoms2.calc.get_property("model_deviation", atoms2) == moved.deviation[0] != pred.deviation[0]


def test_from_files_orders_members_and_takes_a_list(record, tmp_path):
    paths = export_model(record, tmp_path / "r0", round_=0)
    assert [p.name for p in paths] == [f"round0_member{i}.pt" for i in range(3)]
    _, blobs = record.ensemble_blobs(0)
    frames = [emt_labelled_multilayer(7)]
    want = Ensemble.from_bytes(blobs).predict(frames).energies
    # members in file order, whatever order they are given in; identical numbers (same weights, same code)
    assert np.array_equal(Ensemble.from_files(tmp_path / "r0").predict(frames).energies, want)
    assert np.array_equal(Ensemble.from_files([str(p) for p in reversed(paths)]).predict(frames).energies, want)
    assert np.array_equal(Ensemble.from_files(paths[1]).predict(frames).energies, want[1:2])


def test_from_files_refuses_mixed_rounds_empty_dirs_and_foreign_files(record, tmp_path):
    export_model(record, tmp_path / "both", round_=0)
    with pytest.raises(ExportError, match=r"already holds other model files \(round0_member0.pt, round0_member1.pt"):
        export_model(record, tmp_path / "both", round_=1)  # export refuses to mix rounds; from_files refuses too
    for p in export_model(record, tmp_path / "one", round_=1):
        shutil.copy(p, tmp_path / "both")
    with pytest.raises(ValueError, match=r"holds members of rounds \[0, 1\]; pass one round's files"):
        Ensemble.from_files(tmp_path / "both")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"holds no round<k>_member<i>.pt files"):
        Ensemble.from_files(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"no such model file .*round9_member0.pt"):
        Ensemble.from_files([tmp_path / "round9_member0.pt"])
    bad = tmp_path / "notes.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"notes.pt: "):
        Ensemble.from_files([bad])
