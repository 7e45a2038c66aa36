"""Divergence of a training run: its kinds, the check after each epoch, and the advice of the final error.

After each epoch the mean training loss (a host float) is compared with the loss of the untrained model
(the first batch of the first epoch, before any update; read from the device once, at the first check):
a non-finite loss, or one above ``divergence_factor`` times the untrained loss, has diverged. A
non-finite untrained loss is a divergence no learning rate helps (the labels or the energy reference
are not finite). Losses are those of :func:`al_flows.potential.evaluation.per_frame_loss` (eV^2 and
eV^2/Angstrom^2 mixed with rho).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import torch

__all__ = ["DivergenceKind", "Divergence", "DivergenceGuard", "diverged_advice"]


class DivergenceKind(Enum):
    """What diverged."""

    UNTRAINED_MODEL = "non-finite loss of the untrained model"
    NON_FINITE_LOSS = "non-finite training loss"
    EXPLODING_LOSS = "training loss above divergence_factor times the untrained model's"
    NON_FINITE_WEIGHTS = "non-finite weights"

    @property
    def retryable(self) -> bool:
        """Whether training again at a lower learning rate can help."""
        return self is not DivergenceKind.UNTRAINED_MODEL


@dataclass(frozen=True)
class Divergence:
    """One diverged epoch: ``kind``, ``reason`` (one line, as attempt records keep it), ``epoch`` and ``lr``."""

    kind: DivergenceKind
    reason: str
    epoch: int
    lr: float

    def message(self, seed: int) -> str:
        """The one-line message of the run's error, with what to do."""
        if self.kind is DivergenceKind.UNTRAINED_MODEL:
            return (
                f"training diverged (seed {seed}): {self.reason}; no learning rate helps: check the labels "
                f"(energies, forces) for NaN/inf"
            )
        if self.kind is DivergenceKind.NON_FINITE_WEIGHTS:
            return self.reason
        return f"training diverged (seed {seed}, lr {self.lr:g}): {self.reason}; lower training.lr or check the labels"


class DivergenceGuard:
    """The loss of the untrained model of a run and the check of each epoch's loss against it."""

    def __init__(self, factor: float | None) -> None:
        self.factor = factor
        self.first: torch.Tensor | None = None  # loss of the untrained model (first batch), a device scalar until read
        self.initial_loss: float | None = None

    def reset(self) -> None:
        """Forget the untrained loss (a new run starts)."""
        self.first = None
        self.initial_loss = None

    def record(self, loss: torch.Tensor) -> None:
        """Keep the first batch loss of the run (no host synchronisation)."""
        if self.first is None:
            self.first = loss.detach()

    def check(self, train_loss: float, lr: float, epoch: int) -> Divergence | None:
        """The divergence of an epoch with mean training loss ``train_loss``, or None (host floats only:
        the untrained loss is read once, here)."""
        if self.initial_loss is None:
            if self.first is None:
                raise RuntimeError("check before any batch was recorded")
            self.initial_loss = float(self.first)
        initial, factor = self.initial_loss, self.factor
        if not math.isfinite(initial):
            reason = f"non-finite loss ({initial}) of the untrained model, before any update"
            return Divergence(DivergenceKind.UNTRAINED_MODEL, reason, epoch, lr)
        if not math.isfinite(train_loss):
            reason = f"{'NaN' if math.isnan(train_loss) else 'infinite'} training loss at epoch {epoch}"
            return Divergence(DivergenceKind.NON_FINITE_LOSS, reason, epoch, lr)
        if factor is not None and train_loss > factor * initial:
            reason = (
                f"training loss {train_loss:.3g} at epoch {epoch}, {train_loss / initial:.3g} x the untrained "
                f"model's {initial:.3g} (divergence_factor {factor:g})"
            )
            return Divergence(DivergenceKind.EXPLODING_LOSS, reason, epoch, lr)
        return None


def diverged_advice(kind: DivergenceKind, lrs: list[float]) -> str:
    """What to do about a member whose attempts at the learning rates ``lrs`` all diverged, the last by ``kind``."""
    if len(lrs) == 1 and kind is DivergenceKind.UNTRAINED_MODEL:
        return "no learning rate helps: check the labels (energies, forces) for NaN/inf"
    return (
        f"lower training.lr (below {min(lrs):g}), raise training.max_retries, "
        f"or check the labels for wrong or huge energies/forces"
    )
