"""Active sampling (METHODS A3): the filter maths by hand, the split sizes, and a small run whose
log, sets and reproducibility are checked."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase.calculators.emt import EMT

from al_flows.active_sampling import (
    PAPER_POOL_SIZE,
    ActiveSamplingSettings,
    filter_examined,
    gaussian_threshold,
    run_active_sampling,
    split_sizes,
    static_epochs,
    tail_probability,
    train_static,
)
from al_flows.md_pool import nvt_frames
from al_flows.model import ModelSettings, TrainingSettings
from al_flows.multilayer import cuni_multilayer
from al_flows.pool_study import split_test, strategy_row, table_markdown, heldout_metrics, uniform_split
from al_flows.training import Trainer

MODEL = ModelSettings(n_atom_basis=8, n_interactions=1, n_rbf=8, cutoff=4.0)
TRAINING = TrainingSettings(batch_size=8, lr=3e-3, lr_patience=5)


def test_tail_probability_matches_hand_values():
    # P(X >= mu) = 1/2, P(X >= mu + sigma) = 0.158655..., P(X >= mu + 2 sigma) = 0.0227501...
    p = tail_probability([1.0, 1.5, 2.0, 0.5], mu=1.0, sigma=0.5)
    assert p == pytest.approx([0.5, 0.15865525393145707, 0.022750131948179195, 0.8413447460685429], rel=1e-12)


def test_threshold_is_where_the_tail_probability_equals_eps():
    mu, sigma = 0.04, 0.01
    for eps in (0.01, 0.15, 0.3, 0.5):
        t = gaussian_threshold(mu, sigma, eps)
        assert tail_probability([t], mu, sigma)[0] == pytest.approx(eps, rel=1e-9)
    # eps = 0.15: z = 1.0364333894937898 (one-sided normal quantile)
    assert gaussian_threshold(mu, sigma, 0.15) == pytest.approx(mu + 1.0364333894937898 * sigma, rel=1e-12)
    # a higher eps_tol admits more frames (lower threshold)
    assert gaussian_threshold(mu, sigma, 0.3) < gaussian_threshold(mu, sigma, 0.15)


def test_zero_spread_is_a_step():
    assert tail_probability([0.9, 1.0, 1.1], mu=1.0, sigma=0.0).tolist() == [1.0, 1.0, 0.0]


def test_filter_keeps_the_top_fraction_then_the_unlikely_ones():
    errors = np.array([0.10, 0.50, 0.20, 0.90, 0.05, 0.30, 0.70, 0.15, 0.25, 0.40])
    # top 30 % of 10 -> 3 largest: positions 3 (0.9), 6 (0.7), 1 (0.5)
    top, inc, p = filter_examined(errors, mu=0.3, sigma=0.2, top_fraction=0.3, eps_tol=0.15)
    assert top.tolist() == [3, 6, 1]
    # p(0.9) = P(Z >= 3) = 0.00135, p(0.7) = P(Z >= 2) = 0.02275, p(0.5) = P(Z >= 1) = 0.1587 > 0.15
    assert inc.tolist() == [3, 6]
    assert p[1] == pytest.approx(0.15865525393145707)
    # eps 0.2 also admits 0.5; top fraction 0.25 of 10 rounds up to 3
    assert filter_examined(errors, 0.3, 0.2, 0.3, 0.2)[1].tolist() == [3, 6, 1]
    assert len(filter_examined(errors, 0.3, 0.2, 0.25, 0.2)[0]) == 3


def test_split_sizes_follow_the_paper_scaled_to_the_pool():
    assert split_sizes(PAPER_POOL_SIZE, ActiveSamplingSettings()) == (3000, 5000, 5000)
    assert split_sizes(5887, ActiveSamplingSettings()) == (300, 500, 500)
    assert split_sizes(1000, ActiveSamplingSettings(n_initial=50, n_examine=70)) == (50, 85, 70)
    with pytest.raises(ValueError, match="n_initial .* leave no reserve"):
        split_sizes(100, ActiveSamplingSettings(n_initial=60, n_validation=40))


def test_test_and_uniform_splits():
    rest, test = split_test(100, 0.1, seed=3)
    assert len(test) == 10 and len(rest) == 90 and not set(rest) & set(test)
    train, val = uniform_split(rest, seed=3)
    assert (len(train), len(val)) == (80, 10)  # 8:1:1 overall
    assert sorted(np.concatenate([train, val]).tolist()) == rest.tolist()
    assert split_test(100, 0.1, seed=3)[1].tolist() == test.tolist()
    assert split_test(100, 0.1, seed=4)[1].tolist() != test.tolist()


@pytest.fixture(scope="module")
def pool():
    """90 labelled 12-atom Cu-Ni frames from EMT MD at two temperatures (hot frames are rarer)."""
    atoms = cuni_multilayer((1, 1, 3), a=3.58)
    atoms.info["structure_id"] = "ml"
    frames = nvt_frames(atoms, EMT(), 300.0, 60, seed=1, labeller="ase:emt")
    frames += nvt_frames(atoms, EMT(), 2000.0, 30, seed=2, labeller="ase:emt")
    return frames


def _run(pool, seed=0, **kw):
    settings = ActiveSamplingSettings(n_iterations=3, epochs_per_iteration=2, n_initial=10, n_validation=10, n_examine=30, **kw)
    rest, test = split_test(len(pool), 0.1, seed)
    trainer = Trainer(pool, MODEL, TRAINING, seed, ["Cu", "Ni"])
    return trainer, run_active_sampling(trainer, rest, settings, seed), rest, test


def test_active_sampling_run_log_and_sets(pool):
    trainer, run, rest, test = _run(pool, eps_tol=0.45)
    assert len(run.iterations) == 3 and len(run.curve) == 6
    included = [x["index"] for it in run.iterations for x in it["included"]]
    assert included, "eps_tol 0.45 should include something"
    # the training set is the initial set plus every logged inclusion; nothing else moved
    assert sorted(run.train_idx.tolist()) == sorted(run.initial_train_idx.tolist() + included)
    assert len(set(included)) == len(included)
    assert not set(run.train_idx) & set(run.val_idx) and not set(run.train_idx) & set(run.reserve_idx)
    assert sorted(np.concatenate([run.train_idx, run.val_idx, run.reserve_idx]).tolist()) == rest.tolist()
    assert not set(test) & set(np.concatenate([run.train_idx, run.val_idx]))
    for it in run.iterations:
        assert it["n_examined"] == 30 and it["n_top"] == 9
        for x in it["included"]:
            assert x["p"] < 0.45 and x["error"] > it["threshold"] - 1e-12
            assert x["p"] == pytest.approx(tail_probability([x["error"]], it["mu"], it["sigma"])[0])
    # the set is rebuilt every iteration: epochs of iteration k train on iteration k's set
    for k, it in enumerate(run.iterations):
        assert {row["n_train"] for row in run.curve[2 * k : 2 * k + 2]} == {it["n_train"]}
    assert run.iterations[1]["n_train"] == run.iterations[0]["n_train"] + len(run.iterations[0]["included"])
    # the optimiser carries on: steps add up over iterations
    assert run.n_steps == sum(2 * math.ceil(it["n_train"] / TRAINING.batch_size) for it in run.iterations)
    # mu/sigma are the current training set's errors with the weights of that iteration
    assert all(np.isfinite(it["mu"]) and it["sigma"] > 0 for it in run.iterations)


def test_active_sampling_is_reproducible_and_seeded(pool):
    _, a, _, _ = _run(pool, seed=0, eps_tol=0.45)
    _, b, _, _ = _run(pool, seed=0, eps_tol=0.45)
    _, c, _, _ = _run(pool, seed=1, eps_tol=0.45)
    assert a.train_idx.tolist() == b.train_idx.tolist()
    assert [r["val_loss"] for r in a.curve] == [r["val_loss"] for r in b.curve]
    assert a.blob == b.blob
    assert a.initial_train_idx.tolist() != c.initial_train_idx.tolist()


def test_stricter_tolerance_includes_fewer(pool):
    _, loose, _, _ = _run(pool, eps_tol=0.45)
    _, strict, _, _ = _run(pool, eps_tol=0.001)
    n = lambda r: sum(len(it["included"]) for it in r.iterations)  # noqa: E731
    assert n(strict) < n(loose)


def test_static_baselines_get_the_same_budget(pool):
    trainer, run, rest, test = _run(pool, eps_tol=0.45)
    train, val = uniform_split(rest, 0)
    fresh = Trainer(pool, MODEL, TRAINING, 0, ["Cu", "Ni"])
    n_epochs = static_epochs(fresh, len(train), "steps", run.n_steps, len(run.curve))
    assert n_epochs == math.ceil(run.n_steps / math.ceil(len(train) / TRAINING.batch_size))
    assert static_epochs(fresh, len(train), "epochs", run.n_steps, len(run.curve)) == 6
    base = train_static(fresh, train, val, n_epochs, "uniform", 0)
    per_epoch = math.ceil(len(train) / TRAINING.batch_size)
    assert run.n_steps <= base.n_steps < run.n_steps + per_epoch
    rows = [
        strategy_row("active", run.best, run.final, len(run.train_idx), len(run.val_idx), run.n_steps, heldout_metrics(trainer, test)),
        strategy_row("uniform", base.best, base.final, len(train), len(val), base.n_steps, heldout_metrics(fresh, test)),
    ]
    assert rows[1]["best_val_loss"] == min(r["val_loss"] for r in base.curve)
    assert rows[0]["test_force_rmse"] > 0
    table = table_markdown(rows)
    assert "Active learning (1)" in table and "Uniform train set (2)" in table and len(table.splitlines()) == 4
