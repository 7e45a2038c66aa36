"""Labelled frames as ASE databases: a plain ASE database (structures, labels and the scalar
provenance as key-value pairs, queryable with ``ase db``) and a schnetpack ``ASEAtomsData`` database
(energy eV, forces eV/Angstrom, distances Angstrom; the full info as JSON in each row's data)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from ase import Atoms

from al_flows.frames.info import INFO_KEY, from_jsonable, is_jsonable, plain_info, to_jsonable
from al_flows.frames.labels import frame_labels


def write_ase_atoms_data(frames: Iterable[Atoms], path: str | Path, overwrite: bool = False):
    """Write a schnetpack ASE database (must end in '.db') with properties
    ``energy`` (eV, shape (1,)) and ``forces`` (eV/Ang, shape (N, 3)), distance unit Ang.

    Scalar provenance goes into each row's key_value_pairs where ASE db accepts it;
    the full info dict is in ``row.data['al_info']`` (JSON). Returns the
    :class:`schnetpack.data.ASEAtomsData`.
    """
    from ase.db import connect
    from schnetpack.data import ASEAtomsData

    import al_flows  # noqa: F401  (applies the schnetpack/torch compatibility patch)

    path = Path(path)
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"path: {path} exists; remove it or pass overwrite=True")
        path.unlink()
    ASEAtomsData.create(str(path), distance_unit="Ang", property_unit_dict={"energy": "eV", "forces": "eV/Ang"})
    with connect(str(path), use_lock_file=False) as conn:
        for atoms in frames:
            res = frame_labels(atoms)
            kvp = db_key_value_pairs(atoms.info)
            data = {
                "energy": np.array([float(res["energy"])], dtype=np.float64),
                "forces": np.asarray(res["forces"], dtype=np.float64),
                INFO_KEY: json.dumps({k: to_jsonable(v) for k, v in atoms.info.items() if is_jsonable(v)}),
            }
            plain = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
            conn.write(plain, key_value_pairs=kvp, data=data)
    return ASEAtomsData(str(path))


def write_ase_db(frames: Iterable[Atoms], path: str | Path) -> None:
    """Write an ASE database: structures with their energy/forces/stress and the scalar
    provenance as key-value pairs (queryable with ``ase db``)."""
    from ase.db import connect

    with connect(str(path), append=False) as conn:
        for atoms in frames:
            conn.write(atoms, key_value_pairs=db_key_value_pairs(atoms.info))


def db_key_value_pairs(info: dict) -> dict:
    """The scalar provenance entries of ``info`` that an ASE database accepts as key-value pairs
    (reserved names such as ``energy`` and empty strings are left out)."""
    from ase.db.core import check

    kvp = {}
    for key, value in plain_info(info).items():
        if isinstance(value, str) and value == "":
            continue
        try:
            check({key: value})
        except (ValueError, TypeError):
            continue
        kvp[key] = value
    for key in ("parent_id", "model_id", "explorer", "labeller"):
        value = info.get(key)
        if isinstance(value, str) and value and key not in kvp:
            try:
                check({key: value})
                kvp[key] = value
            except (ValueError, TypeError):
                pass
    return kvp


def info_from_db_row(row) -> dict:
    """Full info dict of a row written by :func:`write_ase_atoms_data`
    (:meth:`al_flows.frames.dataset.Dataset.to_ase_atoms_data`)."""
    return json.loads(row.data[INFO_KEY], object_hook=from_jsonable)
