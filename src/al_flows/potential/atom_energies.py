"""Per-atom energies of a member, and the size-intensive energy spread of an ensemble built on them.

A member's ``Atomwise`` output module computes one network output ``y_i`` per atom and sums them;
:class:`~al_flows.potential.schnet.EnergyReference` then makes the total energy
``E = scale * sum_i y_i + sum_i e_{Z_i}``. So ``e_i = scale * y_i + e_{Z_i}`` (eV) are per-atom
energies that sum to the member's total energy. :func:`enable_atom_energies` makes the
``Atomwise`` module also return ``y_i`` (schnetpack's ``per_atom_output_key``; it computes them
anyway, so this costs no extra work) and :func:`atom_energies` turns them into ``e_i``. No parameter
or buffer is added: weights files and ``state_dict`` are unchanged.

:func:`intensive_energy_spread` is the stop measure ``energy_spread_intensive`` of the ANI-Al sampler
(docs/methods.md): each member's per-atom energies minus that member's mean over the frame's atoms,
the sample variance over members per atom, the root mean over atoms. A per-atom offset between
members (member m predicting ``e_i + c_m``) cancels exactly, so the measure does not grow with
the number of atoms, while a disagreement on some atoms' energies still counts.
"""

from __future__ import annotations

import numpy as np
import schnetpack as spk
import torch

from al_flows.potential.model import energy_reference

__all__ = ["ATOM_ENERGY_KEY", "atomwise_module", "enable_atom_energies", "atom_energies", "intensive_energy_spread"]

ATOM_ENERGY_KEY = "atom_energy_outputs"  # the Atomwise module's per-atom outputs y_i (before scale and reference)


def atomwise_module(module: spk.model.NeuralNetworkPotential) -> spk.atomistic.Atomwise:
    """The member's schnetpack ``Atomwise`` energy module."""
    for m in module.output_modules:
        if isinstance(m, spk.atomistic.Atomwise):
            return m
    raise TypeError("module has no schnetpack Atomwise output module; was it made by build_member?")


def enable_atom_energies(module: spk.model.NeuralNetworkPotential) -> spk.model.NeuralNetworkPotential:
    """Make a member (from :func:`al_flows.potential.model.build_member` or
    :func:`al_flows.potential.weights.member_from_bytes`) also return its per-atom outputs ``y_i``
    under :data:`ATOM_ENERGY_KEY` ([n_atoms, 1]); in place, idempotent; returns ``module``.
    Energies and forces are unchanged."""
    atomwise = atomwise_module(module)
    if atomwise.per_atom_output_key != ATOM_ENERGY_KEY:
        atomwise.per_atom_output_key = ATOM_ENERGY_KEY
        atomwise.model_outputs = [atomwise.output_key, ATOM_ENERGY_KEY]
        module.collect_outputs()
    return module


def atom_energies(
    module: spk.model.NeuralNetworkPotential, outputs: dict[str, torch.Tensor], numbers: torch.Tensor
) -> np.ndarray:
    """Per-atom energies ``e_i = scale * y_i + e_{Z_i}`` (eV, float64, [n_atoms]) of a member's
    ``outputs`` (the member enabled by :func:`enable_atom_energies`) on a batch of atomic ``numbers``;
    per frame they sum to the member's total energy."""
    reference = energy_reference(module)
    y = outputs[ATOM_ENERGY_KEY].detach().reshape(-1).to(torch.float64)
    e = y * reference.scale + reference.atomref[numbers.to(reference.atomref.device)]
    return e.cpu().numpy()


def intensive_energy_spread(atom_energies_of_frame: np.ndarray) -> float:
    """The size-intensive energy spread of one frame (eV) from its members' per-atom energies
    ``[M, n_atoms]`` (eV): ``sqrt(mean_i var_m(e_{m,i} - mean_j e_{m,j}))``, the variance over
    members with ddof 1 as the method's sigma_E (module doc); NaN for fewer than two members."""
    e = np.asarray(atom_energies_of_frame, dtype=float)
    if e.ndim != 2 or e.shape[1] == 0:
        raise ValueError(f"per-atom energies of shape {e.shape}: need [members, atoms] with at least one atom")
    if e.shape[0] < 2:
        return float("nan")
    centred = e - e.mean(axis=1, keepdims=True)
    return float(np.sqrt(centred.var(axis=0, ddof=1).mean()))
