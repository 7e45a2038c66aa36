"""Warm-started training: a member that starts from the weights of an earlier member (in active
learning the same member of the round before) and trains ``TrainingSettings.epochs_warm`` epochs
on the grown data set, as the DP-GEN loop of Zhang et al. (docs/methods.md) can in its software
(dpgen's ``training_init_model``, dpgen2's init-model training) and as the active sampling of
Sprueill et al. trains one model on.

What carries over, and why:

* **Every weight and buffer**, the energy reference included. A member's normalisation is its
  :class:`~al_flows.potential.schnet.EnergyReference`: per-element energies fitted by least squares
  and an energy scale (the RMS force component), both from its training frames. The network learned
  its output relative to them, so refitting them on the grown data set would move every prediction
  before the first step; they are kept as the earlier member had them, and refitted whenever a member
  trains from scratch (in active learning round 0 and every ``retrain_every``-th round), so they follow
  the data set as it grows. A warm-started member's weights before its first epoch are the earlier
  member's, bit for bit.
* **The split.** The earlier member's validation frames stay validation frames and its training frames
  training frames; only the frames it never saw are split (``val_fraction`` of them held out, drawn from
  the member's seed). So a warm-started member never validates on a frame its weights were trained on,
  and its best epoch and validation error stay honest.

What restarts: **the optimiser and the learning-rate schedule**. A fresh Adam (no moment estimates)
starts at ``TrainingSettings.lr`` with a fresh plateau schedule. The earlier member's optimiser state
is not stored (it would double a member's size in the store), and its moment estimates belong to the
loss of the smaller data set; dpgen2 restarts the schedule of a model it trains on in the same way
(its ``init_model_start_lr``). The divergence check applies as to any member: a warm start that
diverges is retried from the same earlier weights at a lower learning rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from al_flows.potential.model import ModelSettings, member_elements
from al_flows.potential.training_data import split_indices
from al_flows.potential.weights import member_from_bytes

__all__ = ["WarmStart", "warm_split"]


@dataclass(frozen=True)
class WarmStart:
    """Where a warm-started member starts: the earlier member's weights file ``blob``
    (:func:`al_flows.potential.weights.member_to_bytes`), the frame ids it trained and validated on,
    the epochs to train (``TrainingSettings.epochs_warm``) and its ``model_id`` (recorded, may be '')."""

    blob: bytes
    train_ids: tuple[str, ...]
    val_ids: tuple[str, ...]
    epochs: int
    model_id: str = ""

    def weights(self) -> tuple[dict[str, torch.Tensor], ModelSettings, list[int]]:
        """The earlier member's state dict (CPU tensors), model settings and atomic numbers."""
        module, settings, _ = member_from_bytes(self.blob)
        zs = member_elements(module)
        return {k: v.detach().clone() for k, v in module.state_dict().items()}, settings, zs

    def mismatch(self, model: ModelSettings, zs: list[int]) -> str:
        """Why a member of ``model`` for the atomic numbers ``zs`` cannot start from these weights
        ('' when it can): other model settings or other elements."""
        _, settings, previous = self.weights()
        if settings != model:
            old, new = settings.model_dump(), model.model_dump()
            diff = ", ".join(f"{k} {old[k]} -> {new[k]}" for k in sorted(old) if old[k] != new.get(k))
            return f"the model settings differ from the previous member's ({diff})"
        if list(previous) != list(zs):
            return f"the elements differ from the previous member's ({previous} -> {list(zs)})"
        return ""


def warm_split(
    ids: list[str], warm: WarmStart, val_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices into ``ids`` (sorted): the earlier member's validation frames validate, its
    training frames train, and the frames it never saw are split with :func:`split_indices`
    (``val_fraction`` of them validate; ``rng`` draws which)."""
    train_before, val_before = set(warm.train_ids), set(warm.val_ids)
    new = np.array([k for k, i in enumerate(ids) if i not in train_before and i not in val_before], dtype=int)
    new_train, new_val = split_indices(len(new), val_fraction, rng)
    train = [k for k, i in enumerate(ids) if i in train_before] + new[new_train].tolist()
    val = [k for k, i in enumerate(ids) if i in val_before] + new[new_val].tolist()
    if not train:
        raise ValueError("warm start: no training frame left (the previous member's training frames are gone)")
    return np.sort(np.array(train, dtype=int)), np.sort(np.array(val, dtype=int))
