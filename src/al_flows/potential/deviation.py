"""Ensemble model deviation (DP-GEN, Zhang et al.; docs/methods.md).

For an ensemble of M models predicting forces f_i^m on atoms i of one frame,

    eps = max_i sqrt( < || f_i^m - <f_i> ||^2 >_m )

with <.> the ensemble average (population mean over the M members). Units are
those of the forces (eV/Angstrom).
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
