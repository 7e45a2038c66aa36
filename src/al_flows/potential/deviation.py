"""Ensemble model deviation (DP-GEN, Zhang et al.; docs/methods.md).

For an ensemble of M models predicting forces f_i^m on atoms i of one frame,

    eps = max_i sqrt( < || f_i^m - <f_i> ||^2 >_m )

with <.> the ensemble average (population mean over the M members). Units are
those of the forces (eV/Angstrom).

The ensemble's diversity over a set of frames (:func:`pairwise_force_disagreement`) is the mean over
frames and over pairs of members (m, n) of the RMS difference of their forces,
sqrt( (1/3N) sum_i || f_i^m - f_i^n ||^2 ), eV/Angstrom: members that agree everywhere give 0.
"""

from __future__ import annotations

import numpy as np


def atomic_force_deviation(forces: np.ndarray) -> np.ndarray:
    """Per-atom deviation sqrt(<||f_i - <f_i>||^2>) for forces of shape (M, N, 3) -> (N,)."""
    forces = np.asarray(forces, dtype=float)
    if forces.ndim != 3 or forces.shape[-1] != 3:
        raise ValueError(f"forces must have shape (members, atoms, 3), got {forces.shape}")
    mean = forces.mean(axis=0, keepdims=True)
    return np.sqrt(((forces - mean) ** 2).sum(axis=-1).mean(axis=0))


def max_force_deviation(forces: np.ndarray) -> float:
    """Frame model deviation eps = max over atoms of the per-atom deviation (eV/Angstrom)."""
    return float(atomic_force_deviation(forces).max())


def pairwise_force_disagreement(forces: list[np.ndarray]) -> float | None:
    """Mean over frames of the mean over member pairs m < n of the RMS difference of their forces
    (eV/Angstrom); ``forces``: one (M, N, 3) array per frame. None without frames or with one member."""
    per_frame = []
    for f in forces:
        f = np.asarray(f, dtype=float)
        if f.ndim != 3 or f.shape[-1] != 3:
            raise ValueError(f"forces must have shape (members, atoms, 3), got {f.shape}")
        m, n = np.triu_indices(f.shape[0], k=1)
        if not len(m):
            return None
        per_frame.append(np.sqrt(((f[m] - f[n]) ** 2).mean(axis=(1, 2))).mean())
    return float(np.mean(per_frame)) if per_frame else None
