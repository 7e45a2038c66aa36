"""Stress of a SchNet member, only when asked (:func:`enable_stress`).

schnetpack's ``Strain`` input module (first, before ``PairwiseDistances``) deforms positions, offsets
and cell by ``r -> (1 + eps) r`` with a zero ``eps`` that requires grad, and ``Forces(calc_stress=True)``
returns ``(dE/d eps) / V`` with V the SIGNED volume ``a1 . (a2 x a3)`` (eV/Angstrom^3, 3x3, per frame).
That is ASE's convention (``stress = (1/V) dE/d eps``, positive = tensile, pressure = -trace/3) for
right-handed cells; :func:`stress_to_voigt` fixes the sign for left-handed cells and gives ASE's Voigt
order xx, yy, zz, yz, xz, xy. Neither module has parameters or buffers: the state dict is unchanged.
"""

from __future__ import annotations

import numpy as np
import schnetpack as spk
import schnetpack.properties as P
import torch

__all__ = ["forces_module", "enable_stress", "stress_enabled", "stress_to_voigt"]


def forces_module(module: spk.model.NeuralNetworkPotential) -> spk.atomistic.Forces:
    """The member's schnetpack ``Forces`` output module."""
    for m in module.output_modules:
        if isinstance(m, spk.atomistic.Forces):
            return m
    raise TypeError("module has no schnetpack Forces output module; was it made by build_member?")


def stress_enabled(module: spk.model.NeuralNetworkPotential) -> bool:
    """Whether the member also predicts stress (see :func:`enable_stress`)."""
    return bool(forces_module(module).calc_stress)


def enable_stress(module: spk.model.NeuralNetworkPotential, enabled: bool = True) -> spk.model.NeuralNetworkPotential:
    """Make a member (from :func:`al_flows.potential.model.build_member` or
    :func:`al_flows.potential.weights.member_from_bytes`) also predict stress under
    ``schnetpack.properties.stress`` ([n_frames, 3, 3], eV/Angstrom^3, (1/V_signed) dE/d eps),
    or stop it (``enabled=False``). In place; returns ``module``.

    Puts ``spk.atomistic.Strain`` first in ``input_modules`` (before ``PairwiseDistances``),
    switches the ``Forces`` module to ``calc_stress`` (outputs and required derivatives as its
    constructor sets them) and re-collects the model's required derivatives and outputs. No
    parameters or buffers are added, so ``state_dict`` (and saved blobs) are unchanged; energies and
    forces are the same (the strain is zero). Computing stress costs one more autograd input, so
    members are built without it and :meth:`al_flows.potential.ensemble.Ensemble.predict` enables it only
    for ``stress=True``."""
    forces = forces_module(module)
    enabled = bool(enabled)
    strain_at = [k for k, m in enumerate(module.input_modules) if isinstance(m, spk.atomistic.Strain)]
    if enabled and not strain_at:
        module.input_modules.insert(0, spk.atomistic.Strain())
    if not enabled:
        for k in reversed(strain_at):
            del module.input_modules[k]
    forces.calc_stress = enabled
    # as Forces.__init__: forces first, stress last (Forces.forward reads grads[0] / grads[-1])
    forces.model_outputs = ([forces.force_key] if forces.calc_forces else []) + ([forces.stress_key] if enabled else [])
    forces.required_derivatives = ([P.R] if forces.calc_forces else []) + ([P.strain] if enabled else [])
    module.collect_derivatives()
    module.collect_outputs()
    return module


def stress_to_voigt(stress: torch.Tensor | np.ndarray, cells: torch.Tensor | np.ndarray) -> np.ndarray:
    """schnetpack stress [n, 3, 3] (``dE/d eps`` over the signed volume) of frames with ``cells``
    [n, 3, 3] -> ASE Voigt stress [n, 6] (xx, yy, zz, yz, xz, xy; eV/Angstrom^3, tensile positive):
    symmetrised, and sign-corrected for left-handed cells (ASE divides by |V|); NaN for a zero volume."""
    s = torch.as_tensor(stress).detach().cpu().numpy().astype(np.float64).reshape(-1, 3, 3)
    c = torch.as_tensor(cells).detach().cpu().numpy().astype(np.float64).reshape(-1, 3, 3)
    sign = np.sign(np.linalg.det(c))
    s = 0.5 * (s + s.transpose(0, 2, 1)) * np.where(sign == 0, np.nan, sign)[:, None, None]
    return np.stack([s[:, 0, 0], s[:, 1, 1], s[:, 2, 2], s[:, 1, 2], s[:, 0, 2], s[:, 0, 1]], axis=1)
