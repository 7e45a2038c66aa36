"""A frame's ``atoms.info``: the provenance keys, and its encodings for extended XYZ.

Provenance lives in ``atoms.info`` under :data:`PROVENANCE_KEYS`:

- ``frame_id`` (str): content hash, see :func:`al_flows.frames.ids.frame_id`
- ``round`` (int): active-learning round that produced it, -1 for initial data
- ``explorer`` (str): e.g. "initial", "shear"
- ``parent_id`` (str): id of the structure the exploration started from
- ``model_id`` (str): id of the ensemble that selected it, "" for initial data
- ``deviation`` (float, eV/Angstrom): model deviation at selection, NaN if none
- ``labeller`` (str): what computed the labels

Encodings: the complete info as base64-encoded JSON (:func:`encode_info` / :func:`decode_info`; NaN,
"", tuples and numpy arrays come back exactly), and the entries ASE's extxyz writer and reader keep
unchanged (:func:`plain_info`).
"""

from __future__ import annotations

import base64
import json
import re
import warnings

import numpy as np
from ase.calculators.calculator import all_properties

PROVENANCE_KEYS: tuple[str, ...] = ("frame_id", "round", "explorer", "parent_id", "model_id", "deviation", "labeller")

#: extxyz key of the encoded complete info (:func:`encode_info`)
INFO_KEY = "al_info"
#: prefix of an encoded info value
B64_PREFIX = "b64:"
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLAIN_STR = re.compile(r"^[A-Za-z0-9_.:+()/\-]+$")
#: info keys that extxyz's comment line reserves
EXTXYZ_RESERVED = {"Lattice", "Properties", "pbc", "comment", INFO_KEY}


def to_jsonable(value):
    """``value`` as JSON data (numpy scalars as Python ones, arrays and tuples tagged); TypeError
    for anything else."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": value.dtype.str}
    if isinstance(value, tuple):
        return {"__tuple__": [to_jsonable(v) for v in value]}
    if isinstance(value, list):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    raise TypeError(f"cannot serialise {type(value).__name__}")


def from_jsonable(obj: dict):
    """JSON object hook: the tagged arrays and tuples of :func:`to_jsonable` back."""
    if "__ndarray__" in obj and "dtype" in obj and len(obj) == 2:
        return np.array(obj["__ndarray__"], dtype=np.dtype(obj["dtype"]))
    if "__tuple__" in obj and len(obj) == 1:
        return tuple(obj["__tuple__"])
    return obj


def is_jsonable(value) -> bool:
    """Whether :func:`to_jsonable` takes ``value``."""
    try:
        to_jsonable(value)
    except TypeError:
        return False
    return True


def encode_info(info: dict) -> str:
    """``info`` as :data:`B64_PREFIX` + base64 of its JSON (entries that are not JSON data are left out
    with a warning)."""
    safe = {}
    for key, value in info.items():
        try:
            safe[str(key)] = to_jsonable(value)
        except TypeError as exc:
            warnings.warn(f"info['{key}'] not written to extxyz: {exc}", stacklevel=3)
    text = json.dumps(safe, separators=(",", ":"))
    return B64_PREFIX + base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_info(value: str) -> dict:
    """Inverse of :func:`encode_info`."""
    raw = value[len(B64_PREFIX) :]
    raw += "=" * (-len(raw) % 4)
    return json.loads(base64.urlsafe_b64decode(raw.encode()).decode(), object_hook=from_jsonable)


def plain_info(info: dict) -> dict:
    """The info entries ASE's extxyz writer/reader keep unchanged (scalars, plain strings)."""
    out: dict[str, bool | int | float | str] = {}
    for key, value in info.items():
        if not isinstance(key, str) or not _PLAIN_KEY.match(key) or key in EXTXYZ_RESERVED or key in all_properties:
            continue
        if isinstance(value, (bool, np.bool_)):
            out[key] = bool(value)
        elif isinstance(value, (int, np.integer)):
            out[key] = int(value)
        elif isinstance(value, (float, np.floating)):
            out[key] = float(value)
        elif isinstance(value, str) and _PLAIN_STR.match(value) and not _looks_typed(value):
            out[key] = value
    return out


def _looks_typed(s: str) -> bool:
    if s in {"T", "F", "true", "false", "True", "False", "TRUE", "FALSE"}:
        return True
    try:
        float(s)
    except ValueError:
        return False
    return True
