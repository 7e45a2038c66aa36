"""Frame ids: the content hash (``info['frame_id']``) that names a structure, from its atomic numbers,
positions (Angstrom, wrapped into the cell), cell and pbc."""

from __future__ import annotations

import hashlib

import numpy as np
from ase import Atoms
from ase.geometry import wrap_positions


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
