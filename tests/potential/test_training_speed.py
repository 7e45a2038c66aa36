"""Fast-training features: the neighbour-list cache of frame_inputs, the amp flag, on-device loss sums."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

# isort: off
import al_flows  # noqa: F401  (schnetpack/torch compatibility patch before schnetpack loads)
import schnetpack.properties as P

# isort: on
from al_flows.potential.inputs import NeighbourCache, collate_inputs, frame_inputs, frame_key, neighbour_cache
from al_flows.potential.model import ModelSettings, TrainingSettings
from al_flows.potential.training import Trainer, train_member
from al_flows.potential.training_data import split_indices
from helpers import emt_labelled_multilayer

MODEL = ModelSettings(n_atom_basis=16, n_interactions=2, n_rbf=12, cutoff=4.5)
TRAINING = TrainingSettings(epochs=3, batch_size=4, lr=3e-3, lr_patience=50, val_fraction=0.2)


def _frame(seed: int):
    return emt_labelled_multilayer(seed)


@pytest.fixture(scope="module")
def frames():
    return [_frame(k) for k in range(12)]


def _same_inputs(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_identical_frame_reuses_cached_inputs(frames):
    cache = neighbour_cache()
    cache.clear()
    first = frame_inputs(frames[0], 4.5, cache=True)
    again = frame_inputs(frames[0].copy(), 4.5, cache=True)  # a copy: same content, same key
    assert cache.info()["hits"] == 1 and cache.info()["misses"] == 1
    assert all(first[k] is again[k] for k in first)  # the cached tensors themselves
    assert first is not again  # but a new dict each time
    assert _same_inputs(first, frame_inputs(frames[0], 4.5))  # equal to an uncached computation


def test_moving_one_atom_invalidates(frames):
    atoms = frames[1].copy()
    before = frame_inputs(atoms, 4.5, cache=True)
    key = frame_key(atoms, 4.5)
    atoms.positions[5] += [0.6, -0.4, 0.3]  # far enough to change its neighbours
    assert frame_key(atoms, 4.5) != key
    after = frame_inputs(atoms, 4.5, cache=True)
    assert not torch.equal(after[P.R], before[P.R])
    assert not _same_inputs(after, before)
    assert _same_inputs(after, frame_inputs(atoms, 4.5))
    # a tiny move also gives a new key; so do another cell, pbc or cutoff
    tiny = frames[1].copy()
    tiny.positions[0, 0] += 1e-9
    assert frame_key(tiny, 4.5) != key
    strained = frames[1].copy()
    strained.set_cell(strained.cell.array * 1.001, scale_atoms=False)
    assert frame_key(strained, 4.5) != key
    slab = frames[1].copy()
    slab.pbc = (True, True, False)
    assert frame_key(slab, 4.5) != key
    assert frame_key(frames[1], 5.0) != key
    n_pairs = {c: frame_inputs(frames[1], c, cache=True)[P.idx_i].shape[0] for c in (4.5, 5.0)}
    assert n_pairs[5.0] > n_pairs[4.5]


def test_cache_is_bounded_least_recently_used(frames):
    cache = NeighbourCache()
    sizes = []
    for k in range(3):
        inputs = frame_inputs(frames[k], 4.5)
        sizes.append(sum(t.numel() * t.element_size() for t in inputs.values()))
    cache.max_bytes = sizes[0] + sizes[1] + sizes[2] // 2
    for k in range(2):
        cache.put(frame_key(frames[k], 4.5), frame_inputs(frames[k], 4.5))
    assert cache.get(frame_key(frames[0], 4.5)) is not None  # frame 0 now most recently used
    cache.put(frame_key(frames[2], 4.5), frame_inputs(frames[2], 4.5))
    assert cache.get(frame_key(frames[1], 4.5)) is None  # the least recently used went
    assert cache.get(frame_key(frames[0], 4.5)) is not None
    assert cache.info()["bytes"] == sizes[0] + sizes[2] <= cache.max_bytes
    cache.put(b"big", {"x": torch.zeros(cache.max_bytes)})  # larger than the cache: not kept
    assert cache.get(b"big") is None and len(cache) == 2
    cache.clear()
    assert len(cache) == 0 and cache.info()["bytes"] == 0


def test_training_unchanged_by_the_cache(frames):
    neighbour_cache().clear()
    cold = train_member(frames, MODEL, TRAINING, seed=3)
    assert neighbour_cache().info()["misses"] == len(frames)
    warm = train_member(frames, MODEL, TRAINING, seed=3)  # every neighbour list from the cache
    assert neighbour_cache().info()["hits"] >= len(frames)
    assert warm.curve == cold.curve and warm.blob == cold.blob
    # and the same as a trainer fed uncached inputs
    trainer = Trainer(frames, MODEL, TRAINING, seed=3)
    trainer.inputs = [frame_inputs(a, MODEL.cutoff) for a in frames]
    train_idx, val_idx = split_indices(len(frames), TRAINING.val_fraction, trainer.rng)
    trainer.fit_reference(train_idx)
    rows = trainer.run_epochs(train_idx, val_idx, TRAINING.epochs)
    assert [r["val_loss"] for r in rows] == [r["val_loss"] for r in cold.curve]
    assert [r["train_loss"] for r in rows] == [r["train_loss"] for r in cold.curve]


def test_cached_tensors_survive_training(frames):
    neighbour_cache().clear()
    reference = [frame_inputs(a, MODEL.cutoff) for a in frames]
    train_member(frames, MODEL, TRAINING, seed=0)
    for a, ref in zip(frames, reference, strict=True):
        assert _same_inputs(frame_inputs(a, MODEL.cutoff, cache=True), ref)


def test_amp_is_accepted_and_ignored_on_cpu(frames):
    settings = TrainingSettings(**{**TRAINING.model_dump(), "amp": True})
    assert settings.amp is True and TrainingSettings().amp is False
    with pytest.warns(RuntimeWarning, match="ignored on 'cpu'"):
        trainer = Trainer(frames, MODEL, settings, seed=1)
    assert trainer.amp_dtype is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with_amp = train_member(frames, MODEL, settings, seed=1)
    without = train_member(frames, MODEL, TRAINING, seed=1)
    assert with_amp.curve == without.curve


def test_autocast_path_trains(frames, monkeypatch):
    """The bfloat16 path (CUDA only in use) exercised with CPU autocast: it trains, keeps the energy in
    float64, restores the representation's forward and leaves the state dict's keys alone."""
    monkeypatch.setattr(Trainer, "_amp_device_types", ("cuda", "cpu"))
    settings = TrainingSettings(**{**TRAINING.model_dump(), "amp": True, "epochs": 6})
    trainer = Trainer(frames, MODEL, settings, seed=2)
    assert trainer.amp_dtype == torch.bfloat16
    train_idx, val_idx = split_indices(len(frames), settings.val_fraction, trainer.rng)
    trainer.fit_reference(train_idx)
    before = trainer.errors(val_idx).summary()["force_rmse"]
    keys = set(trainer.module.state_dict())
    with trainer._precision():
        assert "forward" in vars(trainer.module.representation)
        trainer.module.train()
        seen = {}
        hook = trainer.module.representation.register_forward_hook(
            lambda mod, args, out: seen.update(dtype=out["scalar_representation"].dtype)
        )
        inner = trainer.module.representation.interactions[0].filter_network.register_forward_hook(
            lambda mod, args, out: seen.update(filter_dtype=out.dtype)
        )
        out = trainer.module(collate_inputs(trainer.inputs[:2]))
        hook.remove()
        inner.remove()
        assert seen["filter_dtype"] == torch.bfloat16  # the representation ran under autocast
        assert out[P.energy].dtype == torch.float64 and out[P.forces].dtype == torch.float32
        assert seen["dtype"] == torch.float32  # the atomwise energy network gets float32 features
    assert "forward" not in vars(trainer.module.representation)
    rows = trainer.run_epochs(train_idx, val_idx, settings.epochs)
    assert "forward" not in vars(trainer.module.representation)
    assert all(np.isfinite(r["train_loss"]) for r in rows)
    assert rows[-1]["val_force_rmse"] < before
    assert set(trainer.module.state_dict()) == keys
