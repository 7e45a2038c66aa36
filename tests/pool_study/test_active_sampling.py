"""Active sampling (METHODS A3): the filter maths by hand, the split sizes, and a small run whose
log, sets and reproducibility are checked."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase.calculators.emt import EMT

from al_flows.exploration.labeller_md import nvt_frames
from al_flows.pool_study.active_sampling import (
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
from al_flows.pool_study.strategies import (
    heldout_metrics,
    split_test,
    strategy_row,
    table_markdown,
    uniform_split,
    uniform_train,
)
from al_flows.potential.model import ModelSettings, TrainingSettings
from al_flows.potential.training import Trainer
from al_flows.structures.multilayer import cuni_multilayer

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


def test_uniform_training_frames_for_a_common_validation_set():
    rest = np.arange(10, 100)  # 90 non-test frames: an 8:1 split trains on 80
    val = np.arange(10, 30)  # a common validation set of 20 leaves 70 free frames, fewer than 80: all of them
    train = uniform_train(rest, val, seed=3)
    assert train.tolist() == list(range(30, 100))
    small_val = np.array([10, 50, 99])  # 87 free frames: 80 of them, none validated on, drawn uniformly
    train = uniform_train(rest, small_val, seed=3)
    assert len(train) == 80 and len(set(train.tolist())) == 80 and not set(train.tolist()) & {10, 50, 99}
    assert set(train.tolist()) <= set(rest.tolist())
    assert uniform_train(rest, small_val, seed=4).tolist() != train.tolist()


@pytest.fixture(scope="module")
def pool():
    """90 labelled 12-atom Cu-Ni frames from EMT MD at two temperatures (hot frames are rarer)."""
    atoms = cuni_multilayer((1, 1, 3), a=3.58)
    atoms.info["structure_id"] = "ml"
    frames = nvt_frames(atoms, EMT(), 300.0, 60, seed=1, labeller="ase:emt")
    frames += nvt_frames(atoms, EMT(), 2000.0, 30, seed=2, labeller="ase:emt")
    return frames


def _run(pool, seed=0, **kw):
    settings = ActiveSamplingSettings(
        n_iterations=3, epochs_per_iteration=2, n_initial=10, n_validation=10, n_examine=30, **kw
    )
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
        strategy_row(
            "active",
            run.best,
            run.final,
            len(run.train_idx),
            len(run.val_idx),
            run.n_steps,
            heldout_metrics(trainer, test),
        ),
        strategy_row(
            "uniform", base.best, base.final, len(train), len(val), base.n_steps, heldout_metrics(fresh, test)
        ),
    ]
    assert rows[1]["best_val_loss"] == min(r["val_loss"] for r in base.curve)
    assert rows[0]["test_force_rmse"] > 0
    table = table_markdown(rows)
    assert "Active learning (1)" in table and "Uniform train set (2)" in table and len(table.splitlines()) == 4


class _KnownErrorTrainer:
    """Trainer stand-in whose per-frame errors are known exactly: at the first run_epochs call it
    learns the split and gives initial training frame j (by index order) the error 0.10 + 0.01 j,
    validation frames 0.50 + 0.01 j (far above: a Gaussian fitted to them includes nothing) and
    reserve frames 0.05 + 0.006 j (eV/A); iteration ``it`` scales all of them by 1 / it (the model
    improves). Records the epochs it was asked to run."""

    def __init__(self, pool):
        self.pool = sorted(int(k) for k in pool)
        self.table: dict[int, float] = {}
        self.iteration = 0
        self.n_steps = 0
        self.calls: list[tuple[list[int], list[int]]] = []

    def fit_reference(self, train_idx):
        self.initial = sorted(int(k) for k in train_idx)

    def run_epochs(self, train_idx, val_idx, n_epochs):
        train, val = sorted(int(k) for k in train_idx), sorted(int(k) for k in val_idx)
        if not self.table:
            assert train == self.initial
            self.table.update({k: 0.10 + 0.01 * j for j, k in enumerate(train)})
            self.table.update({k: 0.50 + 0.01 * j for j, k in enumerate(val)})
            reserve = sorted(set(self.pool) - set(train) - set(val))
            self.table.update({k: 0.05 + 0.006 * j for j, k in enumerate(reserve)})
        self.calls.append((train, val))
        self.iteration += 1
        rows = []
        for e in range(n_epochs):
            self.n_steps += 1
            rows.append(
                {
                    "epoch": len(self.calls) * n_epochs + e,
                    "train_loss": 1.0,
                    "val_loss": 1.0,
                    "val_force_rmse": 1.0,
                    "val_energy_rmse_per_atom": 0.0,
                    "lr": 1e-3,
                    "n_train": len(train),
                }
            )
        return rows

    def error_of(self, k: int) -> float:
        return self.table[k] / self.iteration

    def errors(self, idx):
        from al_flows.potential.evaluation import FrameErrors

        e = np.array([self.error_of(int(k)) for k in idx])
        zeros = np.zeros(len(e))
        return FrameErrors(
            loss=zeros, force_error=e, energy_error_per_atom=zeros, force_sq_sum=zeros, n_force_components=zeros
        )

    def blob(self, extra):
        return repr(sorted(extra.items())).encode()

    def restore_best(self):
        return None


def test_gaussian_is_fitted_on_the_training_errors_by_hand():
    """mu, sigma, threshold and the included frames of every iteration against a hand computation
    from the known per-frame errors: the Gaussian N(mu, sigma^2) is fitted to the current training
    set's errors (mean and sample standard deviation), never to the validation set's."""
    import statistics

    pool = np.arange(100, 140)  # 40 frames: 8 initial, 8 validation, 24 reserve, all examined every iteration
    settings = ActiveSamplingSettings(
        n_iterations=3,
        epochs_per_iteration=1,
        n_initial=8,
        n_validation=8,
        n_examine=100,
        top_fraction=0.3,
        eps_tol=0.15,
    )
    stub = _KnownErrorTrainer(pool)
    run = run_active_sampling(stub, pool, settings, seed=5)
    val = sorted(run.val_idx.tolist())
    train = sorted(run.initial_train_idx.tolist())
    reserve = sorted(set(pool.tolist()) - set(train) - set(val))
    assert len(train) == 8 and len(val) == 8 and len(reserve) == 24
    partial = False
    for it, record in enumerate(run.iterations, start=1):
        stub.iteration = it
        assert stub.calls[it - 1] == (train, val)  # this iteration trained on the set built so far
        train_err = [stub.error_of(k) for k in train]
        mu, sigma = statistics.mean(train_err), statistics.stdev(train_err)
        assert record["mu"] == pytest.approx(mu, rel=1e-12) and record["sigma"] == pytest.approx(sigma, rel=1e-12)
        val_err = [stub.error_of(k) for k in val]
        assert abs(statistics.mean(val_err) - mu) > 5 * sigma  # a fit to the validation set would differ
        z = 1.0364333894937898  # one-sided normal quantile of eps_tol = 0.15
        assert record["threshold"] == pytest.approx(mu + z * sigma, rel=1e-12)
        # every reserve frame is examined; keep the ceil(0.3 n) largest errors, then p < eps_tol
        assert record["n_examined"] == len(reserve)
        ranked = sorted(reserve, key=lambda k: -stub.error_of(k))
        top = ranked[: math.ceil(0.3 * len(reserve))]
        assert record["n_top"] == len(top)
        p = {k: 0.5 * math.erfc((stub.error_of(k) - mu) / (sigma * math.sqrt(2))) for k in top}
        included = sorted(k for k in top if p[k] < 0.15)
        assert sorted(x["index"] for x in record["included"]) == included
        for x in record["included"]:
            assert x["error"] == pytest.approx(stub.error_of(x["index"]), rel=1e-12)
            assert x["p"] == pytest.approx(p[x["index"]], rel=1e-9)
        partial |= 0 < len(included) < len(top)
        train = sorted(train + included)
        reserve = sorted(set(reserve) - set(included))
    assert partial  # the threshold fell inside the top fraction at least once: the filter was exercised
    assert run.train_idx.tolist() == train and sorted(run.reserve_idx.tolist()) == reserve
    # iteration 1 by hand: training errors 0.10..0.17, mu = 0.135, sigma = 0.0244949 (sample),
    # threshold 0.16039; top 8 of the reserve errors 0.146..0.188, of which 0.164..0.188 pass
    first = run.iterations[0]
    assert first["mu"] == pytest.approx(0.135, rel=1e-12) and first["sigma"] == pytest.approx(
        0.01 * math.sqrt(6), rel=1e-12
    )
    assert sorted(x["error"] for x in first["included"]) == pytest.approx(
        [0.05 + 0.006 * j for j in range(19, 24)], rel=1e-12
    )


def test_frame_error_is_the_mean_over_atoms_of_the_force_error_norm(pool):
    """The filter's error e = (1/N) sum_i |F_pred,i - F_i|: with a model that predicts zero
    forces it is the mean force norm of each frame (not a per-component MAE or an RMSE)."""
    import schnetpack.properties as P
    import torch

    class Zero(torch.nn.Module):
        def forward(self, batch):
            n = batch[P.n_atoms]
            return {P.energy: torch.zeros(len(n), dtype=torch.float64), P.forces: torch.zeros((int(n.sum()), 3))}

    frames = pool[:4]
    trainer = Trainer(frames, MODEL, TRAINING, 0, ["Cu", "Ni"])
    trainer.module = Zero()
    got = trainer.errors([2, 0, 3]).force_error
    want = [np.linalg.norm(frames[k].get_forces(), axis=1).mean() for k in (2, 0, 3)]
    # forces are stored in float32: relative round-off 6e-8 per component
    assert got == pytest.approx(want, rel=1e-6)
    assert not np.allclose(want, [np.abs(frames[k].get_forces()).mean() for k in (2, 0, 3)], rtol=1e-3)
