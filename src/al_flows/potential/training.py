"""Training one SchNet ensemble member with a plain torch loop (settings of Sprueill et al.; docs/methods.md).

Loss per structure, averaged over the batch::

    L = rho * (E - E_hat)^2 + (1/N) * sum_k |F_k - F_hat_k|^2

with E the TOTAL energy (eV, not per atom, as in the paper), N the atoms of the structure
and F the force vectors (eV/Angstrom); the force term is the mean squared force-vector
error, i.e. 3x the per-component MSE. Adam, ReduceLROnPlateau on the validation loss,
best-validation weights kept (the last ones when there is no validation set).

Speed: neighbour lists are computed once per frame (matscipy) and kept in the process-wide
cache of :func:`al_flows.potential.model.frame_inputs` (keyed by a hash of numbers, positions, cell, pbc
and cutoff), so the members of a round and later rounds reuse them and a moved atom gets a new
list; batches are collated from these tensors (about 0.1 ms for 16 32-atom frames, under 0.5 % of
a CPU step, so batches are not pre-collated) and the epoch loss is summed on the device (no
per-step host synchronisation), so an epoch is model time.

Mixed precision (``TrainingSettings.amp``, CUDA only): the SchNet representation (filter networks,
continuous-filter convolutions) runs under ``torch.autocast(dtype=torch.bfloat16)`` and returns
float32 features; the atomwise energy network, the per-structure sum, the energy reference
(float64), forces by autograd and the loss stay in float32/float64. bfloat16 has float32's
exponent range, so no gradient scaler is needed for the force (double) backward; a GPU without
bfloat16 trains in float32. On other devices ``amp`` is ignored with a warning.

Divergence (``TrainingSettings.divergence_factor``, ``max_retries``, ``retry_lr_factor``): after each
epoch :meth:`Trainer.run_epochs` checks the epoch's mean training loss (the device sum it reads
once per epoch anyway, so the check adds no synchronisation): a non-finite loss (NaN/inf in any
batch makes the sum non-finite), or one above ``divergence_factor`` times the loss of the untrained
model (the first batch of the first epoch, before any update), raises :class:`TrainingDivergedError`.
:func:`train_member` then trains the member again from scratch (same seed: same initial weights,
split and batch order) with the learning rate multiplied by ``retry_lr_factor``, up to
``max_retries`` times, and records the attempts (:attr:`TrainedMember.retries`) and the learning
rate finally used (:attr:`TrainedMember.lr`); when every attempt diverges it raises
:class:`TrainingDivergedError` with the learning rates tried. A non-finite loss of the untrained
model is not retried (no learning rate helps: the labels or the energy reference are not finite),
and weights with a NaN or inf are never serialised. A run that does not diverge is the same,
bit for bit, as without these checks.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import numpy as np
import schnetpack.properties as P
import torch
from ase import Atoms

from al_flows.frames.checks import check_training_frames
from al_flows.potential.model import (
    ModelSettings,
    TrainingSettings,
    build_member,
    collate_inputs,
    energy_reference,
    frame_inputs,
    member_to_bytes,
    to_atomic_numbers,
)

__all__ = [
    "TrainedMember",
    "Trainer",
    "FrameErrors",
    "TrainingDivergedError",
    "train_member",
    "frame_ids",
    "split_indices",
    "fit_atomrefs",
]


class TrainingDivergedError(RuntimeError):
    """Training diverged (non-finite loss or weights, or an exploding loss); the message is one line
    saying which member/seed, what diverged, the learning rates tried and what to do.

    ``seed``, ``member`` (None when unknown), ``epoch`` (of the last divergence), ``reason`` (of the
    last attempt), ``retryable`` (False when a lower learning rate cannot help) and ``attempts`` (one
    dict per diverged attempt: lr, epoch, reason)."""

    def __init__(
        self,
        message: str,
        *,
        seed: int,
        reason: str,
        epoch: int,
        lr: float,
        retryable: bool = True,
        member: int | None = None,
        attempts: list[dict] | None = None,
    ):
        super().__init__(message)
        self.seed, self.member, self.reason, self.epoch, self.lr = seed, member, reason, epoch, lr
        self.retryable = retryable
        self.attempts = list(attempts or [{"lr": lr, "epoch": epoch, "reason": reason}])


@dataclass
class TrainedMember:
    """A trained member: ``blob`` (see :func:`al_flows.potential.model.member_to_bytes`) and its record.

    ``curve`` has one dict per epoch with keys epoch, train_loss, val_loss, val_force_rmse
    (eV/A, per component), val_energy_rmse_per_atom (eV/atom), lr (used in that epoch);
    validation entries are None without a validation set, and the summary values NaN.
    ``lr``: the learning rate this member was trained with (``TrainingSettings.lr`` unless training
    diverged and was retried); ``retries``: one dict per diverged attempt before it (lr, epoch, reason).
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
    lr: float = float("nan")
    retries: list[dict] = field(default_factory=list)


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


@contextmanager
def _autocast_representation(module: torch.nn.Module, device_type: str, dtype: torch.dtype):
    """Within the block, ``module.representation`` runs under ``torch.autocast(device_type, dtype)``
    and returns float32 ``scalar_representation``; everything after it (atomwise network, energy
    sum and reference, forces, loss) runs outside autocast. Restored on exit."""
    rep = module.representation
    inner = rep.forward

    def forward(inputs):
        with torch.autocast(device_type=device_type, dtype=dtype):
            out = inner(inputs)
        out["scalar_representation"] = out["scalar_representation"].float()
        return out

    rep.forward = forward
    try:
        yield
    finally:
        del rep.forward


@dataclass
class FrameErrors:
    """Per-structure errors of a model on labelled frames (one entry per frame, in the order asked).

    ``loss``: the training loss of each structure (rho * dE^2 + mean_i |dF_i|^2);
    ``force_error``: mean over atoms of the force-error vector norm |F_pred,i - F_i| (eV/A);
    ``energy_error_per_atom``: (E_pred - E)/N (eV/atom); ``force_sq_sum``: sum of squared force
    components errors (eV^2/A^2) and ``n_force_components`` (3N) for pooled RMSEs.
    """

    loss: np.ndarray
    force_error: np.ndarray
    energy_error_per_atom: np.ndarray
    force_sq_sum: np.ndarray
    n_force_components: np.ndarray

    def summary(self) -> dict:
        """loss (mean), force_rmse (per component, eV/A), force_mae (mean of ``force_error``),
        energy_rmse_per_atom (eV/atom)."""
        n = len(self.loss)
        if n == 0:
            nan = float("nan")
            return {"loss": nan, "force_rmse": nan, "force_mae": nan, "energy_rmse_per_atom": nan}
        return {
            "loss": float(self.loss.mean()),
            "force_rmse": float(np.sqrt(self.force_sq_sum.sum() / self.n_force_components.sum())),
            "force_mae": float(self.force_error.mean()),
            "energy_rmse_per_atom": float(np.sqrt(np.mean(self.energy_error_per_atom**2))),
        }


class Trainer:
    """One SchNet member and its optimiser over a fixed list of labelled frames.

    Neighbour lists of all frames are computed once (and reused from the process-wide cache
    when another Trainer already built them for the same frames); :meth:`run_epochs` trains on any subset
    of frame indices, so the training set can change between calls while the weights, the
    Adam state and the learning-rate schedule carry on (active sampling, docs/methods.md).
    Randomness (initial weights, batch order) comes from ``seed`` only.
    """

    def __init__(
        self,
        frames: list[Atoms],
        model: ModelSettings,
        training: TrainingSettings,
        seed: int,
        elements: list[str] | None = None,
    ):
        # one-line StructureError naming the frame and the fix: no frames, missing/misshapen/non-finite
        # labels, NaN positions, elements outside ``elements``, mixed periodicity (no neighbour list: cheap)
        check_training_frames(frames, elements)
        self.model_settings, self.training, self.seed = model, training, int(seed)
        self.device = torch.device(training.device)
        self.ids = frame_ids(frames)
        self.numbers = [np.asarray(a.numbers) for a in frames]
        present = sorted({int(z) for nums in self.numbers for z in nums})
        self.zs = to_atomic_numbers(elements) if elements else present
        self.energies_np = np.array([a.get_potential_energy() for a in frames], dtype=np.float64)
        self.forces_np = [np.asarray(a.get_forces(), dtype=np.float64) for a in frames]
        self.rng = np.random.default_rng(self.seed)
        self.module = build_member(model, self.zs, self.seed)
        self.inputs = [frame_inputs(a, model.cutoff, cache=True) for a in frames]
        self.amp_dtype = self._amp_dtype()
        self.energies = torch.tensor(self.energies_np, dtype=torch.float64, device=self.device)
        self.forces = [torch.tensor(f, dtype=torch.float32, device=self.device) for f in self.forces_np]
        self.params: list[torch.nn.Parameter] = []
        self.optimizer = self.scheduler = None
        self.epoch = 0
        self.n_steps = 0
        self.best: dict = {"loss": float("inf"), "epoch": 0, "state": None, "row": None}

    _amp_device_types = ("cuda",)  # tests add "cpu" to run the autocast path on CPU

    def _amp_dtype(self) -> torch.dtype | None:
        """bfloat16 when ``training.amp`` and the device supports it, else None (float32)."""
        if not self.training.amp:
            return None
        if self.device.type not in self._amp_device_types:
            warnings.warn(
                f"TrainingSettings.amp is for CUDA devices; ignored on {self.device.type!r} (training in float32)",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        if self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            warnings.warn("this GPU has no bfloat16; amp ignored (training in float32)", RuntimeWarning, stacklevel=3)
            return None
        return torch.bfloat16

    def _precision(self):
        """Context for the training forward: bfloat16 autocast of the representation, or nothing."""
        if self.amp_dtype is None:
            return nullcontext()
        return _autocast_representation(self.module, self.device.type, self.amp_dtype)

    def fit_reference(self, train_idx) -> None:
        """Set the energy reference from the frames ``train_idx`` (per-element energies by least
        squares, scale = RMS force component) and create the optimiser; call once, before training."""
        train_idx = np.asarray(train_idx, dtype=int)
        ref = energy_reference(self.module)
        coef = fit_atomrefs([self.numbers[k] for k in train_idx], self.energies_np[train_idx], self.zs)
        atomref = torch.zeros_like(ref.atomref)
        atomref[torch.tensor(self.zs)] = torch.tensor(coef, dtype=atomref.dtype)
        ref.atomref.copy_(atomref)
        f_rms = float(np.sqrt(np.mean(np.concatenate([self.forces_np[k].ravel() for k in train_idx]) ** 2)))
        ref.scale.fill_(f_rms if f_rms > 1e-6 else 1.0)
        self.module.to(self.device)
        self.params = [p for p in self.module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=self.training.lr)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=self.training.lr_decay, patience=self.training.lr_patience
        )
        self._initial_loss = None  # loss of the untrained model (first batch), a device scalar until read
        self.initial_loss: float | None = None

    def steps_per_epoch(self, n_train: int) -> int:
        """Optimiser steps of one epoch over ``n_train`` frames."""
        return -(-int(n_train) // self.training.batch_size)

    def run_epochs(self, train_idx, val_idx, n_epochs: int) -> list[dict]:
        """Train ``n_epochs`` epochs on frames ``train_idx``; after each, evaluate ``val_idx`` and
        step the plateau schedule (on the training loss without validation frames). Returns the
        curve rows (epoch, train_loss, val_loss, val_force_rmse, val_energy_rmse_per_atom, lr,
        n_train); the best-validation weights so far are kept (see :meth:`restore_best`)."""
        if self.optimizer is None:
            raise RuntimeError("call fit_reference(train_idx) before run_epochs")
        train_idx, val_idx = np.asarray(train_idx, dtype=int), np.asarray(val_idx, dtype=int)
        if not len(train_idx):
            raise ValueError("train_idx is empty")
        bs, n_train, rows = self.training.batch_size, len(train_idx), []
        for _ in range(int(n_epochs)):
            self.epoch += 1
            lr = float(self.optimizer.param_groups[0]["lr"])
            self.module.train()
            order = train_idx[self.rng.permutation(n_train)]
            # summed on the device in float64 (same numbers as a Python float sum), read once per epoch
            loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
            with self._precision():
                for b in range(0, n_train, bs):
                    sel = order[b : b + bs]
                    batch = collate_inputs([self.inputs[k] for k in sel], self.device)
                    out = self.module(batch)
                    f_true = torch.cat([self.forces[k] for k in sel])
                    loss = _per_frame_loss(out, batch, self.energies[sel], f_true, self.training.rho).mean()
                    if self._initial_loss is None:
                        self._initial_loss = loss.detach()
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward(inputs=self.params)
                    self.optimizer.step()
                    self.n_steps += 1
                    loss_sum += loss.detach().double() * len(sel)
            train_loss = float(loss_sum) / n_train
            self._check_divergence(train_loss, lr)
            row = {
                "epoch": self.epoch,
                "train_loss": train_loss,
                "val_loss": None,
                "val_force_rmse": None,
                "val_energy_rmse_per_atom": None,
                "lr": lr,
                "n_train": int(n_train),
            }
            if len(val_idx):
                s = self.errors(val_idx).summary()
                row.update(
                    val_loss=s["loss"],
                    val_force_rmse=s["force_rmse"],
                    val_energy_rmse_per_atom=s["energy_rmse_per_atom"],
                )
                self.scheduler.step(s["loss"])
                if s["loss"] < self.best["loss"]:
                    state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
                    self.best = {"loss": s["loss"], "epoch": self.epoch, "state": state, "row": dict(row)}
            else:
                self.scheduler.step(row["train_loss"])
            rows.append(row)
        return rows

    def _check_divergence(self, train_loss: float, lr: float) -> None:
        """Raise :class:`TrainingDivergedError` when this epoch's mean training loss is not finite or
        exceeds ``divergence_factor`` times the untrained model's loss (host floats only: the sums
        were read already)."""
        if self.initial_loss is None:
            self.initial_loss = float(self._initial_loss)
        initial, factor = self.initial_loss, self.training.divergence_factor
        if not math.isfinite(initial):
            reason = f"non-finite loss ({initial}) of the untrained model, before any update"
            raise TrainingDivergedError(
                f"training diverged (seed {self.seed}): {reason}; no learning rate helps: check the labels "
                f"(energies, forces) for NaN/inf",
                seed=self.seed,
                reason=reason,
                epoch=self.epoch,
                lr=lr,
                retryable=False,
            )
        if not math.isfinite(train_loss):
            reason = f"{'NaN' if math.isnan(train_loss) else 'infinite'} training loss at epoch {self.epoch}"
        elif factor is not None and train_loss > factor * initial:
            reason = (
                f"training loss {train_loss:.3g} at epoch {self.epoch}, {train_loss / initial:.3g} x the untrained "
                f"model's {initial:.3g} (divergence_factor {factor:g})"
            )
        else:
            return
        raise TrainingDivergedError(
            f"training diverged (seed {self.seed}, lr {lr:g}): {reason}; lower training.lr or check the labels",
            seed=self.seed,
            reason=reason,
            epoch=self.epoch,
            lr=lr,
        )

    def weights_finite(self) -> bool:
        """Whether every parameter and buffer of the current weights is finite."""
        return all(bool(torch.isfinite(v).all()) for v in self.module.state_dict().values() if v.is_floating_point())

    def errors(self, idx, batch_size: int = 64) -> FrameErrors:
        """Per-structure errors of the current weights on frames ``idx`` (see :class:`FrameErrors`)."""
        idx = np.asarray(idx, dtype=int)
        self.module.eval()
        cols = {k: [] for k in ("loss", "force_error", "energy_error_per_atom", "force_sq_sum", "n_force_components")}
        for b in range(0, len(idx), batch_size):
            sel = idx[b : b + batch_size]
            batch = collate_inputs([self.inputs[k] for k in sel], self.device)
            out = self.module(batch)
            with torch.no_grad():
                f_true = torch.cat([self.forces[k] for k in sel])
                e_true = self.energies[sel]
                n_atoms = batch[P.n_atoms]
                idx_m = batch[P.idx_m]
                df = out[P.forces].detach() - f_true
                norm = torch.zeros(len(sel), dtype=df.dtype, device=df.device).index_add(0, idx_m, df.norm(dim=1))
                sq = torch.zeros(len(sel), dtype=df.dtype, device=df.device).index_add(0, idx_m, (df**2).sum(dim=1))
                cols["loss"].append(
                    _per_frame_loss(out, batch, e_true, f_true, self.training.rho).detach().cpu().double().numpy()
                )
                cols["force_error"].append((norm / n_atoms.to(df.dtype)).cpu().double().numpy())
                cols["energy_error_per_atom"].append(
                    ((out[P.energy].detach() - e_true) / n_atoms).cpu().double().numpy()
                )
                cols["force_sq_sum"].append(sq.cpu().double().numpy())
                cols["n_force_components"].append((3 * n_atoms).cpu().numpy())
        if not len(idx):
            return FrameErrors(*(np.zeros(0) for _ in cols))
        return FrameErrors(**{k: np.concatenate(v) for k, v in cols.items()})

    def restore_best(self) -> dict | None:
        """Load the best-validation weights (if any); return that epoch's curve row."""
        if self.best["state"] is not None:
            self.module.load_state_dict(self.best["state"])
        return self.best["row"]

    def blob(self, extra: dict) -> bytes:
        """The current weights serialised by :func:`al_flows.potential.model.member_to_bytes`."""
        self.module.eval()
        return member_to_bytes(self.module, self.model_settings, extra)


def train_member(
    frames: list[Atoms],
    model: ModelSettings,
    training: TrainingSettings,
    seed: int,
    elements: list[str] | None = None,
    member: int | None = None,
    log=None,
) -> TrainedMember:
    """Train one member on labelled frames (labels from each frame's calculator: energy eV,
    forces eV/A). ``seed`` fixes the initial weights, the train/validation split and the
    shuffling. ``elements`` default: those present in ``frames``. ``member`` (the ensemble index)
    only names the member in messages; ``log(msg)`` gets a line per diverged attempt.

    A diverged attempt (see the module doc) is retried from scratch with the learning rate times
    ``training.retry_lr_factor``, up to ``training.max_retries`` times; then
    :class:`TrainingDivergedError` is raised."""
    lr = float(training.lr)
    attempts: list[dict] = []
    who = f"member {member} (seed {int(seed)})" if member is not None else f"member with seed {int(seed)}"
    for attempt in range(training.max_retries + 1):
        used = training if attempt == 0 else training.model_copy(update={"lr": lr})
        trainer = Trainer(frames, model, used, seed, elements)
        train_idx, val_idx = split_indices(len(frames), training.val_fraction, trainer.rng)
        trainer.fit_reference(train_idx)
        try:
            rows = trainer.run_epochs(train_idx, val_idx, training.epochs)
            best_row = trainer.restore_best()
            if not trainer.weights_finite():
                reason = f"non-finite weights after epoch {trainer.epoch}"
                raise TrainingDivergedError(reason, seed=int(seed), reason=reason, epoch=trainer.epoch, lr=lr)
        except TrainingDivergedError as err:
            attempts.append({"lr": lr, "epoch": int(err.epoch), "reason": err.reason})
            if not err.retryable or attempt == training.max_retries:
                raise _diverged(who, int(seed), member, attempts) from None
            if log is not None:
                log(
                    f"{who} diverged at lr {lr:g} ({err.reason}); retrying from scratch at lr {lr * training.retry_lr_factor:g}"
                )
            lr = float(f"{lr * training.retry_lr_factor:.12g}")  # 0.01, not 0.010000000000000002
            continue
        break
    curve = [{k: v for k, v in row.items() if k != "n_train"} for row in rows]
    if best_row is not None:
        best_epoch = int(best_row["epoch"])
        val_f, val_e = float(best_row["val_force_rmse"]), float(best_row["val_energy_rmse_per_atom"])
    else:
        best_epoch, val_f, val_e = training.epochs, float("nan"), float("nan")
    trainer.module.to("cpu")
    extra = {
        "seed": int(seed),
        "n_train": int(len(train_idx)),
        "n_val": int(len(val_idx)),
        "best_epoch": best_epoch,
        "val_force_rmse": val_f,
        "val_energy_rmse_per_atom": val_e,
        "training": training.model_dump(),
        "lr": lr,
        "retries": attempts,
    }
    return TrainedMember(
        blob=trainer.blob(extra),
        seed=int(seed),
        n_train=int(len(train_idx)),
        n_val=int(len(val_idx)),
        curve=curve,
        best_epoch=best_epoch,
        val_force_rmse=val_f,
        val_energy_rmse_per_atom=val_e,
        train_ids=[trainer.ids[k] for k in train_idx],
        val_ids=[trainer.ids[k] for k in val_idx],
        lr=lr,
        retries=attempts,
    )


def _diverged(who: str, seed: int, member: int | None, attempts: list[dict]) -> TrainingDivergedError:
    """The one-line error of a member whose every attempt diverged."""
    last = attempts[-1]
    tried = ", ".join(f"{a['lr']:g}" for a in attempts)
    if len(attempts) == 1 and "untrained model" in last["reason"]:
        advice = "no learning rate helps: check the labels (energies, forces) for NaN/inf"
    else:
        advice = (
            f"lower training.lr (below {min(a['lr'] for a in attempts):g}), raise training.max_retries, "
            f"or check the labels for wrong or huge energies/forces"
        )
    what = "; ".join(f"at lr {a['lr']:g}: {a['reason']}" for a in attempts)
    n = len(attempts)
    return TrainingDivergedError(
        f"{who} diverged in {n} attempt{'s' if n > 1 else ''} (learning rates tried: {tried}): {what}; {advice}",
        seed=seed,
        member=member,
        reason=last["reason"],
        epoch=last["epoch"],
        lr=last["lr"],
        retryable=False,
        attempts=attempts,
    )
