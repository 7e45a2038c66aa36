"""Extended XYZ files for users and other tools (``al-flows export ... dataset --format extxyz``).

They carry no ``al_info``: every provenance entry is a readable per-frame key that ``ase.io.read``
gives back exactly (:func:`export_info`); labels from the calculator (energy eV, forces eV/Angstrom,
stress eV/Angstrom^3), positions and cell in Angstrom. The store's exact format is
:mod:`al_flows.frames.extxyz`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import all_properties
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from al_flows.frames.info import EXTXYZ_RESERVED, is_jsonable, to_jsonable
from al_flows.frames.labels import frame_labels

#: Order of the leading keys of an exported frame (others follow in ``info`` order).
EXPORT_KEYS: tuple[str, ...] = (
    "frame_id",
    "origin",
    "round",
    "explorer",
    "parent_id",
    "ensemble_id",
    "deviation",
    "labeller",
    "label_settings",
    "task_uuid",
)
#: info keys renamed on export: ``model_id`` holds the id of the ensemble that selected the frame;
#: ``energy`` is what the explorer's calculator (in a campaign: the ensemble mean) gave the explored
#: frame (eV), not its label (the label is the file's ``energy``).
EXPORT_RENAMES = {"model_id": "ensemble_id", "energy": "explore_energy"}


def export_info(info: dict) -> dict:
    """``info`` as plain extxyz keys that ``ase.io.read`` returns unchanged.

    Adds ``origin`` ("initial": labelled before round 0, ``round`` -1; "explored": selected from an
    explorer's frames by the ensemble ``ensemble_id``); renames :data:`EXPORT_RENAMES` and keys that
    ASE reads as calculator results (``info_<key>``); leaves out None, "" and NaN (initial frames
    have no ``deviation`` and no ``ensemble_id``). A string that ASE would re-type (``"0123"``,
    ``"T"``) is written as ``_JSON "0123"``, which ASE reads back as that string; tuples come back
    as numpy arrays. Entries with no exact extxyz form are left out with a warning."""
    out: dict = {}
    origin = "initial" if int(info.get("round", -1)) < 0 else "explored"
    items = [("origin", origin)] + [(k, v) for k, v in info.items() if k != "origin"]
    for key, value in items:
        key = EXPORT_RENAMES.get(key, key)
        if key in all_properties or key in EXTXYZ_RESERVED:
            key = f"info_{key}"
        encoded = _export_value(key, value)
        if encoded is not _SKIP:
            out[key] = encoded
    first = {k: out.pop(k) for k in EXPORT_KEYS if k in out}
    return {**first, **out}


_SKIP = object()


def _export_value(key: str, value):
    """The value to put in an exported frame's info, or _SKIP."""
    if value is None or (isinstance(value, str) and value == ""):
        return _SKIP
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _SKIP if np.isnan(value) else float(value)
    if isinstance(value, (tuple, list)) and all(
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in value
    ):
        value = np.asarray(value)
    plain = value.tolist() if isinstance(value, np.ndarray) else value
    for candidate in (value, f"_JSON {json.dumps(to_jsonable(plain))}" if is_jsonable(plain) else None):
        if candidate is not None and _extxyz_keeps(key, candidate, value):
            return candidate
    warnings.warn(f"info['{key}'] not written to the exported extxyz: no exact extxyz form for {value!r}", stacklevel=3)
    return _SKIP


def _extxyz_keeps(key: str, written, value) -> bool:
    """Whether ASE's extxyz key=value writer and reader give ``value`` back for ``written``."""
    from ase.io.extxyz import key_val_dict_to_str, key_val_str_to_dict

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ASE warns when it skips a value: that is the answer "no"
            back = key_val_str_to_dict(key_val_dict_to_str({key: written})).get(key, _SKIP)
    except Exception:  # noqa: BLE001 - any parser failure means: not this form
        return False
    if isinstance(value, np.ndarray):
        return (
            isinstance(back, np.ndarray)
            and back.shape == value.shape
            and back.dtype.kind == value.dtype.kind
            and np.array_equal(back, value)
        )
    return type(back) is type(value) and back == value


def write_plain_extxyz(frames: Iterable[Atoms], path: str | Path) -> Path:
    """Write ``frames`` as extended XYZ for other tools: positions/cell (Angstrom), labels from
    the calculator (energy eV, forces eV/Angstrom, stress eV/Angstrom^3), provenance as plain
    per-frame keys (:func:`export_info`), no ``al_info``."""
    path = Path(path)
    out = []
    for atoms in frames:
        new = atoms.copy()
        new.info = export_info(atoms.info)
        results = {k: v for k, v in frame_labels(atoms).items() if k in all_properties}
        if results:
            new.calc = SinglePointCalculator(new, **results)
        out.append(new)
    write(str(path), out, format="extxyz")
    return path
