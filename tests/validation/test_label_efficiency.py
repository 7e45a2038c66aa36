"""Statistics of the label-efficiency comparison, on synthetic curves of known answer, and the replay
loop's equal label counts (no training: fake models)."""

import math

import numpy as np
import pytest
from ase import Atoms

from al_flows.pool_study.replay import ReplayStrategy, pick_frames, run_replay
from al_flows.validation.label_efficiency import (
    energy_differences,
    equal_label_ratios,
    format_interval,
    label_ratio,
    label_ratio_interval,
    labels_to_reach,
    mean_log_error,
    paired_bootstrap,
    profile_errors,
    ratio_of_means,
)

LABELS = np.arange(8, 41, 4, dtype=float)  # 8, 12, ..., 40: the same counts for both strategies


def power_law(labels, scale=1.0, alpha=0.5, noise=None):
    """Error = scale * labels^-alpha (times a noise factor per point)."""
    y = scale * np.asarray(labels, dtype=float) ** -alpha
    return y if noise is None else y * noise


def test_label_ratio_of_a_curve_shifted_by_a_known_factor():
    # deviation's error at n labels is random's at n / rho: it needs rho times random's labels
    rho = 0.5
    random = power_law(LABELS)
    deviation = power_law(LABELS / rho)
    r = label_ratio(LABELS, deviation, LABELS, random)
    assert r["reached"]
    assert r["base"] == 40.0  # random's curve falls monotonically: its total
    # linear interpolation between rounds of a convex curve overshoots a little: within a round's width
    assert r["needed"] == pytest.approx(rho * 40, abs=4.0)
    assert r["ratio"] == pytest.approx(rho, abs=0.1)


def test_identical_curves_give_one_even_when_not_monotonic():
    y = np.array([1.0, 0.8, 0.6, 0.7, 0.65])
    x = [8, 12, 16, 20, 24]
    r = label_ratio(x, y, x, y)
    assert r["ratio"] == 1.0 and r["reached"]
    # the target (0.65, the last value) is first reached between 12 and 16 labels: the base is 15, not 24
    assert r["base"] == pytest.approx(15.0)


def test_a_curve_that_never_reaches_the_target_is_a_lower_bound():
    random = power_law(LABELS)
    worse = 2 * random
    r = label_ratio(LABELS, worse, LABELS, random)
    assert not r["reached"]
    assert r["needed"] == 40.0 and r["ratio"] == 1.0  # its last count: the ratio is at least 1
    summary = label_ratio_interval([r, label_ratio(LABELS, random, LABELS, random)], n_boot=200)
    assert summary["lower_bound"] and summary["n_unreached"] == 1
    assert format_interval(1.0, 0.9, 1.1, True) == ">1.00 [>0.90, >1.10]"
    assert format_interval(0.5, 0.4, 0.6) == "0.50 [0.40, 0.60]"


def test_labels_to_reach_interpolates_only_along_its_own_rounds():
    assert labels_to_reach([10, 20], [1.0, 0.5], 0.75) == (15.0, True)
    assert labels_to_reach([10, 20], [1.0, 0.5], 1.5) == (10.0, True)
    assert labels_to_reach([10, 20], [1.0, 0.5], 0.1) == (20.0, False)


def test_paired_bootstrap_interval_contains_the_known_ratio():
    # 10 seeds, each pair of curves with its own multiplicative noise (5 %): the label ratio's interval
    # holds the true 0.5, and is narrower than 0.5 wide
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(10):
        random = power_law(LABELS, noise=rng.lognormal(0, 0.05, len(LABELS)))
        deviation = power_law(LABELS / 0.5, noise=rng.lognormal(0, 0.05, len(LABELS)))
        rows.append(label_ratio(LABELS, deviation, LABELS, random))
    s = label_ratio_interval(rows, n_boot=2000)
    assert s["lo"] <= 0.5 <= s["hi"]
    assert s["hi"] - s["lo"] < 0.5
    assert not s["lower_bound"]


def test_paired_bootstrap_keeps_pairs_together():
    # b = 2 a seed by seed, with a spread over seeds: every resample's ratio of means is exactly 0.5
    a = np.array([1.0, 5.0, 20.0, 3.0])
    est, lo, hi = paired_bootstrap(a, 2 * a, ratio_of_means, n_boot=500)
    assert est == lo == hi == pytest.approx(0.5)
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [1.0, 2.0], ratio_of_means)


def test_equal_label_ratios_compare_only_counts_both_curves_hold():
    # a labelled fewer frames (36 at the end): nothing is extrapolated or interpolated to 40
    a_labels, a_values = [8, 12, 16, 36], [1.0, 0.9, 0.8, 0.5]
    b_labels, b_values = [8, 12, 16, 40], [1.0, 0.6, 0.4, 0.3]
    r = equal_label_ratios(a_labels, a_values, b_labels, b_values)
    assert list(r) == [8.0, 12.0, 16.0]
    assert r[12.0] == pytest.approx(1.5) and r[16.0] == pytest.approx(2.0)


def test_mean_log_error_is_the_area_under_log_error_over_the_range():
    x = [0, 10, 20]
    y = [1.0, math.e, math.e**2]  # log: 0, 1, 2 -> mean 1 over [0, 20]
    assert mean_log_error(x, y, 0, 20) == pytest.approx(1.0)
    assert mean_log_error(x, y, 10, 20) == pytest.approx(1.5)
    # a curve half as large everywhere: exp of the difference is 0.5
    assert math.exp(mean_log_error(x, np.array(y) / 2, 0, 20) - mean_log_error(x, y, 0, 20)) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        mean_log_error(x, y, 5, 20)


def test_energy_differences_and_profiles():
    e = [-10.0, -7.0, -9.5]
    specs = [{"terms": [(1, 1.0), (0, -0.75)], "scale": 2.0}, {"terms": [(2, 1.0), (0, -1.0)]}]
    assert energy_differences(specs, e).tolist() == pytest.approx([2 * (-7.0 + 7.5), 0.5])
    ref = [5.0, 5.5, 6.0, 5.2]  # profile 0, 0.5, 1.0, 0.2: barrier 1.0
    pred = [1.0, 1.5, 2.2, 1.2]  # profile 0, 0.5, 1.2, 0.2: the offset of the reference state cancels
    p = profile_errors(ref, pred)
    assert p["barrier_error"] == pytest.approx(0.2)
    assert p["rmse"] == pytest.approx(math.sqrt(0.04 / 3))


def _frames(n):
    return [Atoms("Cu", positions=[[0.0, 0.0, 0.1 * i]], info={"frame_id": f"f{i}"}) for i in range(n)]


def test_pick_frames_strategies_and_the_fill_below_the_window():
    frames = _frames(10)
    eps = np.array([0.01, 0.02, 0.6, 0.3, 0.2, 0.04, 0.03, 0.9, 0.1, 0.0])
    highest = ReplayStrategy("h", pick="highest", trust_lo=0.05, trust_hi=1e3)
    pos, rec = pick_frames(frames, eps, highest, 3, seed=0)
    assert pos == [2, 3, 7]
    window = ReplayStrategy("w", pick="random", trust_lo=0.05, trust_hi=0.5)  # holds 0.3, 0.2, 0.1
    pos, rec = pick_frames(frames, eps, window, 5, seed=0)
    assert set(pos) == {3, 4, 8, 5, 6} and rec["n_window"] == 3 and rec["n_fill"] == 2
    pos, rec = pick_frames(frames, None, ReplayStrategy("r", strategy="random"), 4, seed=1)
    assert len(pos) == 4 and rec["window_share"] == 1.0


def test_run_replay_labels_k_frames_per_round_for_every_strategy():
    pool = _frames(60)
    trained = []

    def train(idx, rnd):
        trained.append((tuple(idx), rnd))
        return {"labels": list(idx)}

    def score(model, idx):
        return np.array([0.01 * i for i in idx])  # deviation grows with the index

    def evaluate(model):
        return {"force_rmse": 1.0 / len(model["labels"])}

    strategies = [ReplayStrategy("random", strategy="random"), ReplayStrategy("dev", trust_lo=0.0, trust_hi=1e3)]
    out = run_replay(60, [0, 1, 2], strategies, 4, 3, 20, train, score, evaluate, pool, seed=7)
    for rows in out.values():
        assert [r["labels"] for r in rows] == [3, 7, 11, 15]
        labelled = [i for r in rows for i in r["picked"]]
        assert len(set(labelled)) == len(labelled) == 15
    assert sum(1 for _, rnd in trained if rnd == 0) == 1  # the initial ensemble is shared
    # deviation picks the largest indices among those scored
    first = out["dev"][1]
    assert min(first["picked"]) > 0


def test_run_replay_checks_the_bound_as_a_campaign_would():
    """Residuals of the picked frames are measured by the ensemble that picked them and pooled; the
    test frames of the ensemble trained next are read with the bound from every residual so far
    (none finite before 9 residuals: 4 picks a round -> from round 3 on)."""
    pool = _frames(60)
    measured_by = []

    def train(idx, rnd):
        return {"labels": list(idx), "round": rnd}

    def score(model, idx):
        return np.array([0.01 * (i + 1) for i in idx])

    def residuals(model, idx):
        measured_by.append((model["round"], tuple(idx)))
        return [{"deviation": 0.01 * (i + 1), "error": 0.03 * (i + 1)} for i in idx]  # error = 3 x deviation

    def evaluate(model):
        # test frames whose error is 2x and 4x their deviation: a bound of scale 3 covers half of them
        pts = [{"deviation": 0.1, "error": 0.2}, {"deviation": 0.1, "error": 0.4}]
        return {"force_rmse": 1.0, "test_points": pts}

    strategies = [ReplayStrategy("random", strategy="random")]
    out = run_replay(60, [0, 1, 2], strategies, 4, 4, 20, train, score, evaluate, pool, seed=7, residuals=residuals)
    rows = out["random"]
    assert "calibration" not in rows[0] and "test_points" not in rows[0]
    assert [r["calibration"]["n_residuals"] for r in rows[1:]] == [4, 8, 12, 16]
    assert [r["calibration"]["bound_scale"] for r in rows[1:]] == [None, None, pytest.approx(3.0), pytest.approx(3.0)]
    assert [r["calibration"]["test_coverage"] for r in rows[1:]] == [None, None, 0.5, 0.5]
    assert rows[4]["calibration"]["picked_coverage"] == 1.0  # error = 3 eps <= 3 eps
    assert rows[1]["calibration"]["test_raw_coverage"] == 0.0
    # each round's picks are measured by the ensemble of the round before (it picked them, untrained on them)
    assert [rnd for rnd, _ in measured_by] == [0, 1, 2, 3]
    assert [list(idx) for _, idx in measured_by] == [r["picked"] for r in rows[1:]]
