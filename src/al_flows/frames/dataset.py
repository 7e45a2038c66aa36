"""The labelled dataset: an ordered collection of labelled frames with provenance, de-duplicated by
``info['frame_id']`` (:mod:`al_flows.frames.ids`).

A frame is an :class:`ase.Atoms` whose labels live in a SinglePointCalculator:
energy (eV), forces (eV/Angstrom) and optionally stress (eV/Angstrom^3); its provenance keys are
:data:`al_flows.frames.info.PROVENANCE_KEYS`. The dataset reads and writes the store's exact
extended XYZ (:mod:`al_flows.frames.extxyz`), files for users (:mod:`al_flows.frames.extxyz_export`)
and ASE databases (:mod:`al_flows.frames.ase_db`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from ase import Atoms

from al_flows.frames.ase_db import write_ase_atoms_data, write_ase_db
from al_flows.frames.extxyz import frames_from_bytes, frames_to_bytes
from al_flows.frames.extxyz_export import write_plain_extxyz
from al_flows.frames.ids import frame_id
from al_flows.frames.labels import copy_frame


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
        :class:`schnetpack.data.ASEAtomsData` (:func:`al_flows.frames.ase_db.write_ase_atoms_data`).
        """
        return write_ase_atoms_data(self._frames, path, overwrite)

    def to_ase_db(self, path: str | Path) -> None:
        """Write an ASE database: structures with their energy/forces/stress and the scalar
        provenance as key-value pairs (queryable with ``ase db``; :func:`al_flows.frames.ase_db.write_ase_db`)."""
        write_ase_db(self._frames, path)
