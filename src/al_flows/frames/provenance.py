"""Small per-frame provenance records kept inside job documents, so MongoDB (and the
embedded store) can query labels, explored frames and model errors without loading blobs.

Ids: a label, an explored frame and a starting structure are identified by their
``frame_id`` (content hash); a model by ``model_id`` (hash of its weights file); an
ensemble by ``ensemble_id`` (hash of its members' ids); a round by (campaign, round).
Energies eV, forces and deviations eV/Angstrom.
"""

from __future__ import annotations

import math

import numpy as np
from ase import Atoms


def as_float(value) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def label_record(atoms: Atoms) -> dict:
    """Provenance and label summary of one labelled frame (``labelled_on_extension``: True for a
    frame selected in a round that stopped the campaign and labelled by a later run that extended
    it; the key is absent otherwise)."""
    info = atoms.info
    forces = atoms.get_forces()
    extension = {"labelled_on_extension": True} if info.get("labelled_on_extension") else {}
    return {
        "frame_id": info["frame_id"],
        "round": int(info.get("round", -1)),
        "explorer": info.get("explorer", ""),
        "parent_id": info.get("parent_id", ""),
        "model_id": info.get("model_id", ""),
        "deviation": as_float(info.get("deviation")),
        "selection": info.get("selection", "initial" if int(info.get("round", -1)) < 0 else "deviation"),
        "labeller": info.get("labeller", ""),
        "label_settings": info.get("label_settings", ""),
        "task_uuid": info.get("task_uuid", ""),
        "formula": atoms.get_chemical_formula(),
        "n_atoms": len(atoms),
        "energy": float(atoms.get_potential_energy()),
        "max_force": float(np.linalg.norm(forces, axis=1).max()) if len(atoms) else 0.0,
        **extension,
    }


def explored_record(atoms: Atoms) -> dict:
    """Where an explored frame came from and what the ensemble said about it."""
    info = atoms.info
    return {
        "frame_id": info["frame_id"],
        "explorer": info.get("explorer", ""),
        "parent_id": info.get("parent_id", ""),
        "run": info.get("run"),
        "step": info.get("step"),
        "gamma": as_float(info.get("gamma")),
        "energy": as_float(info.get("energy")),
        "deviation": as_float(info.get("deviation")),
        "n_atoms": len(atoms),
    }


def frame_errors(
    frames: list[Atoms], energies: np.ndarray, forces: list[np.ndarray], split: dict[str, str]
) -> list[dict]:
    """Per-frame errors of a model on labelled frames: energy error per atom (predicted minus
    label) and force RMSE over components; ``split`` maps frame ids to 'train'/'val'."""
    rows = []
    for atoms, e, f in zip(frames, energies, forces, strict=True):
        fid = atoms.info["frame_id"]
        rows.append(
            {
                "frame_id": fid,
                "split": split.get(fid, ""),
                "energy_error_per_atom": float((e - atoms.get_potential_energy()) / len(atoms)),
                "force_rmse": float(np.sqrt(np.mean((np.asarray(f) - atoms.get_forces()) ** 2))),
            }
        )
    return rows
