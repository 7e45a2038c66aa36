"""A member's inputs: schnetpack-style dicts (keys of :mod:`schnetpack.properties`) of frames and batches.

The periodic neighbour list comes from matscipy (``"ijS"``, all images, so small or sheared triclinic
cells with a cutoff larger than half the cell are correct) and is computed once per frame by
:func:`frame_inputs` (``cache=True``: kept in a process-wide LRU keyed by a hash of the frame's numbers,
positions, cell, pbc and the cutoff, :class:`NeighbourCache`, so training rounds and members reuse it
and a moved atom invalidates it); :func:`collate_inputs` joins frames into one batch.

Units: positions, offsets and cutoff in Angstrom.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Sequence

import numpy as np
import schnetpack.properties as P
import torch
from ase import Atoms

from al_flows.frames.neighbours import neighbour_list

__all__ = ["frame_inputs", "frame_key", "NeighbourCache", "neighbour_cache", "collate_inputs"]


def frame_key(atoms: Atoms, cutoff: float) -> bytes:
    """Content hash (16-byte BLAKE2b) of what :func:`frame_inputs` depends on: atomic numbers,
    positions, cell and pbc (exact float64 bytes) and the cutoff. Moving any atom by any amount,
    or changing the cell, gives another key."""
    h = hashlib.blake2b(digest_size=16)
    numbers = np.ascontiguousarray(atoms.numbers, dtype=np.int64)
    h.update(np.int64(len(numbers)).tobytes())
    h.update(numbers.tobytes())
    h.update(np.ascontiguousarray(atoms.positions, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(atoms.cell.array, dtype=np.float64).tobytes())
    h.update(np.asarray(atoms.pbc, dtype=bool).tobytes())
    h.update(np.float64(cutoff).tobytes())
    return h.digest()


class NeighbourCache:
    """Least-recently-used cache of :func:`frame_inputs` results, keyed by :func:`frame_key`.

    A changed frame (any position, the cell, pbc, numbers) or another cutoff has another key, so
    stale entries are never returned; they age out. Memory: about 28 bytes per neighbour pair
    (two int64 indices, three float32 offsets) plus 20 bytes per atom, e.g. ~40 kB for a 32-atom
    cell at 5 Angstrom (1400 pairs) and ~1.1 MB for a 500-atom cell at 6 Angstrom (39k pairs);
    entries are dropped, oldest use first, beyond ``max_bytes``. The cached tensors are shared
    with every caller: never modify them in place (:func:`collate_inputs` copies them). Per
    process only (a FireWorks worker starts empty). Thread-safe.
    """

    def __init__(self, max_bytes: int = 256 * 2**20):
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[bytes, tuple[dict[str, torch.Tensor], int]] = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> dict[str, torch.Tensor] | None:
        """The cached inputs of ``key`` (a copy of the dict), or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return dict(entry[0])

    def put(self, key: bytes, inputs: dict[str, torch.Tensor]) -> None:
        """Cache ``inputs`` under ``key``, evicting the oldest entries beyond the byte limit."""
        size = sum(t.numel() * t.element_size() for t in inputs.values())
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.nbytes -= old[1]
            if size > self.max_bytes:
                return
            self._entries[key] = (dict(inputs), size)
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self.nbytes -= dropped

    def clear(self) -> None:
        """Drop every entry and reset the hit/miss counters."""
        with self._lock:
            self._entries.clear()
            self.nbytes = self.hits = self.misses = 0

    def info(self) -> dict:
        """entries, bytes, max_bytes, hits, misses."""
        with self._lock:
            return {
                "entries": len(self._entries),
                "bytes": self.nbytes,
                "max_bytes": self.max_bytes,
                "hits": self.hits,
                "misses": self.misses,
            }


_NEIGHBOUR_CACHE = NeighbourCache()


def neighbour_cache() -> NeighbourCache:
    """The process-wide cache used by ``frame_inputs(..., cache=True)`` (set its ``max_bytes``,
    ``clear()`` it, read ``info()``)."""
    return _NEIGHBOUR_CACHE


def frame_inputs(atoms: Atoms, cutoff: float, cache: bool = False) -> dict[str, torch.Tensor]:
    """schnetpack inputs of one frame (float32 positions/offsets, int64 indices), neighbour
    list from matscipy with every periodic image within ``cutoff`` (Angstrom).

    ``cache=True``: look the frame up in (and add it to) :func:`neighbour_cache` by its content
    hash (:func:`frame_key`); the returned dict is new but its tensors are shared with the cache
    and must not be modified in place."""
    if cache:
        key = frame_key(atoms, cutoff)
        hit = _NEIGHBOUR_CACHE.get(key)
        if hit is not None:
            return hit
        inputs = _frame_inputs(atoms, cutoff)
        _NEIGHBOUR_CACHE.put(key, inputs)
        return dict(inputs)
    return _frame_inputs(atoms, cutoff)


def _frame_inputs(atoms: Atoms, cutoff: float) -> dict[str, torch.Tensor]:
    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    idx_i, idx_j, shifts = neighbour_list("ijS", atoms, float(cutoff))
    offsets = shifts.astype(np.float64) @ cell
    n = len(atoms)
    return {
        P.Z: torch.from_numpy(np.asarray(atoms.numbers, dtype=np.int64)),
        P.R: torch.from_numpy(np.asarray(atoms.positions, dtype=np.float32)),
        P.cell: torch.from_numpy(cell.astype(np.float32)).reshape(1, 3, 3),
        P.pbc: torch.from_numpy(pbc).reshape(1, 3),
        P.idx_i: torch.from_numpy(idx_i.astype(np.int64)),
        P.idx_j: torch.from_numpy(idx_j.astype(np.int64)),
        P.offsets: torch.from_numpy(offsets.astype(np.float32)),
        P.n_atoms: torch.tensor([n], dtype=torch.long),
    }


def collate_inputs(
    frames: Sequence[dict[str, torch.Tensor]], device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Join per-frame inputs into one batch: concatenate, shift ``idx_i/idx_j`` by each frame's
    first atom, add ``_idx_m`` (frame of each atom)."""
    n_atoms = torch.cat([f[P.n_atoms] for f in frames])
    n_pairs = torch.tensor([f[P.idx_i].shape[0] for f in frames], dtype=torch.long)
    start = torch.cumsum(n_atoms, 0) - n_atoms
    shift = torch.repeat_interleave(start, n_pairs)
    batch = {
        P.Z: torch.cat([f[P.Z] for f in frames]),
        P.R: torch.cat([f[P.R] for f in frames]),
        P.cell: torch.cat([f[P.cell] for f in frames]),
        P.pbc: torch.cat([f[P.pbc] for f in frames]),
        P.idx_i: torch.cat([f[P.idx_i] for f in frames]) + shift,
        P.idx_j: torch.cat([f[P.idx_j] for f in frames]) + shift,
        P.offsets: torch.cat([f[P.offsets] for f in frames]),
        P.n_atoms: n_atoms,
        P.idx_m: torch.repeat_interleave(torch.arange(len(frames)), n_atoms),
    }
    if str(device) != "cpu":
        batch = {k: v.to(device) for k, v in batch.items()}
    return batch
