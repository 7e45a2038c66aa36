"""Trust-level calibration on synthetic data with a known deviation -> error relation."""

import numpy as np
import pytest

from al_flows.calibration import CalibrationSettings, calibrated_levels, fit_relation, max_force_errors, predict_error


def test_max_force_errors_by_hand():
    pred = [np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), np.zeros((1, 3))]
    ref = [np.array([[0.0, 0.3, 0.4], [1.0, 0.0, 0.0]]), np.array([[1.0, 2.0, 2.0]])]
    assert max_force_errors(pred, ref).tolist() == pytest.approx([0.5, 3.0])


def test_proportional_fit_recovers_the_slope_and_sets_levels():
    rng = np.random.default_rng(0)
    eps = rng.uniform(0.05, 0.5, 400)
    err = 2.5 * eps * (1 + 0.05 * rng.normal(size=eps.size))
    fit = fit_relation(eps, err, "proportional")
    assert fit["a"] == pytest.approx(2.5, rel=0.01) and fit["b"] == 1.0 and fit["r2"] > 0.95 and fit["n"] == 400
    lo, hi, why = calibrated_levels(fit, CalibrationSettings(target_error_lo=0.1, target_error_hi=1.0), (0.05, 0.3))
    assert why == "" and lo == pytest.approx(0.1 / fit["a"]) and hi == pytest.approx(1.0 / fit["a"])
    assert predict_error(fit, lo) == pytest.approx(0.1)


def test_power_fit_recovers_exponent():
    eps = np.geomspace(0.01, 1.0, 50)
    err = 3.0 * eps**1.5
    fit = fit_relation(eps, err, "power")
    assert fit["a"] == pytest.approx(3.0) and fit["b"] == pytest.approx(1.5) and fit["r2"] == pytest.approx(1.0)
    lo, hi, _ = calibrated_levels(fit, CalibrationSettings(target_error_lo=0.3, target_error_hi=3.0, relation="power"), (0.05, 0.3))
    assert lo == pytest.approx((0.1) ** (1 / 1.5)) and hi == pytest.approx(1.0)


def test_too_few_points_or_bad_fit_keep_the_levels():
    s = CalibrationSettings(min_points=5)
    fit = fit_relation([0.1, 0.2, np.nan, -1.0], [0.2, 0.4, 1.0, 1.0])
    assert fit["n"] == 2
    assert calibrated_levels(fit, s, (0.05, 0.3)) == (0.05, 0.3, "only 2 usable labelled frames (< min_points 5)")
    falling = fit_relation(np.geomspace(0.01, 1, 20), 1.0 / np.geomspace(0.01, 1, 20), "power")
    lo, hi, why = calibrated_levels(falling, s, (0.05, 0.3))
    assert (lo, hi) == (0.05, 0.3) and "does not increase" in why
    with pytest.raises(ValueError, match="target_error_lo"):
        CalibrationSettings(target_error_lo=1.0, target_error_hi=0.5)
