"""Diverging training (issue 9): detected after each epoch, retried from scratch at a lower learning
rate, recorded; a member that always diverges fails with one clear line; nothing changes otherwise."""

from __future__ import annotations

import traceback

import numpy as np
import pytest
import torch
from jobflow import JobStore, run_locally
from maggma.stores import MemoryStore

import al_flows.potential.training as training_module
from al_flows.active_learning.jobs.training import TrainMemberMaker
from al_flows.frames.dataset import Dataset
from al_flows.potential.inputs import collate_inputs
from al_flows.potential.model import ModelSettings, TrainingSettings
from al_flows.potential.training import Trainer, TrainingDivergedError, train_member
from al_flows.potential.training_data import split_indices
from al_flows.potential.weights import member_from_bytes, weights_bytes
from helpers import emt_labelled_multilayer

MODEL = ModelSettings(n_atom_basis=16, n_interactions=2, n_rbf=12, cutoff=4.5)
BASE = {"epochs": 6, "batch_size": 4, "lr": 3e-3, "lr_patience": 50, "val_fraction": 0.2}


def _frame(seed: int):
    return emt_labelled_multilayer(seed)


@pytest.fixture(scope="module")
def frames():
    out = [_frame(k) for k in range(12)]
    for k, a in enumerate(out):
        a.info["frame_id"] = f"f{k:02d}"
    return out


def _state(blob: bytes) -> dict:
    return member_from_bytes(blob)[0].state_dict()


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def nan_after_first_step(monkeypatch):
    """Every training loss after the first optimiser step of a Trainer is NaN (the untrained model's
    loss stays finite), whatever the learning rate: training always diverges at epoch 1."""
    calls = {"n": 0}
    loss, fit = training_module._per_frame_loss, Trainer.fit_reference

    def fit_reference(self, train_idx):
        calls["n"] = 0
        return fit(self, train_idx)

    def per_frame_loss(out, batch, e_true, f_true, rho):
        value = loss(out, batch, e_true, f_true, rho)
        if torch.is_grad_enabled():  # training, not Trainer.errors
            calls["n"] += 1
            if calls["n"] > 1:
                return value * float("nan")
        return value

    monkeypatch.setattr(Trainer, "fit_reference", fit_reference)
    monkeypatch.setattr(training_module, "_per_frame_loss", per_frame_loss)


def test_absurd_learning_rate_is_retried_lower_and_succeeds(frames):
    settings = TrainingSettings(**{**BASE, "lr": 1e3, "retry_lr_factor": 1e-3, "max_retries": 2})
    logged = []
    member = train_member(frames, MODEL, settings, seed=4, member=1, log=logged.append)

    # lr 1000: NaN at once; lr 1: finite but exploding (far beyond 100 x the untrained loss); lr 1e-3 trains
    assert member.lr == 1e-3
    assert [(r["lr"], r["epoch"]) for r in member.retries] == [(1e3, 1), (1.0, 1)]
    assert member.retries[0]["reason"] == "NaN training loss at epoch 1"
    assert (
        "x the untrained model's" in member.retries[1]["reason"]
        and "divergence_factor 100" in member.retries[1]["reason"]
    )
    assert len(logged) == 2 and logged[0].startswith("member 1 (seed 4) diverged at lr 1000")
    assert all(np.isfinite(r["train_loss"]) for r in member.curve) and next(r["lr"] for r in member.curve) == 1e-3

    module, _, extra = member_from_bytes(member.blob)
    assert all(torch.isfinite(v).all() for v in module.state_dict().values() if v.is_floating_point())
    assert extra["lr"] == 1e-3 and extra["retries"] == member.retries and extra["training"]["lr"] == 1e3

    # retried from scratch with the same seed and split: the same member as asking for lr 1e-3 directly
    direct = train_member(frames, MODEL, settings.model_copy(update={"lr": 1e-3}), seed=4)
    assert direct.retries == [] and direct.lr == 1e-3
    assert _same_state(_state(direct.blob), _state(member.blob))
    assert direct.curve == member.curve and direct.train_ids == member.train_ids and direct.val_ids == member.val_ids


def test_always_diverging_member_raises_one_clear_line(frames, nan_after_first_step):
    settings = TrainingSettings(**BASE)
    with pytest.raises(TrainingDivergedError) as info:
        train_member(frames, MODEL, settings, seed=5, member=3)
    err = info.value
    assert str(err) == (
        "member 3 (seed 5) diverged in 3 attempts (learning rates tried: 0.003, 0.0003, 3e-05): "
        "at lr 0.003: NaN training loss at epoch 1; at lr 0.0003: NaN training loss at epoch 1; "
        "at lr 3e-05: NaN training loss at epoch 1; lower training.lr (below 3e-05), raise "
        "training.max_retries, or check the labels for wrong or huge energies/forces"
    )
    assert [a["lr"] for a in err.attempts] == [3e-3, 3e-4, 3e-5] and err.member == 3 and err.seed == 5
    # what a failed job's traceback ends with, which run_campaign reports first (al_flows' own errors)
    last = traceback.format_exception_only(type(err), err)[-1].strip()
    assert (
        last.startswith("al_flows.potential.training.TrainingDivergedError: member 3 (seed 5) diverged")
        and "\n" not in last
    )


def test_max_retries_zero_fails_on_the_first_divergence(frames, nan_after_first_step):
    with pytest.raises(
        TrainingDivergedError, match=r"^member with seed 0 diverged in 1 attempt \(learning rates tried: 0.003\)"
    ):
        train_member(frames, MODEL, TrainingSettings(**{**BASE, "max_retries": 0}), seed=0)


def test_non_finite_labels_are_not_retried(frames, monkeypatch):
    """NaN labels (injected past any input validation) make the untrained model's loss NaN: no
    learning rate helps, so there is one attempt and the message points at the labels."""
    fit = Trainer.fit_reference

    def fit_reference(self, train_idx):
        self.energies_np = self.energies_np.copy()
        self.energies_np[train_idx[0]] = np.nan
        return fit(self, train_idx)

    monkeypatch.setattr(Trainer, "fit_reference", fit_reference)
    with pytest.raises(TrainingDivergedError) as info:
        train_member(frames, MODEL, TrainingSettings(**BASE), seed=2, member=0)
    msg = str(info.value)
    assert msg.startswith(
        "member 0 (seed 2) diverged in 1 attempt (learning rates tried: 0.003): at lr 0.003: non-finite loss"
    )
    assert "untrained model" in msg and msg.endswith(
        "no learning rate helps: check the labels (energies, forces) for NaN/inf"
    )


def test_trainer_used_directly_raises_on_divergence(frames):
    """The pool study drives Trainer.run_epochs itself: a divergence raises there (no NaN weights)."""
    trainer = Trainer(frames, MODEL, TrainingSettings(**{**BASE, "lr": 1e3}), seed=0)
    train_idx, val_idx = split_indices(len(frames), 0.2, trainer.rng)
    trainer.fit_reference(train_idx)
    with pytest.raises(
        TrainingDivergedError,
        match=r"training diverged \(seed 0, lr 1000\): NaN training loss at epoch 1; lower training.lr",
    ):
        trainer.run_epochs(train_idx, val_idx, 3)


def _plain_loop(frames, settings: TrainingSettings, seed: int) -> Trainer:
    """The training loop as it was before divergence checks (no validation set): the reference a
    non-diverging run must equal bit for bit."""
    trainer = Trainer(frames, MODEL, settings, seed)
    train_idx, _ = split_indices(len(frames), settings.val_fraction, trainer.rng)
    trainer.fit_reference(train_idx)
    for _ in range(settings.epochs):
        trainer.module.train()
        order = train_idx[trainer.rng.permutation(len(train_idx))]
        loss_sum = torch.zeros((), dtype=torch.float64)
        for b in range(0, len(train_idx), settings.batch_size):
            sel = order[b : b + settings.batch_size]
            batch = collate_inputs([trainer.inputs[k] for k in sel], trainer.device)
            out = trainer.module(batch)
            f_true = torch.cat([trainer.forces[k] for k in sel])
            loss = training_module._per_frame_loss(out, batch, trainer.energies[sel], f_true, settings.rho).mean()
            trainer.optimizer.zero_grad(set_to_none=True)
            loss.backward(inputs=trainer.params)
            trainer.optimizer.step()
            loss_sum += loss.detach().double() * len(sel)
        trainer.scheduler.step(float(loss_sum) / len(train_idx))
    return trainer


def test_non_diverging_training_is_unchanged(frames):
    settings = TrainingSettings(**{**BASE, "val_fraction": 0.0})
    member = train_member(frames, MODEL, settings, seed=7)
    assert member.retries == [] and member.lr == settings.lr
    reference = _plain_loop(frames, settings, seed=7)
    assert _same_state(_state(member.blob), {k: v.cpu() for k, v in reference.module.state_dict().items()})

    # with validation: the same as with the checks switched off as far as they go
    with_val = TrainingSettings(**BASE)
    checked = train_member(frames, MODEL, with_val, seed=7)
    unchecked = train_member(
        frames, MODEL, with_val.model_copy(update={"divergence_factor": None, "max_retries": 0}), seed=7
    )
    assert checked.curve == unchecked.curve and _same_state(_state(checked.blob), _state(unchecked.blob))


def _dataset_doc(frames) -> dict:
    return {"dataset_blob": Dataset(frames).to_bytes()}


def test_training_document_records_retries(frames):
    maker = TrainMemberMaker(model=MODEL, training=TrainingSettings(**{**BASE, "lr": 1.0}))
    doc = TrainMemberMaker.make.original(maker, _dataset_doc(frames), "c", 0, member=2, seed=1)
    assert doc.lr_used == 0.01 and [r["lr"] for r in doc.retries] == [1.0, 0.1]
    assert doc.training_settings["lr"] == 1.0  # the configured settings, as given
    assert np.isfinite(doc.val_force_rmse)
    extra = member_from_bytes(weights_bytes(doc.model_blob))[2]
    assert extra["lr"] == 0.01


def test_diverging_member_job_fails_with_the_message_the_campaign_reports(frames, nan_after_first_step):
    """The failed job leaves a failure record in the store with the one-line reason that
    'al-flows run' and 'al-flows status' show."""
    from al_flows.workflow.jobs import FAILURE_KEY

    maker = TrainMemberMaker(model=MODEL, training=TrainingSettings(**{**BASE, "max_retries": 1}))
    job = maker.make(_dataset_doc(frames), "c", 0, member=1, seed=9)
    job.config.expose_store = True  # as every campaign job (route) does
    store = JobStore(MemoryStore())
    run_locally(job, store=store, create_folders=False, log=False)
    records = [d[FAILURE_KEY] for d in store.docs_store.query({f"{FAILURE_KEY}.job_uuid": job.uuid})]
    assert len(records) == 1
    summary = records[0]["reason"]
    assert "al_flows.potential.training.TrainingDivergedError: member 1 (seed 9) diverged in 2 attempts" in summary
    assert "learning rates tried: 0.003, 0.0003" in summary
