"""Labelled frames with provenance, serialised as extended XYZ.

A frame is an :class:`ase.Atoms` whose labels live in a SinglePointCalculator:
energy (eV), forces (eV/Angstrom) and optionally stress (eV/Angstrom^3).
Provenance lives in ``atoms.info`` under :data:`PROVENANCE_KEYS`:

- ``frame_id`` (str): content hash, see :func:`frame_id`
- ``round`` (int): active-learning round that produced it, -1 for initial data
- ``explorer`` (str): e.g. "initial", "shear"
- ``parent_id`` (str): id of the structure the exploration started from
- ``model_id`` (str): id of the ensemble that selected it, "" for initial data
- ``deviation`` (float, eV/Angstrom): model deviation at selection, NaN if none
- ``labeller`` (str): what computed the labels

ASE's extxyz writer drops ``None`` and empty strings and re-types strings that look
like numbers, so :func:`frames_to_bytes` (the store's internal format) also stores the
complete ``info`` dict as base64-encoded JSON under the key ``al_info``;
:func:`frames_from_bytes` restores it exactly (NaN, "", tuples, numpy arrays included).

Files for users (``al-flows export ... dataset --format extxyz``, :func:`write_plain_extxyz`)
carry no ``al_info``: every provenance entry is a readable per-frame key that ``ase.io.read``
gives back exactly (:func:`export_info`).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import cast

import numpy as np
from ase import Atoms
from ase.calculators.calculator import all_properties
from ase.calculators.singlepoint import SinglePointCalculator
from ase.geometry import wrap_positions
from ase.io import read, write

PROVENANCE_KEYS: tuple[str, ...] = ("frame_id", "round", "explorer", "parent_id", "model_id", "deviation", "labeller")

_INFO_KEY = "al_info"
_B64_PREFIX = "b64:"
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLAIN_STR = re.compile(r"^[A-Za-z0-9_.:+()/\-]+$")
_EXTXYZ_RESERVED = {"Lattice", "Properties", "pbc", "comment", _INFO_KEY}


# --------------------------------------------------------------------------- ids


def frame_id(atoms: Atoms, decimals: int = 4) -> str:
    """Content hash (sha1 hex, first 16 chars) of a structure.

    Hashes atomic numbers, positions wrapped into the cell along periodic directions
    and rounded to ``decimals`` (Angstrom), the rounded cell, and pbc. Identical
    structures, and copies translated by a lattice vector, get the same id.
    """
    scale = 10.0**decimals
    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = np.asarray(atoms.cell[:], dtype=float)
    pos = np.asarray(atoms.positions, dtype=float)
    if pbc.any() and len(atoms) and abs(np.linalg.det(cell)) > 1e-12:
        pos = wrap_positions(pos, cell, pbc=pbc, eps=1e-7)
    h = hashlib.sha1()
    h.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    h.update(np.rint(pos * scale).astype(np.int64).tobytes())
    h.update(np.rint(cell * scale).astype(np.int64).tobytes())
    h.update(pbc.astype(np.uint8).tobytes())
    return h.hexdigest()[:16]


def recorded_energy(atoms: Atoms) -> float:
    """``info['energy']`` (eV) if recorded, else the attached calculator's energy."""
    return float(atoms.info["energy"]) if "energy" in atoms.info else float(atoms.get_potential_energy())


# --------------------------------------------------------------------------- info <-> JSON


def _to_jsonable(value):
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
        return {"__tuple__": [_to_jsonable(v) for v in value]}
    if isinstance(value, list):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _from_jsonable(obj: dict):
    if "__ndarray__" in obj and "dtype" in obj and len(obj) == 2:
        return np.array(obj["__ndarray__"], dtype=np.dtype(obj["dtype"]))
    if "__tuple__" in obj and len(obj) == 1:
        return tuple(obj["__tuple__"])
    return obj


def _encode_info(info: dict) -> str:
    safe = {}
    for key, value in info.items():
        try:
            safe[str(key)] = _to_jsonable(value)
        except TypeError as exc:
            warnings.warn(f"info['{key}'] not written to extxyz: {exc}", stacklevel=3)
    text = json.dumps(safe, separators=(",", ":"))
    return _B64_PREFIX + base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode_info(value: str) -> dict:
    raw = value[len(_B64_PREFIX) :]
    raw += "=" * (-len(raw) % 4)
    return json.loads(base64.urlsafe_b64decode(raw.encode()).decode(), object_hook=_from_jsonable)


def _plain_info(info: dict) -> dict:
    """The info entries ASE's extxyz writer/reader keep unchanged (scalars, plain strings)."""
    out: dict[str, bool | int | float | str] = {}
    for key, value in info.items():
        if not isinstance(key, str) or not _PLAIN_KEY.match(key) or key in _EXTXYZ_RESERVED or key in all_properties:
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


# --------------------------------------------------------------------------- plain extxyz export

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
        if key in all_properties or key in _EXTXYZ_RESERVED:
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
    for candidate in (value, f"_JSON {json.dumps(_to_jsonable(plain))}" if _jsonable(plain) else None):
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
        results = {k: v for k, v in _labels(atoms).items() if k in all_properties}
        if results:
            new.calc = SinglePointCalculator(new, **results)
        out.append(new)
    write(str(path), out, format="extxyz")
    return path


# --------------------------------------------------------------------------- frames <-> bytes


def _labels(atoms: Atoms) -> dict:
    calc = atoms.calc
    return dict(getattr(calc, "results", {}) or {}) if calc is not None else {}


def copy_frame(atoms: Atoms) -> Atoms:
    """Copy of a frame including info, arrays and a SinglePointCalculator with its labels."""
    new = atoms.copy()
    new.info = dict(atoms.info)
    results = {
        k: (np.array(v) if isinstance(v, np.ndarray) else v) for k, v in _labels(atoms).items() if k in all_properties
    }
    if results:
        new.calc = SinglePointCalculator(new, **results)
    return new


def frames_to_bytes(frames: Iterable[Atoms]) -> bytes:
    """Extended XYZ text (UTF-8) of ``frames``: positions/cell (Angstrom), arrays,
    calculator results (energy eV, forces eV/Angstrom, stress eV/Angstrom^3), full info."""
    buf = io.StringIO()
    for atoms in frames:
        out = atoms.copy()
        out.info = _plain_info(atoms.info)
        out.info[_INFO_KEY] = _encode_info(atoms.info)
        results = {k: v for k, v in _labels(atoms).items() if k in all_properties}
        if results:
            out.calc = SinglePointCalculator(out, **results)
        write(buf, out, format="extxyz")
    return buf.getvalue().encode("utf-8")


def frames_text(frames) -> str:
    """Frames as extxyz text (provenance and labels included) for a ``*_blob`` field of a job
    output: blobs are text so that every store keeps them intact (maggma's GridFSStore
    JSON-encodes what it stores)."""
    return frames_to_bytes(frames).decode("utf-8")


def frames_from_bytes(blob: bytes | str) -> list[Atoms]:
    """Inverse of :func:`frames_to_bytes`; labels come back in a SinglePointCalculator."""
    text = blob.decode("utf-8") if isinstance(blob, (bytes, bytearray)) else str(blob)
    if not text.strip():
        return []
    frames = cast(list[Atoms], read(io.StringIO(text), index=":", format="extxyz"))  # a slice index: a list
    for atoms in frames:
        encoded = atoms.info.get(_INFO_KEY)
        if isinstance(encoded, str) and encoded.startswith(_B64_PREFIX):
            atoms.info = _decode_info(encoded)
        else:
            atoms.info.pop(_INFO_KEY, None)
    return frames


# --------------------------------------------------------------------------- dataset


class Dataset:
    """Ordered collection of labelled frames, de-duplicated by ``info['frame_id']``."""

    def __init__(self, frames: Iterable[Atoms] = ()):
        self._frames: list[Atoms] = []
        self._index: dict[str, int] = {}
        self.add(frames)

    def add(self, frames: Iterable[Atoms] | Atoms) -> list[Atoms]:
        """Add labelled frames (copies); assign ``frame_id`` where missing; skip ids already
        present (also repeats within ``frames``). Raises StructureError (a ValueError), naming the
        frame, if one lacks energy or forces, has forces of the wrong shape, or non-finite
        positions or labels (:func:`al_flows.frames.checks.check_labels`; no neighbour list,
        so adding stays cheap). Returns the frames actually added."""
        from al_flows.frames.checks import check_finite, check_labels

        if isinstance(frames, Atoms):
            frames = [frames]
        frames = list(frames)
        prepared = []
        for i, atoms in enumerate(frames):
            fid = atoms.info.get("frame_id")
            check_finite(atoms, f"frame {i}" + (f" (frame_id {fid})" if fid else ""))  # before hashing the positions
            fid = fid or frame_id(atoms)
            check_labels(atoms, f"frame {i} (frame_id {fid})")
            prepared.append((fid, atoms))
        added = []
        for fid, atoms in prepared:
            if fid in self._index:
                continue
            new = copy_frame(atoms)
            new.info["frame_id"] = fid
            self._index[fid] = len(self._frames)
            self._frames.append(new)
            added.append(new)
        return added

    def __len__(self) -> int:
        return len(self._frames)

    def __iter__(self) -> Iterator[Atoms]:
        return iter(self._frames)

    def __getitem__(self, key):
        """Frame by position (int), list of frames (slice) or frame by frame_id (str)."""
        if isinstance(key, str):
            return self._frames[self._index[key]]
        return self._frames[key]

    def __contains__(self, fid) -> bool:
        return fid in self._index

    def __repr__(self) -> str:
        return f"Dataset({len(self)} frames)"

    @property
    def ids(self) -> list[str]:
        """The ``frame_id`` of every frame, in dataset order."""
        return [a.info["frame_id"] for a in self._frames]

    @property
    def frames(self) -> list[Atoms]:
        """The frames in dataset order (a new list; the Atoms are the dataset's own)."""
        return list(self._frames)

    def counts_by(self, key: str) -> dict:
        """Number of frames per value of ``info[key]`` (None where absent), in first-seen order."""
        return dict(Counter(a.info.get(key) for a in self._frames))

    # serialisation
    def to_bytes(self) -> bytes:
        """The frames as :func:`frames_to_bytes` writes them (extended XYZ, UTF-8)."""
        return frames_to_bytes(self._frames)

    @classmethod
    def from_bytes(cls, blob: bytes) -> Dataset:
        """Dataset of the frames in ``blob`` (the format of :meth:`to_bytes`)."""
        return cls(frames_from_bytes(blob))

    def write_extxyz(self, path: str | Path) -> None:
        """Write :meth:`to_bytes` to ``path`` (read back exactly with :meth:`read_extxyz`)."""
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def read_extxyz(cls, path: str | Path) -> Dataset:
        """Dataset of a file written by :meth:`write_extxyz`."""
        return cls.from_bytes(Path(path).read_bytes())

    def export_extxyz(self, path: str | Path) -> Path:
        """Extended XYZ for other tools, provenance as plain per-frame keys (:func:`write_plain_extxyz`);
        :meth:`write_extxyz` writes the exact internal format instead."""
        return write_plain_extxyz(self._frames, path)

    def to_ase_atoms_data(self, path: str | Path, overwrite: bool = False):
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
            for atoms in self._frames:
                res = _labels(atoms)
                kvp = db_key_value_pairs(atoms.info)
                data = {
                    "energy": np.array([float(res["energy"])], dtype=np.float64),
                    "forces": np.asarray(res["forces"], dtype=np.float64),
                    _INFO_KEY: json.dumps({k: _to_jsonable(v) for k, v in atoms.info.items() if _jsonable(v)}),
                }
                plain = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
                conn.write(plain, key_value_pairs=kvp, data=data)
        return ASEAtomsData(str(path))

    def to_ase_db(self, path: str | Path) -> None:
        """Write an ASE database: structures with their energy/forces/stress and the scalar
        provenance as key-value pairs (queryable with ``ase db``)."""
        from ase.db import connect

        with connect(str(path), append=False) as conn:
            for atoms in self._frames:
                conn.write(atoms, key_value_pairs=db_key_value_pairs(atoms.info))


def db_key_value_pairs(info: dict) -> dict:
    """The scalar provenance entries of ``info`` that an ASE database accepts as key-value pairs
    (reserved names such as ``energy`` and empty strings are left out)."""
    from ase.db.core import check

    kvp = {}
    for key, value in _plain_info(info).items():
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


def _jsonable(value) -> bool:
    try:
        _to_jsonable(value)
    except TypeError:
        return False
    return True


def info_from_db_row(row) -> dict:
    """Full info dict of a row written by :meth:`Dataset.to_ase_atoms_data`."""
    return json.loads(row.data[_INFO_KEY], object_hook=_from_jsonable)
