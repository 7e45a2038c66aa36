"""Warm-started members (al_flows.potential.warm_start): a member starts from an earlier member's
weights exactly, keeps its split, trains warm_epochs epochs, and is reproducible bit for bit on CPU,
also when a first attempt was killed in the middle; and the ensemble-diversity figure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from al_flows.active_learning.member_start import labels_from, scratch_round, warm_start_of
from al_flows.potential import training as training_module
from al_flows.potential.deviation import pairwise_force_disagreement
from al_flows.potential.model import ModelSettings, TrainingSettings
from al_flows.potential.training import train_member
from al_flows.potential.warm_start import WarmStart, warm_split
from al_flows.potential.weights import member_from_bytes, weights_text
from helpers import emt_labelled_multilayer

MODEL = ModelSettings(n_atom_basis=16, n_interactions=1, n_rbf=10, cutoff=4.0)
TRAINING = TrainingSettings(epochs=3, batch_size=4, lr=2e-3, val_fraction=0.25, warm_start=True, warm_epochs=2)


@pytest.fixture(scope="module")
def frames():
    out = []
    for s in range(10):
        a = emt_labelled_multilayer(s)
        a.info.update(frame_id=f"f{s}", labeller="ase:emt")
        out.append(a)
    return out


@pytest.fixture(scope="module")
def first(frames):
    """A member trained from scratch on the first 6 frames."""
    return train_member(frames[:6], MODEL, TRAINING, seed=1, elements=["Cu", "Ni"])


def _warm(member, epochs: int = 2) -> WarmStart:
    return WarmStart(member.blob, tuple(member.train_ids), tuple(member.val_ids), epochs, model_id="first")


def _state(blob: bytes) -> dict[str, torch.Tensor]:
    return member_from_bytes(blob)[0].state_dict()


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_warm_member_starts_from_the_earlier_weights_exactly(frames, first, monkeypatch):
    """Before its first epoch every parameter and buffer (the energy reference included) is the earlier
    member's, bit for bit; it then trains warm_epochs epochs and keeps the earlier split."""
    seen = []
    run_epochs = training_module.Trainer.run_epochs

    def spy(self, train_idx, val_idx, n_epochs):
        seen.append(({k: v.detach().clone() for k, v in self.module.state_dict().items()}, n_epochs))
        return run_epochs(self, train_idx, val_idx, n_epochs)

    monkeypatch.setattr(training_module.Trainer, "run_epochs", spy)
    warm = train_member(frames[:9], MODEL, TRAINING, seed=2, elements=["Cu", "Ni"], warm=_warm(first))
    ((start, n_epochs),) = seen
    before = _state(first.blob)
    params = {name for name, _ in member_from_bytes(first.blob)[0].named_parameters()}
    assert len(params) >= 10 and params <= set(start)
    assert _equal(start, before)
    assert n_epochs == 2 and len(warm.curve) == 2 and [r["epoch"] for r in warm.curve] == [1, 2]
    assert warm.curve[0]["lr"] == TRAINING.lr  # the schedule restarts at training.lr
    assert set(first.val_ids) <= set(warm.val_ids) and set(first.train_ids) <= set(warm.train_ids)
    assert set(warm.train_ids) | set(warm.val_ids) == {f"f{s}" for s in range(9)}
    assert not _equal(_state(warm.blob), before)  # and it trained
    # a member from scratch with the same seed starts elsewhere and fits its own energy reference
    seen.clear()
    train_member(frames[:9], MODEL, TRAINING, seed=2, elements=["Cu", "Ni"])
    assert not _equal(seen[0][0], before) and seen[0][1] == TRAINING.epochs


def test_a_warm_member_is_reproducible_after_a_kill_in_the_middle(frames, first, monkeypatch):
    """The job a crashed run repeats: the same earlier weights give the same weights bit for bit on CPU,
    whether or not an attempt was killed half-way through its epochs before."""
    clean = train_member(frames[:9], MODEL, TRAINING, seed=2, elements=["Cu", "Ni"], warm=_warm(first))

    class Killed(BaseException):
        pass

    run_epochs = training_module.Trainer.run_epochs

    def killed(self, train_idx, val_idx, n_epochs):
        run_epochs(self, train_idx, val_idx, max(1, n_epochs // 2))
        raise Killed

    monkeypatch.setattr(training_module.Trainer, "run_epochs", killed)
    with pytest.raises(Killed):
        train_member(frames[:9], MODEL, TRAINING, seed=2, elements=["Cu", "Ni"], warm=_warm(first))
    monkeypatch.setattr(training_module.Trainer, "run_epochs", run_epochs)
    again = train_member(frames[:9], MODEL, TRAINING, seed=2, elements=["Cu", "Ni"], warm=_warm(first))
    assert _equal(_state(again.blob), _state(clean.blob))
    assert again.blob == clean.blob and again.curve == clean.curve


def test_warm_split_keeps_the_earlier_validation_frames():
    ids = [f"f{k}" for k in range(20)]
    warm = WarmStart(b"", ("f0", "f1", "f2", "f3"), ("f4", "f5"), 2)
    train, val = warm_split(ids, warm, 0.25, np.random.default_rng(0))
    got_train, got_val = {ids[k] for k in train}, {ids[k] for k in val}
    assert {"f4", "f5"} <= got_val and {"f0", "f1", "f2", "f3"} <= got_train
    assert len(got_val - {"f4", "f5"}) == 4  # a quarter of the 14 frames the earlier member never saw, rounded
    assert got_train | got_val == set(ids) and not got_train & got_val


def test_other_settings_or_labellers_train_from_scratch(frames, first):
    previous = {
        "model_id": "m0",
        "train_ids": first.train_ids,
        "val_ids": first.val_ids,
        "model_blob": weights_text(first.blob),
        "labels_from": ["ase:emt"],
    }
    warm, why = warm_start_of(previous, TRAINING, MODEL, frames[:8], ["Cu", "Ni"])
    assert warm is not None and why == "" and warm.epochs == 2 and warm.model_id == "m0"
    wider = MODEL.model_copy(update={"n_atom_basis": 32})
    warm, why = warm_start_of(previous, TRAINING, wider, frames[:8], ["Cu", "Ni"])
    assert warm is None and "model settings differ" in why and "n_atom_basis 16 -> 32" in why
    with pytest.raises(ValueError, match=r"^warm: the model settings differ .*; train this member from scratch"):
        train_member(frames[:8], wider, TRAINING, seed=2, elements=["Cu", "Ni"], warm=_warm(first))
    warm, why = warm_start_of(previous, TRAINING, MODEL, frames[:8], ["Cu", "Ni", "Al"])
    assert warm is None and "elements differ" in why
    relabelled = [a.copy() for a in frames[:8]]
    for a, b in zip(relabelled, frames[:8], strict=True):
        a.calc = b.calc
        a.info["label_settings"] = "vasp:mp:0123456789ab"
    assert labels_from(relabelled) == ["vasp:mp:0123456789ab"]
    warm, why = warm_start_of(previous, TRAINING, MODEL, relabelled, ["Cu", "Ni"])
    assert warm is None and "other labellers or label settings" in why
    assert warm_start_of(None, TRAINING, MODEL, frames[:8], None)[0] is None


def test_which_rounds_train_from_scratch():
    assert scratch_round(TrainingSettings(), 3) == "training.warm_start is off"
    every3 = TrainingSettings(warm_start=True, retrain_every=3)
    assert [bool(scratch_round(every3, k)) for k in range(7)] == [True, False, False, True, False, False, True]
    assert scratch_round(every3, 0) == "round 0" and "retrain_every" in scratch_round(every3, 6)
    assert all(scratch_round(TrainingSettings(warm_start=True, retrain_every=1), k) for k in range(4))


def test_warm_epochs_default_to_a_quarter_of_epochs():
    assert TrainingSettings().epochs_warm == 25
    assert [TrainingSettings(epochs=n).epochs_warm for n in (1, 4, 5, 9)] == [1, 1, 2, 3]
    assert TrainingSettings(epochs=100, warm_epochs=7).epochs_warm == 7
    for key, bad in (("retrain_every", 0), ("warm_epochs", 0)):
        with pytest.raises(ValidationError, match=key):
            TrainingSettings(**{key: bad})


def test_pairwise_force_disagreement():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(5, 3))
    same = [np.stack([f, f, f])]
    assert pairwise_force_disagreement(same) == 0.0
    shifted = [np.stack([f, f + 0.1]), np.stack([f[:2], f[:2] - 0.3])]  # two frames, two members
    assert pairwise_force_disagreement(shifted) == pytest.approx((0.1 + 0.3) / 2)
    three = [np.stack([f, f + 0.1, f + 0.3])]  # pairs: 0.1, 0.3, 0.2
    assert pairwise_force_disagreement(three) == pytest.approx(0.2)
    assert pairwise_force_disagreement([]) is None and pairwise_force_disagreement([f[None]]) is None


def test_the_weights_file_depends_on_values_only(frames):
    """A rerun's model id (the hash of the weights file) is the first run's even when a string of the file
    comes from elsewhere (the device from the environment, not the code): pickle's references to strings
    seen before must not depend on where they came from."""
    small = ModelSettings(n_atom_basis=8, n_interactions=1, n_rbf=5, cutoff=4.0)
    one = TrainingSettings(epochs=1, batch_size=4, val_fraction=0.25)
    device = "".join(["c", "pu"])  # equal to "cpu", another object
    assert device == "cpu" and device is not "cpu"  # noqa: F632 - the point of the test
    blobs = [
        train_member(frames[:4], small, one.model_copy(update={"device": d}), seed=1).blob for d in ("cpu", device)
    ]
    assert blobs[0] == blobs[1]


def test_warm_start_is_fingerprinted_and_refused_by_a_pool_study(tiny_dict):
    """The three keys at their defaults leave the fingerprint of every existing campaign as it was; a
    warm-started campaign is another campaign; a pool study refuses warm_start in one line."""
    from pathlib import Path

    import yaml

    from al_flows.campaign.config import ConfigError, validate_campaign

    base = validate_campaign(tiny_dict).fingerprint()
    defaults = {"warm_start": False, "warm_epochs": None, "retrain_every": 4}
    assert validate_campaign({**tiny_dict, "training": {**tiny_dict["training"], **defaults}}).fingerprint() == base
    warm = {**tiny_dict, "training": {**tiny_dict["training"], "warm_start": True}}
    assert validate_campaign(warm).fingerprint() != base
    pool = yaml.safe_load((Path(__file__).resolve().parents[2] / "flows" / "cuni_pool_emt.yaml").read_text())
    pool["training"] = {**pool.get("training", {}), "warm_start": True}
    with pytest.raises(ConfigError, match=r"training\.warm_start: .*remove warm_start$") as err:
        validate_campaign(pool, imports=False)
    assert "\n" not in str(err.value)
