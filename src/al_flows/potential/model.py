"""One ensemble member built from schnetpack: its settings (and those of its training) and how it
is built.

Units: positions and cutoff in Angstrom, energies in eV, forces in eV/Angstrom.

A member is a :class:`schnetpack.model.NeuralNetworkPotential`::

    PairwiseDistances -> representation -> Atomwise("energy") -> EnergyReference -> Forces

The representation is chosen by ``ModelSettings.kind``:

* ``schnet`` (default): :class:`~al_flows.potential.schnet.SymmetricSchNet` with the shifted softplus
  of :mod:`al_flows.potential.schnet` (schnetpack's SchNet numbers, about 2x faster force training);
* ``painn``: schnetpack's :class:`schnetpack.representation.PaiNN` (Schuett, Unke and Gastegger,
  "Equivariant message passing for the prediction of tensorial properties and molecular spectra");
* ``so3net``: schnetpack's :class:`schnetpack.representation.SO3net` (spherical harmonics up to
  ``lmax``, Clebsch-Gordan products).

All three share ``n_atom_basis`` (features per atom), ``n_interactions``, ``n_rbf`` (Gaussian radial
basis) and ``cutoff`` (cosine cutoff) and read the same full, symmetric neighbour list
(:mod:`al_flows.potential.inputs`); PaiNN and SO3net use schnetpack's default activation (SiLU).

:class:`~al_flows.potential.schnet.EnergyReference` turns the network's per-structure sum ``y`` into the
total energy ``E = scale * y + sum_i e_{Z_i}`` (per-element references ``e_Z`` fitted by least squares
on the training labels; ``scale`` in eV, set to the RMS force component of the training set in eV/A);
both are buffers, so a loaded module alone predicts total energies. Forces are ``-dE/dR`` by autograd
(schnetpack ``Forces``).

Elsewhere: a member's inputs (neighbour lists, batches) are :mod:`al_flows.potential.inputs`, its
stress :mod:`al_flows.potential.stress`, its weights files and their base64 text
:mod:`al_flows.potential.weights`.
"""

from __future__ import annotations

from typing import Literal, Sequence

import schnetpack as spk
import schnetpack.properties as P
import torch
from ase.data import atomic_numbers
from pydantic import Field, ValidationInfo, field_validator

import al_flows  # noqa: F401  (applies the schnetpack/torch compatibility patch first)
from al_flows.potential.device import check_device
from al_flows.potential.schnet import ZMAX, EnergyReference, SymmetricSchNet, shifted_softplus
from al_flows.settings import Settings

__all__ = [
    "SO3NET_LMAX",
    "ModelSettings",
    "TrainingSettings",
    "build_member",
    "build_representation",
    "member_kind",
    "member_elements",
    "energy_reference",
    "to_atomic_numbers",
]


ModelKind = Literal["schnet", "painn", "so3net"]
SO3NET_LMAX = 2  # schnetpack's SO3net examples; the lmax of model.kind so3net when none is given


class ModelSettings(Settings):
    """Member architecture: SchNet by default (defaults of Sprueill et al., docs/methods.md), or
    schnetpack's PaiNN or SO3net with the same meaning of the shared keys."""

    kind: ModelKind = Field(default="schnet", description="representation: schnet, painn or so3net")
    n_atom_basis: int = Field(default=128, gt=0, description="features per atom")
    n_interactions: int = Field(default=2, gt=0, description="interaction blocks")
    n_rbf: int = Field(default=50, gt=0, description="Gaussian radial basis functions")
    cutoff: float = Field(default=6.0, gt=0, description="neighbour cutoff, Angstrom")
    lmax: int | None = Field(
        default=None,
        ge=1,
        le=4,
        validate_default=True,
        description=f"so3net only: highest angular momentum of the spherical harmonics (default {SO3NET_LMAX})",
    )

    @field_validator("lmax")
    @classmethod
    def _lmax_of_so3net(cls, v: int | None, info: ValidationInfo) -> int | None:
        kind = info.data.get("kind")
        if kind is None:  # kind itself is invalid and reported
            return v
        if kind != "so3net":
            if v is not None:
                raise ValueError(f"only model.kind so3net has lmax (kind is {kind}); remove lmax")
            return None
        return SO3NET_LMAX if v is None else v


class TrainingSettings(Settings):
    """Training of one member (defaults of Sprueill et al., docs/methods.md)."""

    epochs: int = Field(default=100, gt=0)
    batch_size: int = Field(default=32, gt=0, description="structures per batch")
    lr: float = Field(default=1e-4, gt=0, description="Adam learning rate")
    rho: float = Field(default=0.01, ge=0, description="weight of the squared total-energy error (eV^2) in the loss")
    lr_patience: int = Field(default=60, ge=1, description="epochs without validation improvement before decay")
    lr_decay: float = Field(default=0.8, gt=0, lt=1, description="learning-rate factor on plateau")
    val_fraction: float = Field(default=0.1, ge=0, lt=0.5, description="fraction of frames held out for validation")
    device: str = Field(
        default="auto",
        description="torch device the member trains on, resolved on the worker: auto (AL_FLOWS_DEVICE, else cuda "
        "when present, else cpu), cpu, cuda or cuda:N (al_flows.potential.device)",
    )
    amp: bool = Field(
        default=False,
        description="mixed precision on CUDA: the SchNet representation runs under bfloat16 autocast "
        "(energy aggregation, reference and loss stay float32/float64); ignored, with a warning, on other devices",
    )
    divergence_factor: float | None = Field(
        default=100.0,
        gt=1,
        description="an epoch whose mean training loss exceeds this many times the loss of the untrained model "
        "(its first batch) has diverged, as has any non-finite loss; None: only non-finite losses count",
    )
    max_retries: int = Field(
        default=2,
        ge=0,
        description="a diverged member is trained again from scratch (same seed and split) this many times at most",
    )
    retry_lr_factor: float = Field(default=0.1, gt=0, lt=1, description="learning-rate factor of each retry")
    warm_start: bool = Field(
        default=False,
        description="active learning: a member starts from the weights of the same member of the round before "
        "and trains warm_epochs epochs (al_flows.potential.warm_start); false: every round trains from scratch",
    )
    warm_epochs: int | None = Field(
        default=None, gt=0, description="epochs of a warm-started member (None: a quarter of epochs, rounded up)"
    )
    retrain_every: int = Field(
        default=4, ge=1, description="with warm_start: every retrain_every-th round (0, N, 2N, ...) trains from scratch"
    )

    @field_validator("device")
    @classmethod
    def _torch_device(cls, v: str) -> str:
        return check_device(v, source="")  # pydantic's message names the field

    @property
    def epochs_warm(self) -> int:
        """Epochs of a warm-started member: ``warm_epochs``, else a quarter of ``epochs`` rounded up."""
        return self.warm_epochs if self.warm_epochs is not None else -(-self.epochs // 4)


def to_atomic_numbers(elements: Sequence[str | int]) -> list[int]:
    """Sorted unique atomic numbers from symbols or numbers."""
    zs = {int(e) if not isinstance(e, str) else atomic_numbers[e] for e in elements}
    if not zs or min(zs) < 1 or max(zs) >= ZMAX:
        raise ValueError(f"elements must be 1 <= Z < {ZMAX}, got {sorted(zs)}")
    return sorted(zs)


def build_representation(settings: ModelSettings) -> torch.nn.Module:
    """The representation of ``settings.kind`` with fresh weights (from the global torch RNG):
    Gaussian radial basis of ``n_rbf`` functions and cosine cutoff at ``cutoff`` for every kind."""
    radial_basis = spk.nn.GaussianRBF(n_rbf=settings.n_rbf, cutoff=settings.cutoff)
    cutoff_fn = spk.nn.CosineCutoff(settings.cutoff)
    shared = dict(n_atom_basis=settings.n_atom_basis, n_interactions=settings.n_interactions)
    if settings.kind == "painn":
        return spk.representation.PaiNN(**shared, radial_basis=radial_basis, cutoff_fn=cutoff_fn)
    if settings.kind == "so3net":
        lmax = SO3NET_LMAX if settings.lmax is None else settings.lmax
        return spk.representation.SO3net(**shared, lmax=lmax, radial_basis=radial_basis, cutoff_fn=cutoff_fn)
    return SymmetricSchNet(**shared, radial_basis=radial_basis, cutoff_fn=cutoff_fn, activation=shifted_softplus)


def build_member(
    settings: ModelSettings, elements: list[str] | list[int], seed: int
) -> spk.model.NeuralNetworkPotential:
    """A fresh member of ``settings.kind`` (float32, eval mode); weights drawn from ``seed`` without
    touching the global torch RNG. ``elements`` are stored in the buffer ``elements`` (atomic numbers)."""
    zs = to_atomic_numbers(elements)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        representation = build_representation(settings)
        model = spk.model.NeuralNetworkPotential(
            representation=representation,
            input_modules=[spk.atomistic.PairwiseDistances()],
            output_modules=[
                spk.atomistic.Atomwise(n_in=settings.n_atom_basis, output_key=P.energy),
                EnergyReference(P.energy),
                spk.atomistic.Forces(energy_key=P.energy, force_key=P.forces),
            ],
        )
    model.register_buffer("elements", torch.tensor(zs, dtype=torch.long))
    return model.eval()


def member_kind(module: torch.nn.Module) -> str:
    """The ``ModelSettings.kind`` of a member's representation (schnet, painn or so3net)."""
    rep = getattr(module, "representation", None)
    if isinstance(rep, spk.representation.SchNet):
        return "schnet"
    if isinstance(rep, spk.representation.PaiNN):
        return "painn"
    if isinstance(rep, spk.representation.SO3net):
        return "so3net"
    raise TypeError(
        f"module has no SchNet, PaiNN or SO3net representation ({type(rep).__name__}); was it made by build_member?"
    )


def member_elements(module: spk.model.NeuralNetworkPotential) -> list[int]:
    """Atomic numbers the member was built for."""
    return [int(z) for z in module.elements.tolist()]


def energy_reference(module: spk.model.NeuralNetworkPotential) -> EnergyReference:
    """The member's :class:`EnergyReference` output module."""
    for m in module.modules():
        if isinstance(m, EnergyReference):
            return m
    raise TypeError("module has no EnergyReference; was it made by build_member?")
