"""Training one SchNet ensemble member with a plain torch loop (shared/METHODS.md A2).

Loss per structure, averaged over the batch::

    L = rho * (E - E_hat)^2 + (1/N) * sum_k |F_k - F_hat_k|^2

with E the TOTAL energy (eV, not per atom, as in the paper), N the atoms of the structure
and F the force vectors (eV/Angstrom); the force term is the mean squared force-vector
error, i.e. 3x the per-component MSE. Adam, ReduceLROnPlateau on the validation loss,
best-validation weights kept (the last ones when there is no validation set).

Speed: neighbour lists are computed once per frame (matscipy) and batches are collated
from cached tensors, so an epoch is pure model time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import schnetpack.properties as P
import torch
from ase import Atoms

from al_flows.model import (
    ModelSettings,
    TrainingSettings,
    build_member,
    collate_inputs,
    energy_reference,
    frame_inputs,
    member_to_bytes,
    to_atomic_numbers,
)

__all__ = ["TrainedMember", "train_member", "frame_ids", "split_indices", "fit_atomrefs"]


@dataclass
class TrainedMember:
    """A trained member: ``blob`` (see :func:`al_flows.model.member_to_bytes`) and its record.

    ``curve`` has one dict per epoch with keys epoch, train_loss, val_loss, val_force_rmse
    (eV/A, per component), val_energy_rmse_per_atom (eV/atom), lr (used in that epoch);
    validation entries are None without a validation set, and the summary values NaN.
    """

    blob: bytes
    seed: int
    n_train: int
    n_val: int
    curve: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    val_force_rmse: float = float("nan")
    val_energy_rmse_per_atom: float = float("nan")
    train_ids: list[str] = field(default_factory=list)
    val_ids: list[str] = field(default_factory=list)


def frame_ids(frames: list[Atoms]) -> list[str]:
    """``atoms.info["frame_id"]``, else the frame's index as a string."""
    return [str(a.info.get("frame_id", str(k))) for k, a in enumerate(frames)]


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


def _per_frame_loss(out, batch, e_true, f_true, rho: float) -> torch.Tensor:
    """rho * dE^2 + mean over atoms of |dF|^2, one value per structure."""
    de = (out[P.energy] - e_true).to(torch.float32)
    df2 = ((out[P.forces] - f_true) ** 2).sum(dim=1)
    n_atoms = batch[P.n_atoms]
    f_term = torch.zeros(n_atoms.shape[0], dtype=df2.dtype, device=df2.device).index_add(0, batch[P.idx_m], df2)
    return rho * de**2 + f_term / n_atoms.to(df2.dtype)


def _evaluate(module, inputs, energies, forces, idx, rho, device, batch_size=64) -> dict:
    """Validation loss, force RMSE per component (eV/A), energy RMSE per atom (eV/atom)."""
    module.eval()
    loss_sum = f_sq = e_sq = 0.0
    n_comp = 0
    for b in range(0, len(idx), batch_size):
        sel = idx[b : b + batch_size]
        batch = collate_inputs([inputs[k] for k in sel], device)
        e_true = energies[sel]
        f_true = torch.cat([forces[k] for k in sel])
        out = module(batch)
        with torch.no_grad():
            loss_sum += float(_per_frame_loss(out, batch, e_true, f_true, rho).sum())
            f_sq += float(((out[P.forces] - f_true) ** 2).sum())
            n_comp += f_true.numel()
            e_sq += float((((out[P.energy] - e_true) / batch[P.n_atoms]) ** 2).sum())
    n = len(idx)
    return {
        "val_loss": loss_sum / n,
        "val_force_rmse": (f_sq / n_comp) ** 0.5,
        "val_energy_rmse_per_atom": (e_sq / n) ** 0.5,
    }


def train_member(
    frames: list[Atoms],
    model: ModelSettings,
    training: TrainingSettings,
    seed: int,
    elements: list[str] | None = None,
) -> TrainedMember:
    """Train one member on labelled frames (labels from each frame's calculator: energy eV,
    forces eV/A). ``seed`` fixes the initial weights, the train/validation split and the
    shuffling. ``elements`` default: those present in ``frames``."""
    if not frames:
        raise ValueError("no frames to train on")
    device = torch.device(training.device)
    ids = frame_ids(frames)
    numbers = [np.asarray(a.numbers) for a in frames]
    present = sorted({int(z) for nums in numbers for z in nums})
    zs = to_atomic_numbers(elements) if elements else present
    missing = sorted(set(present) - set(zs))
    if missing:
        raise ValueError(f"frames contain elements {missing} not in elements={elements}")
    energies_np = np.array([a.get_potential_energy() for a in frames], dtype=np.float64)
    forces_np = [np.asarray(a.get_forces(), dtype=np.float64) for a in frames]
    for a, f in zip(frames, forces_np, strict=True):
        if f.shape != (len(a), 3):
            raise ValueError(f"forces of shape {f.shape} for {len(a)} atoms")

    rng = np.random.default_rng(seed)
    train_idx, val_idx = split_indices(len(frames), training.val_fraction, rng)

    module = build_member(model, zs, seed)
    ref = energy_reference(module)
    coef = fit_atomrefs([numbers[k] for k in train_idx], energies_np[train_idx], zs)
    atomref = torch.zeros_like(ref.atomref)
    atomref[torch.tensor(zs)] = torch.tensor(coef, dtype=atomref.dtype)
    ref.atomref.copy_(atomref)
    f_rms = float(np.sqrt(np.mean(np.concatenate([forces_np[k].ravel() for k in train_idx]) ** 2)))
    ref.scale.fill_(f_rms if f_rms > 1e-6 else 1.0)
    module.to(device)

    inputs = [frame_inputs(a, model.cutoff) for a in frames]
    energies = torch.tensor(energies_np, dtype=torch.float64, device=device)
    forces = [torch.tensor(f, dtype=torch.float32, device=device) for f in forces_np]

    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=training.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=training.lr_decay, patience=training.lr_patience
    )

    curve: list[dict] = []
    best = {"loss": float("inf"), "epoch": 0, "state": None, "metrics": None}
    n_train, bs = len(train_idx), training.batch_size
    for epoch in range(1, training.epochs + 1):
        lr = float(optimizer.param_groups[0]["lr"])
        module.train()
        order = train_idx[rng.permutation(n_train)]
        loss_sum = 0.0
        for b in range(0, n_train, bs):
            sel = order[b : b + bs]
            batch = collate_inputs([inputs[k] for k in sel], device)
            out = module(batch)
            loss = _per_frame_loss(out, batch, energies[sel], torch.cat([forces[k] for k in sel]), training.rho).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward(inputs=params)
            optimizer.step()
            loss_sum += float(loss.detach()) * len(sel)
        train_loss = loss_sum / n_train

        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": None,
            "val_force_rmse": None,
            "val_energy_rmse_per_atom": None,
            "lr": lr,
        }
        if len(val_idx):
            metrics = _evaluate(module, inputs, energies, forces, val_idx, training.rho, device)
            row.update(metrics)
            scheduler.step(metrics["val_loss"])
            if metrics["val_loss"] < best["loss"]:
                best = {
                    "loss": metrics["val_loss"],
                    "epoch": epoch,
                    "metrics": metrics,
                    "state": {k: v.detach().clone() for k, v in module.state_dict().items()},
                }
        else:
            scheduler.step(train_loss)
        curve.append(row)

    if best["state"] is not None:
        module.load_state_dict(best["state"])
        best_epoch, metrics = best["epoch"], best["metrics"]
    else:
        best_epoch, metrics = training.epochs, {}
    module.eval().to("cpu")
    val_f = float(metrics.get("val_force_rmse", float("nan")))
    val_e = float(metrics.get("val_energy_rmse_per_atom", float("nan")))
    extra = {
        "seed": int(seed),
        "n_train": int(n_train),
        "n_val": int(len(val_idx)),
        "best_epoch": int(best_epoch),
        "val_force_rmse": val_f,
        "val_energy_rmse_per_atom": val_e,
        "training": training.model_dump(),
    }
    return TrainedMember(
        blob=member_to_bytes(module, model, extra),
        seed=int(seed),
        n_train=int(n_train),
        n_val=int(len(val_idx)),
        curve=curve,
        best_epoch=int(best_epoch),
        val_force_rmse=val_f,
        val_energy_rmse_per_atom=val_e,
        train_ids=[ids[k] for k in train_idx],
        val_ids=[ids[k] for k in val_idx],
    )
