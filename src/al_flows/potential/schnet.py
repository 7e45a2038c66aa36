"""The torch modules of a SchNet member that are not schnetpack's own.

:class:`SymmetricSchNet` is schnetpack's SchNet with a faster forward (each unordered pair once) and
:func:`shifted_softplus` a SchNet activation with a cheap double backward; both give schnetpack's
numbers (tested) and make force training about 2x faster on CPU. :class:`EnergyReference` turns the
network's per-structure sum ``y`` into the total energy ``E = scale * y + sum_i e_{Z_i}`` (eV).

Units: distances in Angstrom, energies in eV.
"""

from __future__ import annotations

import math

import schnetpack as spk
import schnetpack.properties as P
import torch

import al_flows  # noqa: F401  (applies the schnetpack/torch compatibility patch first)

__all__ = ["ZMAX", "EnergyReference", "SymmetricSchNet", "half_pair_mask", "shifted_softplus"]

ZMAX = 100  # atomic numbers 1 <= Z < ZMAX (the length of the per-element energy references)
_LOG2 = math.log(2.0)


class _ShiftedSoftplus(torch.autograd.Function):
    """softplus(x) - ln 2 with backward ``g * sigmoid(x)`` written in differentiable ops: same values
    as ``schnetpack.nn.shifted_softplus`` but a much cheaper double backward (force training)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.nn.functional.softplus(x) - _LOG2

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.sigmoid(x)


def shifted_softplus(x: torch.Tensor) -> torch.Tensor:
    """ln(1 + e^x) - ln 2, the SchNet activation (fast second derivative)."""
    return _ShiftedSoftplus.apply(x)


class EnergyReference(torch.nn.Module):
    """``energy <- scale * energy + sum_i atomref[Z_i]`` (eV); output in float64.

    ``atomref`` (eV, indexed by Z) and ``scale`` (eV) are buffers set from training data.
    The float64 sum keeps total energies of large cells exact to well below 1e-4 eV.
    """

    atomref: torch.Tensor
    scale: torch.Tensor

    def __init__(self, energy_key: str = P.energy, zmax: int = ZMAX):
        super().__init__()
        self.energy_key = energy_key
        self.register_buffer("atomref", torch.zeros(zmax, dtype=torch.float64))
        self.register_buffer("scale", torch.ones((), dtype=torch.float64))

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``inputs`` with its energy replaced by ``scale * energy + sum_i atomref[Z_i]`` (eV, float64)."""
        y = inputs[self.energy_key].to(torch.float64) * self.scale
        idx_m = inputs[P.idx_m]
        n_mol = inputs[P.n_atoms].shape[0]
        ref = torch.zeros(n_mol, dtype=torch.float64, device=y.device)
        ref = ref.index_add(0, idx_m, self.atomref[inputs[P.Z]])
        inputs[self.energy_key] = y + ref
        return inputs


def half_pair_mask(idx_i: torch.Tensor, idx_j: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """True for one pair of each (i, j, +L) / (j, i, -L) couple of a full neighbour list:
    i < j, or i == j (a periodic image of itself) with L lexicographically positive."""
    ox, oy, oz = offsets.unbind(-1)
    positive = (ox > 0) | ((ox == 0) & ((oy > 0) | ((oy == 0) & (oz > 0))))
    return (idx_i < idx_j) | ((idx_i == idx_j) & positive)


class SymmetricSchNet(spk.representation.SchNet):
    """schnetpack's SchNet (same modules, weights and result) with each unordered pair visited
    once: the filter W_ij depends on |r_ij| only, so it is computed once per pair and carries both
    messages x_j W_ij -> i and x_i W_ij -> j. Needs a full, symmetric neighbour list (as schnetpack's
    and :func:`al_flows.potential.inputs.frame_inputs` give); about 1.8x faster force training on CPU."""

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``inputs`` with updated atom features: each pair of the full list is filtered once, for both directions."""
        idx_i, idx_j, r_ij = inputs[P.idx_i], inputs[P.idx_j], inputs[P.Rij]
        keep = half_pair_mask(idx_i, idx_j, inputs[P.offsets])
        i, j = idx_i[keep], idx_j[keep]
        d_ij = torch.norm(r_ij[keep], dim=1)
        f_ij = self.radial_basis(d_ij)
        rcut_ij = self.cutoff_fn(d_ij)

        x = self.embedding(inputs[P.Z])
        for embedding in self.electronic_embeddings:
            x = x + embedding(x, inputs)
        for interaction in self.interactions:
            h = interaction.in2f(x)
            w_ij = interaction.filter_network(f_ij) * rcut_ij[:, None]
            m_ji = h.index_select(0, j) * w_ij
            # accumulate in the product's dtype: h's in float32; float32 under bfloat16 autocast
            # (w_ij is promoted by the float32 cutoff), so messages are summed in float32
            msg = torch.zeros(h.shape, dtype=m_ji.dtype, device=h.device).index_add(0, i, m_ji)
            msg = msg.index_add(0, j, h.index_select(0, i) * w_ij)
            x = x + interaction.f2out(msg)
        inputs["scalar_representation"] = x
        return inputs
