"""The labelled frames of a training run as tensors: labels, model inputs, splits and batches.

Energies are total energies in eV (float64), forces eV/Angstrom (float32 on the device). The model
inputs of every frame come from the process-wide neighbour-list cache of
:func:`al_flows.potential.inputs.frame_inputs`, so members and rounds training on the same frames
reuse them.
"""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms

from al_flows.potential.inputs import collate_inputs, frame_inputs
from al_flows.potential.model import to_atomic_numbers

__all__ = ["TrainingData", "frame_ids", "member_zs", "split_indices", "fit_atomrefs"]


def frame_ids(frames: list[Atoms]) -> list[str]:
    """``atoms.info["frame_id"]``, else the frame's index as a string."""
    return [str(a.info.get("frame_id", str(k))) for k, a in enumerate(frames)]


def member_zs(frames: list[Atoms], elements: list[str] | None = None) -> list[int]:
    """The atomic numbers a member trained on ``frames`` is built for: ``elements``, else those present."""
    return to_atomic_numbers(elements) if elements else sorted({int(z) for a in frames for z in a.numbers})


def split_indices(n: int, val_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices, sorted; at least one of each when val_fraction > 0 and n >= 2."""
    n_val = 0
    if val_fraction > 0 and n >= 2:
        n_val = min(max(1, int(round(val_fraction * n))), n - 1)
    perm = rng.permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def fit_atomrefs(numbers: list[np.ndarray], energies: np.ndarray, zs: list[int]) -> np.ndarray:
    """Per-element energies e_Z (eV) minimising sum_f (E_f - sum_Z n_fZ e_Z)^2 (minimum-norm
    solution when compositions are collinear)."""
    counts = np.array([[np.count_nonzero(nums == z) for z in zs] for nums in numbers], dtype=np.float64)
    coef, *_ = np.linalg.lstsq(counts, np.asarray(energies, dtype=np.float64), rcond=None)
    return coef


class TrainingData:
    """Labels (host copies and device tensors) and model inputs of a fixed list of labelled frames.

    ``zs``: the atomic numbers the member is built for (``elements``, default those present);
    ``energies_np`` (eV) and ``forces_np`` (eV/A) are the host labels the energy reference is fitted
    to, ``energies`` and ``forces`` the device tensors the loss compares with.
    """

    def __init__(
        self, frames: list[Atoms], cutoff: float, device: torch.device, elements: list[str] | None = None
    ) -> None:
        self.device = device
        self.ids = frame_ids(frames)
        self.numbers = [np.asarray(a.numbers) for a in frames]
        self.zs = member_zs(frames, elements)
        self.energies_np = np.array([a.get_potential_energy() for a in frames], dtype=np.float64)
        self.forces_np = [np.asarray(a.get_forces(), dtype=np.float64) for a in frames]
        self.inputs = [frame_inputs(a, cutoff, cache=True) for a in frames]
        self.energies = torch.tensor(self.energies_np, dtype=torch.float64, device=device)
        self.forces = [torch.tensor(f, dtype=torch.float32, device=device) for f in self.forces_np]

    def batch(self, sel: np.ndarray) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """(model inputs, energies [n], forces [atoms, 3]) of the frames ``sel``, on the device."""
        inputs = collate_inputs([self.inputs[k] for k in sel], self.device)
        return inputs, self.energies[sel], torch.cat([self.forces[k] for k in sel])

    def reference(self, train_idx: np.ndarray) -> tuple[np.ndarray, float]:
        """What the energy reference is set to from the frames ``train_idx``: per-element energies
        (eV, in the order of ``zs``) by least squares, and the RMS force component (eV/A)."""
        coef = fit_atomrefs([self.numbers[k] for k in train_idx], self.energies_np[train_idx], self.zs)
        f_rms = float(np.sqrt(np.mean(np.concatenate([self.forces_np[k].ravel() for k in train_idx]) ** 2)))
        return coef, f_rms
