"""One SchNet ensemble member built from schnetpack, its inputs and its serialisation.

Units: positions and cutoff in Angstrom, energies in eV, forces in eV/Angstrom.

A member is a :class:`schnetpack.model.NeuralNetworkPotential`::

    PairwiseDistances -> SymmetricSchNet -> Atomwise("energy") -> EnergyReference -> Forces

all schnetpack modules except: :class:`SymmetricSchNet`, schnetpack's SchNet with a faster forward
(each unordered pair once), and a shifted softplus with a cheap double backward. Both give
schnetpack's numbers (tested) and make force training about 2x faster on CPU.

:class:`EnergyReference` turns the network's per-structure sum ``y`` into the total
energy ``E = scale * y + sum_i e_{Z_i}`` (per-element references ``e_Z`` fitted by least
squares on the training labels; ``scale`` in eV, set to the RMS force component of the training
set in eV/A);
both are buffers, so a loaded module alone predicts total energies. Forces are
``-dE/dR`` by autograd (schnetpack ``Forces``).

Inputs are schnetpack-style dicts (keys of :mod:`schnetpack.properties`); the periodic
neighbour list comes from matscipy (``"ijS"``, all images, so small or sheared triclinic
cells with a cutoff larger than half the cell are correct) and is computed once per frame
by :func:`frame_inputs` (``cache=True``: kept in a process-wide LRU keyed by a hash of the
frame's numbers, positions, cell, pbc and the cutoff, :class:`NeighbourCache`, so training rounds
and members reuse it and a moved atom invalidates it); :func:`collate_inputs` joins frames into
one batch.

Stress (only when asked, :func:`enable_stress`): schnetpack's ``Strain`` input module (first, before
``PairwiseDistances``) deforms positions, offsets and cell by ``r -> (1 + eps) r`` with a zero
``eps`` that requires grad, and ``Forces(calc_stress=True)`` returns ``(dE/d eps) / V`` with V the
SIGNED volume ``a1 . (a2 x a3)`` (eV/Angstrom^3, 3x3, per frame). That is ASE's convention
(``stress = (1/V) dE/d eps``, positive = tensile, pressure = -trace/3) for right-handed cells;
:func:`stress_to_voigt` fixes the sign for left-handed cells and gives ASE's Voigt order
xx, yy, zz, yz, xz, xy. Neither module has parameters or buffers: the state dict is unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import pickle
import threading
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
import schnetpack as spk
import schnetpack.properties as P
import torch
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols
from pydantic import Field, field_validator

import al_flows  # noqa: F401  (applies the schnetpack/torch compatibility patch first)
from al_flows.frames.neighbours import neighbour_list
from al_flows.settings import Settings

__all__ = [
    "ModelSettings",
    "TrainingSettings",
    "EnergyReference",
    "SymmetricSchNet",
    "half_pair_mask",
    "shifted_softplus",
    "build_member",
    "member_to_bytes",
    "member_from_bytes",
    "member_elements",
    "enable_stress",
    "stress_enabled",
    "stress_to_voigt",
    "energy_reference",
    "frame_inputs",
    "frame_key",
    "NeighbourCache",
    "neighbour_cache",
    "collate_inputs",
    "to_atomic_numbers",
    "BLOB_FORMAT",
]

BLOB_FORMAT = "al_flows.schnet_member/1"
ZMAX = 100
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


class ModelSettings(Settings):
    """SchNet architecture (defaults of Sprueill et al., docs/methods.md)."""

    n_atom_basis: int = Field(128, gt=0, description="features per atom")
    n_interactions: int = Field(2, gt=0, description="interaction blocks")
    n_rbf: int = Field(50, gt=0, description="Gaussian radial basis functions")
    cutoff: float = Field(6.0, gt=0, description="neighbour cutoff, Angstrom")


class TrainingSettings(Settings):
    """Training of one member (defaults of Sprueill et al., docs/methods.md)."""

    epochs: int = Field(100, gt=0)
    batch_size: int = Field(32, gt=0, description="structures per batch")
    lr: float = Field(1e-4, gt=0, description="Adam learning rate")
    rho: float = Field(0.01, ge=0, description="weight of the squared total-energy error (eV^2) in the loss")
    lr_patience: int = Field(60, ge=1, description="epochs without validation improvement before decay")
    lr_decay: float = Field(0.8, gt=0, lt=1, description="learning-rate factor on plateau")
    val_fraction: float = Field(0.1, ge=0, lt=0.5, description="fraction of frames held out for validation")
    device: str = Field("cpu", description="torch device the member trains on: cpu, cuda or cuda:N")
    amp: bool = Field(
        False,
        description="mixed precision on CUDA: the SchNet representation runs under bfloat16 autocast "
        "(energy aggregation, reference and loss stay float32/float64); ignored, with a warning, on other devices",
    )
    divergence_factor: float | None = Field(
        100.0,
        gt=1,
        description="an epoch whose mean training loss exceeds this many times the loss of the untrained model "
        "(its first batch) has diverged, as has any non-finite loss; None: only non-finite losses count",
    )
    max_retries: int = Field(
        2,
        ge=0,
        description="a diverged member is trained again from scratch (same seed and split) this many times at most",
    )
    retry_lr_factor: float = Field(0.1, gt=0, lt=1, description="learning-rate factor of each retry")

    @field_validator("device")
    @classmethod
    def _torch_device(cls, v: str) -> str:
        try:
            device = torch.device(v)
        except (RuntimeError, TypeError):
            raise ValueError(f"{v!r} is not a torch device; use cpu, cuda or cuda:N") from None
        if device.type not in ("cpu", "cuda", "mps"):
            raise ValueError(f"{v!r} is not a device al_flows trains on; use cpu, cuda or cuda:N")
        return v


class EnergyReference(torch.nn.Module):
    """``energy <- scale * energy + sum_i atomref[Z_i]`` (eV); output in float64.

    ``atomref`` (eV, indexed by Z) and ``scale`` (eV) are buffers set from training data.
    The float64 sum keeps total energies of large cells exact to well below 1e-4 eV.
    """

    def __init__(self, energy_key: str = P.energy, zmax: int = ZMAX):
        super().__init__()
        self.energy_key = energy_key
        self.register_buffer("atomref", torch.zeros(zmax, dtype=torch.float64))
        self.register_buffer("scale", torch.ones((), dtype=torch.float64))

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
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
    and :func:`frame_inputs` give); about 1.8x faster force training on CPU."""

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
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


def to_atomic_numbers(elements: Sequence[str | int]) -> list[int]:
    """Sorted unique atomic numbers from symbols or numbers."""
    zs = {int(e) if not isinstance(e, str) else atomic_numbers[e] for e in elements}
    if not zs or min(zs) < 1 or max(zs) >= ZMAX:
        raise ValueError(f"elements must be 1 <= Z < {ZMAX}, got {sorted(zs)}")
    return sorted(zs)


def build_member(settings: ModelSettings, elements: list[str] | list[int], seed: int) -> torch.nn.Module:
    """A fresh SchNet member (float32, eval mode); weights drawn from ``seed`` without touching
    the global torch RNG. ``elements`` are stored in the buffer ``elements`` (atomic numbers)."""
    zs = to_atomic_numbers(elements)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        representation = SymmetricSchNet(
            n_atom_basis=settings.n_atom_basis,
            n_interactions=settings.n_interactions,
            radial_basis=spk.nn.GaussianRBF(n_rbf=settings.n_rbf, cutoff=settings.cutoff),
            cutoff_fn=spk.nn.CosineCutoff(settings.cutoff),
            activation=shifted_softplus,
        )
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


def member_elements(module: torch.nn.Module) -> list[int]:
    """Atomic numbers the member was built for."""
    return [int(z) for z in module.elements.tolist()]


def energy_reference(module: torch.nn.Module) -> EnergyReference:
    """The member's :class:`EnergyReference` output module."""
    for m in module.modules():
        if isinstance(m, EnergyReference):
            return m
    raise TypeError("module has no EnergyReference; was it made by build_member?")


def _forces_module(module: torch.nn.Module) -> spk.atomistic.Forces:
    for m in module.output_modules:
        if isinstance(m, spk.atomistic.Forces):
            return m
    raise TypeError("module has no schnetpack Forces output module; was it made by build_member?")


def stress_enabled(module: torch.nn.Module) -> bool:
    """Whether the member also predicts stress (see :func:`enable_stress`)."""
    return bool(_forces_module(module).calc_stress)


def enable_stress(module: torch.nn.Module, enabled: bool = True) -> torch.nn.Module:
    """Make a member (from :func:`build_member` or :func:`member_from_bytes`) also predict stress
    under ``schnetpack.properties.stress`` ([n_frames, 3, 3], eV/Angstrom^3, (1/V_signed) dE/d eps),
    or stop it (``enabled=False``). In place; returns ``module``.

    Puts ``spk.atomistic.Strain`` first in ``input_modules`` (before ``PairwiseDistances``),
    switches the ``Forces`` module to ``calc_stress`` (outputs and required derivatives as its
    constructor sets them) and re-collects the model's required derivatives and outputs. No
    parameters or buffers are added, so ``state_dict`` (and saved blobs) are unchanged; energies and
    forces are the same (the strain is zero). Computing stress costs one more autograd input, so
    members are built without it and :meth:`al_flows.potential.ensemble.Ensemble.predict` enables it only
    for ``stress=True``."""
    forces = _forces_module(module)
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


def _plain(obj: Any, where: str = "extra") -> Any:
    """Copy of ``obj`` made of types torch.load(weights_only=True) reads back (dict, list, str, int,
    float, bool, None, tensor); numpy scalars/arrays and str subclasses are converted."""
    if obj is None or type(obj) in (str, int, float, bool):
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if type(k) not in (str, int):
                raise TypeError(f"{where}: key {k!r} must be str or int")
            out[k] = _plain(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(f"{where}: {type(obj).__name__} cannot be stored; use plain str/int/float/list/dict/tensor")


def member_to_bytes(module: torch.nn.Module, settings: ModelSettings, extra: dict) -> bytes:
    """Serialise a member as ``torch.save`` of a plain dict (state dict tensors, settings, elements,
    per-element energy references in eV, ``extra``); readable with ``weights_only=True``."""
    extra = _plain(dict(extra or {}))
    ref = energy_reference(module)
    zs = member_elements(module)
    payload = {
        "format": BLOB_FORMAT,
        "settings": settings.model_dump(),
        "elements": zs,
        "atomrefs_eV": {chemical_symbols[z]: float(ref.atomref[z]) for z in zs},
        "energy_scale_eV": float(ref.scale),
        "state_dict": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()},
        "extra": extra,
        "versions": {"schnetpack": str(spk.__version__), "torch": str(torch.__version__)},
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def member_from_bytes(blob: bytes) -> tuple[torch.nn.Module, ModelSettings, dict]:
    """Inverse of :func:`member_to_bytes` (``torch.load(weights_only=True)``); module in eval mode on CPU."""
    try:
        payload = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"model blob refused: it holds Python objects other than tensors and plain data, which are never "
            f"unpickled (torch.load weights_only=True): {first[:200]}; use a blob written by al_flows"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != BLOB_FORMAT:
        raise ValueError(f"not an al_flows member blob (expected format {BLOB_FORMAT!r})")
    settings = ModelSettings(**payload["settings"])
    module = build_member(settings, payload["elements"], seed=0)
    module.load_state_dict(payload["state_dict"])
    return module.eval(), settings, dict(payload.get("extra") or {})


# ----------------------------------------------------------------------------- inputs


def weights_text(blob: bytes) -> str:
    """Model weights (:func:`member_to_bytes` file bytes) as base64 text for a ``model_blob`` field
    (blobs are text so that every store keeps them intact)."""
    return base64.b64encode(blob).decode("ascii")


def weights_bytes(text: str | bytes) -> bytes:
    """Inverse of :func:`weights_text`."""
    return base64.b64decode(text)


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
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return dict(entry[0])

    def put(self, key: bytes, inputs: dict[str, torch.Tensor]) -> None:
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
