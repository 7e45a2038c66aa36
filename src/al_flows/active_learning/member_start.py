"""How a round's member starts (``training.warm_start``; docs/loop.md): from the weights of the same
member of the round before (warm, :mod:`al_flows.potential.warm_start`), or from scratch, and why.

Every member trains from scratch when ``training.warm_start`` is off, in round 0, and in every
``training.retrain_every``-th round (a full retrain keeps the members diverse and stops them
drifting); a member also trains from scratch when it has no member of the round before (a campaign
with more members than that round), or when what it would continue from was made otherwise: other
model settings or elements (read from the previous member's weights file) or labels from other
labellers or label settings (its TrainingDocument's ``labels_from``).
"""

from __future__ import annotations

from ase import Atoms

from al_flows.potential.model import ModelSettings, TrainingSettings
from al_flows.potential.training_data import member_zs
from al_flows.potential.warm_start import WarmStart
from al_flows.potential.weights import weights_bytes
from al_flows.workflow.jobs import field, field_or_none

__all__ = ["scratch_round", "labels_from", "warm_start_of"]


def scratch_round(training: TrainingSettings, round_: int) -> str:
    """Why every member of round ``round_`` trains from scratch ('' when they start warm)."""
    if not training.warm_start:
        return "training.warm_start is off"
    if round_ == 0:
        return "round 0"
    if round_ % training.retrain_every == 0:
        return f"a full retrain every {training.retrain_every} rounds (training.retrain_every)"
    return ""


def labels_from(frames: list[Atoms]) -> list[str]:
    """What labelled ``frames``, sorted: each frame's label settings id (``ase:emt:<hash>``, which names
    the labeller and hashes every setting that defines a label), else its labeller's name."""
    return sorted({str(a.info.get("label_settings") or a.info.get("labeller", "")) for a in frames})


def warm_start_of(
    previous, training: TrainingSettings, model: ModelSettings, frames: list[Atoms], elements: list[str] | None
) -> tuple[WarmStart | None, str]:
    """(the warm start from ``previous``, '') or (None, why the member trains from scratch).
    ``previous``: the TrainingDocument of the same member of the round before (None: there is none);
    ``model``, ``frames`` and ``elements``: what the member trains now."""
    if previous is None:
        return None, "no member of the round before has this index"
    before = field_or_none(previous, "labels_from")
    now = labels_from(frames)
    if not before:
        return None, "the previous member records no labellers (trained by an earlier version)"
    if list(before) != now:
        return (
            None,
            f"the labels come from other labellers or label settings than the previous member's ({before} -> {now})",
        )
    warm = WarmStart(
        blob=weights_bytes(field(previous, "model_blob")),
        train_ids=tuple(field(previous, "train_ids")),
        val_ids=tuple(field(previous, "val_ids")),
        epochs=training.epochs_warm,
        model_id=str(field(previous, "model_id")),
    )
    why = warm.mismatch(model, member_zs(frames, elements))
    return (None, why) if why else (warm, "")
