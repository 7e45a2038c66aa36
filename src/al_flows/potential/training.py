"""Training one ensemble member (any ``ModelSettings.kind``) with a plain torch loop (settings of
Sprueill et al.; docs/methods.md).

Loss per structure, averaged over the batch::

    L = rho * (E - E_hat)^2 + (1/N) * sum_k |F_k - F_hat_k|^2

with E the TOTAL energy (eV, not per atom, as in the paper), N the atoms of the structure
and F the force vectors (eV/Angstrom); the force term is the mean squared force-vector
error, i.e. 3x the per-component MSE. Adam, ReduceLROnPlateau on the validation loss,
best-validation weights kept (the last ones when there is no validation set).

Speed: neighbour lists are computed once per frame (matscipy) and kept in the process-wide
cache of :func:`al_flows.potential.inputs.frame_inputs` (keyed by a hash of numbers, positions, cell, pbc
and cutoff), so the members of a round and later rounds reuse them and a moved atom gets a new
list; batches are collated from these tensors (about 0.1 ms for 16 32-atom frames, under 0.5 % of
a CPU step, so batches are not pre-collated) and the epoch loss is summed on the device (no
per-step host synchronisation), so an epoch is model time.

Mixed precision (``TrainingSettings.amp``, CUDA only): the representation (SchNet's filter networks
and continuous-filter convolutions; PaiNN's or SO3net's blocks) runs under
``torch.autocast(dtype=torch.bfloat16)`` and returns float32 features; the atomwise energy network,
the per-structure sum, the energy reference (float64), forces by autograd and the loss stay in
float32/float64. bfloat16 has float32's exponent range, so no gradient scaler is needed for the
force (double) backward; a GPU without bfloat16 trains in float32. On other devices ``amp`` is ignored with a warning.

Divergence (``TrainingSettings.divergence_factor``, ``max_retries``, ``retry_lr_factor``;
:mod:`al_flows.potential.divergence`): after each epoch :meth:`Trainer.run_epochs` checks the
epoch's mean training loss (the device sum it reads once per epoch anyway, so the check adds no
synchronisation): a non-finite loss (NaN/inf in any batch makes the sum non-finite), or one above
``divergence_factor`` times the loss of the untrained model (the first batch of the first epoch,
before any update), raises :class:`TrainingDivergedError`.
:func:`train_member` then trains the member again from the start (same seed: same initial weights,
split and batch order; a warm-started member from the same earlier weights) with the learning rate
multiplied by ``retry_lr_factor``, up to
``max_retries`` times, and records the attempts (:attr:`TrainedMember.retries`) and the learning
rate finally used (:attr:`TrainedMember.lr`); when every attempt diverges it raises
:class:`TrainingDivergedError` with the learning rates tried. A non-finite loss of the untrained
model is not retried (no learning rate helps: the labels or the energy reference are not finite),
and weights with a NaN or inf are never serialised. A run that does not diverge is the same,
bit for bit, as without these checks.

The Trainer's parts: its frames as tensors (:mod:`al_flows.potential.training_data`), the optimiser,
schedule and mixed precision (:mod:`al_flows.potential.optimisation`), the divergence check
(:mod:`al_flows.potential.divergence`), the loss and errors (:mod:`al_flows.potential.evaluation`) and
the best weights (:mod:`al_flows.potential.best_weights`). A member may start from an earlier
member's weights instead of from scratch (:mod:`al_flows.potential.warm_start`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import numpy as np
import torch
from ase import Atoms

from al_flows.frames.checks import check_training_frames
from al_flows.potential.best_weights import BestWeights
from al_flows.potential.device import resolve_device
from al_flows.potential.divergence import Divergence, DivergenceGuard, DivergenceKind, diverged_advice
from al_flows.potential.evaluation import FrameErrors, frame_errors
from al_flows.potential.evaluation import per_frame_loss as _per_frame_loss  # the loss of the training step
from al_flows.potential.model import ModelSettings, TrainingSettings, build_member, energy_reference
from al_flows.potential.optimisation import Optimisation, amp_dtype
from al_flows.potential.training_data import TrainingData, member_zs, split_indices
from al_flows.potential.warm_start import WarmStart, warm_split
from al_flows.potential.weights import member_to_bytes

__all__ = ["TrainedMember", "Trainer", "TrainingDivergedError", "train_member"]


class TrainingDivergedError(RuntimeError):
    """Training diverged (non-finite loss or weights, or an exploding loss); the message is one line
    saying which member/seed, what diverged, the learning rates tried and what to do.

    ``seed``, ``member`` (None when unknown), ``epoch`` (of the last divergence), ``reason`` (of the
    last attempt), ``kind`` (its :class:`~al_flows.potential.divergence.DivergenceKind`), ``retryable``
    (False when a lower learning rate cannot help) and ``attempts`` (one dict per diverged attempt: lr,
    epoch, reason)."""

    def __init__(
        self,
        message: str,
        *,
        seed: int,
        reason: str,
        epoch: int,
        lr: float,
        kind: DivergenceKind,
        retryable: bool = True,
        member: int | None = None,
        attempts: list[dict] | None = None,
    ):
        super().__init__(message)
        self.seed, self.member, self.reason, self.epoch, self.lr = seed, member, reason, epoch, lr
        self.kind = kind
        self.retryable = retryable
        self.attempts = list(attempts or [{"lr": lr, "epoch": epoch, "reason": reason}])

    @classmethod
    def of(cls, divergence: Divergence, seed: int) -> TrainingDivergedError:
        """The error of one diverged run (seed ``seed``)."""
        return cls(
            divergence.message(seed),
            seed=seed,
            reason=divergence.reason,
            epoch=divergence.epoch,
            lr=divergence.lr,
            kind=divergence.kind,
            retryable=divergence.kind.retryable,
        )


@dataclass
class TrainedMember:
    """A trained member: ``blob`` (see :func:`al_flows.potential.weights.member_to_bytes`) and its record.

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


class Trainer:
    """One member (any kind) and its optimiser over a fixed list of labelled frames.

    Neighbour lists of all frames are computed once (and reused from the process-wide cache
    when another Trainer already built them for the same frames); :meth:`run_epochs` trains on any subset
    of frame indices, so the training set can change between calls while the weights, the
    Adam state and the learning-rate schedule carry on (active sampling, docs/methods.md).
    Randomness (initial weights, batch order) comes from ``seed`` only.
    """

    _amp_device_types = ("cuda",)  # tests add "cpu" to run the autocast path on CPU

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
        self.device = torch.device(resolve_device(training.device))
        self.data = TrainingData(frames, model.cutoff, self.device, elements)
        self.rng = np.random.default_rng(self.seed)
        self.module = build_member(model, self.data.zs, self.seed)
        self.optimisation = Optimisation(training, amp_dtype(training.amp, self.device, self._amp_device_types))
        self.guard = DivergenceGuard(training.divergence_factor)
        self.best = BestWeights()
        self.epoch = 0
        self.n_steps = 0

    # the frames' labels and inputs (:class:`TrainingData`) and the optimiser's state, by their old names
    @property
    def inputs(self) -> list[dict[str, torch.Tensor]]:
        """Model inputs of every frame (TrainingData.inputs)."""
        return self.data.inputs

    @inputs.setter
    def inputs(self, value: list[dict[str, torch.Tensor]]) -> None:
        self.data.inputs = value

    @property
    def energies_np(self) -> np.ndarray:
        """Reference energies, eV (NumPy)."""
        return self.data.energies_np

    @energies_np.setter
    def energies_np(self, value: np.ndarray) -> None:
        self.data.energies_np = value

    @property
    def zs(self) -> list[int]:
        """Atomic numbers seen in the training frames."""
        return self.data.zs

    @property
    def energies(self) -> torch.Tensor:
        """Reference energies, eV (tensor)."""
        return self.data.energies

    @property
    def forces(self) -> list[torch.Tensor]:
        """Reference forces per frame, eV/Angstrom."""
        return self.data.forces

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype when mixed precision is on, else None."""
        return self.optimisation.amp_dtype

    @property
    def params(self) -> list[torch.nn.Parameter]:
        """The parameters being optimised."""
        return self.optimisation.params

    @property
    def optimizer(self) -> torch.optim.Adam | None:
        """The Adam optimiser (None before the first epoch)."""
        return self.optimisation.optimizer

    @property
    def scheduler(self) -> torch.optim.lr_scheduler.ReduceLROnPlateau | None:
        """The learning-rate scheduler (None before the first epoch)."""
        return self.optimisation.scheduler

    def _precision(self) -> AbstractContextManager[None]:
        """Context for the training forward: bfloat16 autocast of the representation, or nothing."""
        return self.optimisation.precision(self.module, self.device.type)

    def fit_reference(self, train_idx) -> None:
        """Set the energy reference from the frames ``train_idx`` (per-element energies by least
        squares, scale = RMS force component) and create the optimiser; call once, before training."""
        train_idx = np.asarray(train_idx, dtype=int)
        ref = energy_reference(self.module)
        coef, f_rms = self.data.reference(train_idx)
        atomref = torch.zeros_like(ref.atomref)
        atomref[torch.tensor(self.data.zs)] = torch.tensor(coef, dtype=atomref.dtype)
        ref.atomref.copy_(atomref)
        ref.scale.fill_(f_rms if f_rms > 1e-6 else 1.0)
        self.module.to(self.device)
        self.optimisation.start(self.module)
        self.guard.reset()

    def start_from(self, state: dict[str, torch.Tensor]) -> None:
        """Load ``state`` (an earlier member's weights and buffers, its energy reference included: a warm
        start, :mod:`al_flows.potential.warm_start`) and create the optimiser; instead of :meth:`fit_reference`."""
        self.module.load_state_dict(state)
        self.module.to(self.device)
        self.optimisation.start(self.module)
        self.guard.reset()

    def steps_per_epoch(self, n_train: int) -> int:
        """Optimiser steps of one epoch over ``n_train`` frames."""
        return -(-int(n_train) // self.training.batch_size)

    def run_epochs(self, train_idx, val_idx, n_epochs: int) -> list[dict]:
        """Train ``n_epochs`` epochs on frames ``train_idx``; after each, evaluate ``val_idx`` and
        step the plateau schedule (on the training loss without validation frames). Returns the
        curve rows (epoch, train_loss, val_loss, val_force_rmse, val_energy_rmse_per_atom, lr,
        n_train); the best-validation weights so far are kept (see :meth:`restore_best`)."""
        if not self.optimisation.started:
            raise RuntimeError("call fit_reference(train_idx) before run_epochs")
        train_idx, val_idx = np.asarray(train_idx, dtype=int), np.asarray(val_idx, dtype=int)
        if not len(train_idx):
            raise ValueError("train_idx is empty")
        rows = []
        for _ in range(int(n_epochs)):
            self.epoch += 1
            lr = self.optimisation.lr
            train_loss = self._train_epoch(train_idx)
            divergence = self.guard.check(train_loss, lr, self.epoch)
            if divergence is not None:
                raise TrainingDivergedError.of(divergence, self.seed)
            row = {
                "epoch": self.epoch,
                "train_loss": train_loss,
                "val_loss": None,
                "val_force_rmse": None,
                "val_energy_rmse_per_atom": None,
                "lr": lr,
                "n_train": int(len(train_idx)),
            }
            if len(val_idx):
                s = self.errors(val_idx).summary()
                row.update(
                    val_loss=s["loss"],
                    val_force_rmse=s["force_rmse"],
                    val_energy_rmse_per_atom=s["energy_rmse_per_atom"],
                )
                self.optimisation.schedule(s["loss"])
                self.best.offer(s["loss"], self.epoch, self.module, row)
            else:
                self.optimisation.schedule(train_loss)
            rows.append(row)
        return rows

    def _train_epoch(self, train_idx: np.ndarray) -> float:
        """One epoch over the frames ``train_idx`` in a random order; its mean training loss."""
        bs, n_train = self.training.batch_size, len(train_idx)
        self.module.train()
        order = train_idx[self.rng.permutation(n_train)]
        # summed on the device in float64 (same numbers as a Python float sum), read once per epoch
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        with self._precision():
            for b in range(0, n_train, bs):
                sel = order[b : b + bs]
                batch, e_true, f_true = self.data.batch(sel)
                out = self.module(batch)
                loss = _per_frame_loss(out, batch, e_true, f_true, self.training.rho).mean()
                self.guard.record(loss)
                self.optimisation.step(loss)
                self.n_steps += 1
                loss_sum += loss.detach().double() * len(sel)
        return float(loss_sum) / n_train

    def weights_finite(self) -> bool:
        """Whether every parameter and buffer of the current weights is finite."""
        return all(bool(torch.isfinite(v).all()) for v in self.module.state_dict().values() if v.is_floating_point())

    def errors(self, idx, batch_size: int = 64) -> FrameErrors:
        """Per-structure errors of the current weights on frames ``idx`` (see :class:`FrameErrors`)."""
        return frame_errors(self.module, self.data, idx, self.training.rho, batch_size)

    def restore_best(self) -> dict | None:
        """Load the best-validation weights (if any); return that epoch's curve row."""
        return self.best.restore(self.module)

    def blob(self, extra: dict) -> bytes:
        """The current weights serialised by :func:`al_flows.potential.weights.member_to_bytes`."""
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
    warm: WarmStart | None = None,
) -> TrainedMember:
    """Train one member on labelled frames (labels from each frame's calculator: energy eV,
    forces eV/A). ``seed`` fixes the initial weights, the train/validation split and the
    shuffling. ``elements`` default: those present in ``frames``. ``member`` (the ensemble index)
    only names the member in messages; ``log(msg)`` gets a line per diverged attempt. ``warm``: start
    from an earlier member's weights and train ``warm.epochs`` epochs (:mod:`al_flows.potential.warm_start`;
    ValueError when its model settings or elements are not this member's), else from scratch for
    ``training.epochs``.

    A diverged attempt (see the module doc) is retried from the start with the learning rate times
    ``training.retry_lr_factor``, up to ``training.max_retries`` times; then
    :class:`TrainingDivergedError` is raised."""
    why = "" if warm is None else warm.mismatch(model, member_zs(frames, elements))
    if why:
        raise ValueError(f"warm: {why}; train this member from scratch (warm=None)")
    lr = float(training.lr)
    attempts: list[dict] = []
    who = f"member {member} (seed {int(seed)})" if member is not None else f"member with seed {int(seed)}"
    for attempt in range(training.max_retries + 1):
        used = training if attempt == 0 else training.model_copy(update={"lr": lr})
        trainer = Trainer(frames, model, used, seed, elements)
        train_idx, val_idx, n_epochs = _begin(trainer, training, warm)
        try:
            rows = trainer.run_epochs(train_idx, val_idx, n_epochs)
            best_row = trainer.restore_best()
            if not trainer.weights_finite():
                reason = f"non-finite weights after epoch {trainer.epoch}"
                divergence = Divergence(DivergenceKind.NON_FINITE_WEIGHTS, reason, trainer.epoch, lr)
                raise TrainingDivergedError.of(divergence, int(seed))
        except TrainingDivergedError as err:
            attempts.append({"lr": lr, "epoch": int(err.epoch), "reason": err.reason})
            if not err.retryable or attempt == training.max_retries:
                raise _diverged(who, int(seed), member, attempts, err.kind) from None
            if log is not None:
                retry_lr = lr * training.retry_lr_factor
                again = "from scratch" if warm is None else "from the previous member's weights"
                log(f"{who} diverged at lr {lr:g} ({err.reason}); retrying {again} at lr {retry_lr:g}")
            lr = float(f"{lr * training.retry_lr_factor:.12g}")  # 0.01, not 0.010000000000000002
            continue
        break
    extra = {} if warm is None else {"start": "warm", "warm_start_from": warm.model_id}
    done = (train_idx, val_idx, n_epochs)
    return _trained_member(trainer, rows, best_row, done, training, int(seed), lr, attempts, extra)


def _begin(trainer: Trainer, training: TrainingSettings, warm: WarmStart | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Split the trainer's frames and set its starting weights: from scratch (fit the energy reference on
    the training frames; ``training.epochs``) or from ``warm`` (its weights and split; ``warm.epochs``).
    Returns (train indices, validation indices, epochs to train)."""
    if warm is None:
        train_idx, val_idx = split_indices(len(trainer.data.ids), training.val_fraction, trainer.rng)
        trainer.fit_reference(train_idx)
        return train_idx, val_idx, training.epochs
    train_idx, val_idx = warm_split(trainer.data.ids, warm, training.val_fraction, trainer.rng)
    trainer.start_from(warm.weights()[0])
    return train_idx, val_idx, warm.epochs


def _trained_member(
    trainer: Trainer,
    rows: list[dict],
    best_row: dict | None,
    done: tuple[np.ndarray, np.ndarray, int],
    training: TrainingSettings,
    seed: int,
    lr: float,
    attempts: list[dict],
    start: dict,
) -> TrainedMember:
    """The record of a member trained with learning rate ``lr`` after the diverged ``attempts`` (``done``:
    its train and validation indices and the epochs it trained; ``start``: what its weights file records
    of a warm start, {} from scratch)."""
    train_idx, val_idx, n_epochs = done
    curve = [{k: v for k, v in row.items() if k != "n_train"} for row in rows]
    if best_row is not None:
        best_epoch = int(best_row["epoch"])
        val_f, val_e = float(best_row["val_force_rmse"]), float(best_row["val_energy_rmse_per_atom"])
    else:
        best_epoch, val_f, val_e = n_epochs, float("nan"), float("nan")
    trainer.module.to("cpu")
    extra = {
        "seed": seed,
        "n_train": int(len(train_idx)),
        "n_val": int(len(val_idx)),
        "best_epoch": best_epoch,
        "val_force_rmse": val_f,
        "val_energy_rmse_per_atom": val_e,
        "training": training.model_dump(),
        "lr": lr,
        "retries": attempts,
        **start,
    }
    return TrainedMember(
        blob=trainer.blob(extra),
        seed=seed,
        n_train=int(len(train_idx)),
        n_val=int(len(val_idx)),
        curve=curve,
        best_epoch=best_epoch,
        val_force_rmse=val_f,
        val_energy_rmse_per_atom=val_e,
        train_ids=[trainer.data.ids[k] for k in train_idx],
        val_ids=[trainer.data.ids[k] for k in val_idx],
        lr=lr,
        retries=attempts,
    )


def _diverged(
    who: str, seed: int, member: int | None, attempts: list[dict], kind: DivergenceKind
) -> TrainingDivergedError:
    """The one-line error of a member whose every attempt diverged, the last by ``kind``."""
    last = attempts[-1]
    tried = ", ".join(f"{a['lr']:g}" for a in attempts)
    advice = diverged_advice(kind, [a["lr"] for a in attempts])
    what = "; ".join(f"at lr {a['lr']:g}: {a['reason']}" for a in attempts)
    n = len(attempts)
    return TrainingDivergedError(
        f"{who} diverged in {n} attempt{'s' if n > 1 else ''} (learning rates tried: {tried}): {what}; {advice}",
        seed=seed,
        member=member,
        reason=last["reason"],
        epoch=last["epoch"],
        lr=last["lr"],
        kind=kind,
        retryable=False,
        attempts=attempts,
    )
