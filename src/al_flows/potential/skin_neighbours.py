"""Neighbour lists of many replicas at fixed cells, kept across optimiser steps with a skin, and the
model inputs built from them (the form of :func:`al_flows.potential.inputs.frame_inputs`).

Units: positions, cutoff and skin in Angstrom.

A replica's *candidates* are the pairs ``(i, j, S)`` within ``cutoff + skin`` at the positions they
were built at (:func:`al_flows.frames.neighbours.neighbour_list`, matscipy, every periodic image,
``S`` the cell shift of ``j``). While no atom of the replica has moved more than ``skin / 2`` since
then, every pair now closer than ``cutoff`` is a candidate: each of its atoms moved at most
``skin / 2``, so the pair was closer than ``cutoff + skin`` when the candidates were built (the
Verlet-list argument). The pairs within ``cutoff`` are then the candidates whose current distance
``|r_j - r_i + S cell|`` is below ``cutoff``: one vectorised distance filter over the candidates of
every requested replica per step (:meth:`SkinNeighbours.pairs`). A replica one of whose atoms moved
further is rebuilt first, at its current positions. The neighbours are those matscipy gives at
``cutoff`` (the same pairs, in another order).

Cells, pbc and atomic numbers must stay fixed (a relaxation at fixed cell), and positions must not
be wrapped back into the cell between steps (the shifts ``S`` refer to the unwrapped positions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import schnetpack.properties as P
import torch
from ase import Atoms

from al_flows.frames.neighbours import neighbour_list

__all__ = ["DEFAULT_SKIN", "SkinNeighbours"]

# Angstrom: a replica is rebuilt once an atom moved 0.25 A (more than one full BFGS step of 0.2 A);
# at 5 A cutoff the candidates are (5.5/5)^3 = 1.33 times the pairs. In benchmarks/explore.py's shear
# relaxations no atom moves that far: one build per replica and relaxation (a skin of 1 A builds as
# often and filters 44 % more candidates; 0.3 A rebuilds 1.6 times as often)
DEFAULT_SKIN = 0.5
_ROUND_OFF = 1e-9  # Angstrom of margin on the skin/2 displacement test (float64 distances: ~1e-15)


@dataclass
class _Candidates:
    """One replica's pairs within cutoff + skin: first and second atom, shift of the second
    [P, 3] (int), its offset ``S @ cell`` in float64 (distances) and float32 (model input),
    and the positions [N, 3] they were built at."""

    i: np.ndarray
    j: np.ndarray
    shifts: np.ndarray
    offsets: np.ndarray
    offsets32: np.ndarray
    built_at: np.ndarray


@dataclass
class _Joined:
    """The candidates of several replicas concatenated: atom indices into their concatenated
    positions (``i``, ``j``), float64 offsets, each replica's own indices, float32 offsets and
    shifts, and where each replica's candidates start (``bounds``, one more than the replicas)."""

    i: np.ndarray
    j: np.ndarray
    offsets: np.ndarray
    local_i: np.ndarray
    local_j: np.ndarray
    offsets32: np.ndarray
    shifts: np.ndarray
    bounds: np.ndarray


class SkinNeighbours:
    """Neighbour lists and model inputs of the replicas ``frames`` (their numbers, cells and pbc; the
    positions are given at every call) at ``cutoff``, candidates built at ``cutoff + skin`` and
    reused while no atom moved more than ``skin / 2`` (module doc). ``rebuilds`` counts the
    per-replica candidate builds, ``calls`` the calls of :meth:`pairs` (each one filter)."""

    def __init__(self, frames: Sequence[Atoms], cutoff: float, skin: float = DEFAULT_SKIN):
        if skin < 0:
            raise ValueError("skin must be >= 0")
        self.cutoff, self.skin = float(cutoff), float(skin)
        self._frames = [Atoms(numbers=a.numbers, positions=a.positions, cell=a.cell, pbc=a.pbc) for a in frames]
        self._candidates: list[_Candidates | None] = [None] * len(self._frames)
        self._static = [self._static_inputs(a) for a in self._frames]
        self._version = 0  # counts candidate builds: the key of the joined candidates
        self._joined_cache: tuple[tuple, _Joined] | None = None
        self.rebuilds = 0
        self.calls = 0

    @staticmethod
    def _static_inputs(atoms: Atoms) -> dict[str, torch.Tensor]:
        cell = np.asarray(atoms.cell.array, dtype=np.float64)
        return {
            P.Z: torch.from_numpy(np.asarray(atoms.numbers, dtype=np.int64)),
            P.cell: torch.from_numpy(cell.astype(np.float32)).reshape(1, 3, 3),
            P.pbc: torch.from_numpy(np.asarray(atoms.pbc, dtype=bool)).reshape(1, 3),
            P.n_atoms: torch.tensor([len(atoms)], dtype=torch.long),
        }

    def _build(self, row: int, positions: np.ndarray) -> None:
        atoms = self._frames[row]
        atoms.positions = positions
        i, j, shifts = neighbour_list("ijS", atoms, self.cutoff + self.skin)
        offsets = shifts.astype(np.float64) @ np.asarray(atoms.cell.array, dtype=np.float64)
        self._candidates[row] = _Candidates(
            i.astype(np.int64),
            j.astype(np.int64),
            shifts,
            offsets,
            offsets.astype(np.float32),
            np.array(positions, dtype=np.float64),
        )
        self.rebuilds += 1
        self._version += 1

    def _refresh(self, rows: list[int], positions: list[np.ndarray]) -> None:
        """Build the candidates of the rows never built, rebuild those with an atom moved beyond skin / 2
        (one vectorised displacement test over all rows)."""
        built = [(r, p) for r, p in zip(rows, positions) if self._candidates[r] is not None and len(p)]
        stale = set()
        if built:
            now = np.concatenate([p for _, p in built])
            then = np.concatenate([self._candidate(r).built_at for r, _ in built])
            moved = np.linalg.norm(now - then, axis=1)
            longest = np.maximum.reduceat(moved, np.cumsum([0] + [len(p) for _, p in built[:-1]]))
            limit = 0.5 * self.skin - _ROUND_OFF
            stale = {r for (r, _), d in zip(built, longest) if not d <= limit}  # NaN positions rebuild too
        for r, p in zip(rows, positions):
            if self._candidates[r] is None or r in stale:
                self._build(r, p)

    def _candidate(self, row: int) -> _Candidates:
        cand = self._candidates[row]
        assert cand is not None
        return cand

    def _joined(self, rows: list[int]) -> _Joined:
        """The candidates of ``rows`` concatenated (kept until the rows or a candidate list change)."""
        key = (tuple(rows), self._version)
        if self._joined_cache is None or self._joined_cache[0] != key:
            cands = [self._candidate(r) for r in rows]
            first = np.cumsum([0] + [len(self._frames[r]) for r in rows[:-1]])
            joined = _Joined(
                np.concatenate([c.i + s for c, s in zip(cands, first)]),
                np.concatenate([c.j + s for c, s in zip(cands, first)]),
                np.concatenate([c.offsets for c in cands]),
                np.concatenate([c.i for c in cands]),
                np.concatenate([c.j for c in cands]),
                np.concatenate([c.offsets32 for c in cands]),
                np.concatenate([c.shifts for c in cands]),
                np.cumsum([0] + [len(c.i) for c in cands]),
            )
            self._joined_cache = (key, joined)
        return self._joined_cache[1]

    def _select(self, rows: list[int], positions: list[np.ndarray]) -> tuple[_Joined, np.ndarray, np.ndarray]:
        """The joined candidates of ``rows``, the indices of those closer than the cutoff now (one
        filter over all rows) and where each row's part of them ends."""
        self._refresh(rows, positions)
        self.calls += 1
        joined = self._joined(rows)
        pos = np.concatenate(positions).astype(np.float64, copy=False)
        d = pos.take(joined.j, axis=0)  # take: several times faster than fancy indexing here
        d -= pos.take(joined.i, axis=0)
        d += joined.offsets
        inside = np.einsum("pk,pk->p", d, d) < self.cutoff * self.cutoff
        before = np.concatenate([[0], np.cumsum(inside)])
        return joined, np.flatnonzero(inside), before[joined.bounds[1:-1]]

    def pairs(self, rows: list[int], positions: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(i, j, S)`` of every pair within the cutoff of each replica in ``rows`` at ``positions``
        (one [n_k, 3] array per row, Angstrom): matscipy's ``"ijS"`` at ``cutoff``, in another order."""
        if not rows:
            return []
        joined, sel, ends = self._select(rows, positions)
        parts = [np.split(a.take(sel, axis=0), ends) for a in (joined.local_i, joined.local_j, joined.shifts)]
        return list(zip(*parts))

    def inputs(self, rows: list[int], positions: list[np.ndarray]) -> list[dict[str, torch.Tensor]]:
        """The model inputs of each replica in ``rows`` at ``positions`` (the dict of
        :func:`al_flows.potential.inputs.frame_inputs`: float32 positions and offsets, int64
        indices), ready for :meth:`al_flows.potential.ensemble.Ensemble.predict_inputs`."""
        if not rows:
            return []
        joined, sel, ends = self._select(rows, positions)
        idx_i, idx_j, offsets = (
            np.split(a.take(sel, axis=0), ends) for a in (joined.local_i, joined.local_j, joined.offsets32)
        )
        return [
            {
                **self._static[r],
                P.R: torch.from_numpy(np.asarray(p, dtype=np.float32)),
                P.idx_i: torch.from_numpy(i),
                P.idx_j: torch.from_numpy(j),
                P.offsets: torch.from_numpy(o),
            }
            for r, p, i, j, o in zip(rows, positions, idx_i, idx_j, offsets)
        ]
