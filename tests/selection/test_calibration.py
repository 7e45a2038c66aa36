"""Trust-level calibration on synthetic data with a known deviation -> error relation."""

import numpy as np
import pytest

from al_flows.selection.calibration import (
    CalibrationSettings,
    calibrated_levels,
    fit_relation,
    max_force_errors,
    predict_error,
    window_points,
)


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
    lo, hi, _ = calibrated_levels(
        fit, CalibrationSettings(target_error_lo=0.3, target_error_hi=3.0, relation="power"), (0.05, 0.3)
    )  # limit_change not applied
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


def test_min_points_default_and_limited_change():
    s = CalibrationSettings()
    assert s.min_points == 10 and s.max_change_factor == 2.0
    from al_flows.selection.calibration import limit_change

    assert limit_change((0.2, 1.0), (0.05, 0.3), 2.0) == (
        0.1,
        0.6,
        "fitted levels 0.2/1 limited to a factor 2 of 0.05/0.3",
    )
    assert limit_change((0.06, 0.5), (0.05, 0.3), 2.0) == (0.06, 0.5, "")
    lo, hi, note = limit_change((0.001, 0.002), (0.05, 0.3), 2.0)  # both clipped up to 0.025 / 0.15
    assert (lo, hi) == pytest.approx((0.025, 0.15)) and note
    assert limit_change((0.2, 1.0), (0.05, 0.3), None) == (0.2, 1.0, "")
    # a level at 0 takes the fitted value (no scale to limit against); the other is still limited
    assert limit_change((0.002, 0.06), (0.0, 100.0), 2.0)[:2] == (0.002, 50.0)


def test_select_keeps_the_last_calibrated_levels_when_a_fit_is_not_applied():
    """A calibration that was not applied (too few points) carries the levels its round used;
    the next round must keep those calibrated levels, not fall back to the configured ones."""
    from al_flows.active_learning.jobs.selection import SelectMaker
    from al_flows.frames.extxyz import frames_text
    from al_flows.selection.trust_levels import SelectionSettings
    from helpers import frames_with_deviations as _explored

    settings = SelectionSettings(trust_lo=0.05, trust_hi=0.3, max_candidates=10, calibrate=CalibrationSettings())
    maker = SelectMaker(settings=settings)
    explored = [{"frames_blob": frames_text(_explored([0.01, 0.08, 0.15, 0.25, 0.5])), "ensemble_id": "e"}]
    kept = {"applied": False, "trust_lo_next": 0.12, "trust_hi_next": 0.6}  # the calibrated levels of the round before
    doc = SelectMaker.make.original(maker, explored, [], "c", 2, seed=0, calibration=kept)
    assert (doc.trust_lo, doc.trust_hi) == (0.12, 0.6)
    assert (doc.n_accurate, doc.n_candidate, doc.n_failed) == (2, 3, 0)
    configured = SelectMaker.make.original(maker, explored, [], "c", 0, seed=0)
    assert (configured.trust_lo, configured.trust_hi) == (0.05, 0.3)
    # every campaign now has a calibration record each round; without selection.calibrate its levels are not read
    plain = SelectMaker(settings=SelectionSettings(trust_lo=0.05, trust_hi=0.3, max_candidates=10))
    unused = SelectMaker.make.original(plain, explored, [], "c", 2, seed=0, calibration=kept)
    assert (unused.trust_lo, unused.trust_hi, unused.trust_levels_from) == (0.05, 0.3, "settings")


def test_window_points_pool_the_rounds_before_within_the_window():
    earlier = [{"frame_id": f"r{r}", "deviation": 0.1 * r, "error": 0.2 * r, "round": r} for r in (1, 2, 3, 4)]
    now = [{"frame_id": "a", "deviation": 0.5, "error": 1.0}]
    got = window_points(earlier, now, round=5, window_rounds=3)  # rounds 3, 4 and 5
    assert [(p["frame_id"], p["round"]) for p in got] == [("r3", 3), ("r4", 4), ("a", 5)]
    assert window_points(earlier, now, round=5, window_rounds=1) == [{**now[0], "round": 5}]
    assert CalibrationSettings().window_rounds == 1


def test_an_added_key_at_its_default_leaves_the_fingerprint_alone():
    from al_flows.campaign.config import validate_campaign
    from helpers import TINY

    base = validate_campaign(TINY)
    calibrated = {**TINY, "selection": {**TINY["selection"], "calibrate": {"target_error_lo": 0.1}}}
    one = validate_campaign(calibrated)
    assert "window_rounds" not in one.fingerprint_settings()["selection"]["calibrate"]
    assert one.fingerprint() != base.fingerprint()
    calibrated["selection"]["calibrate"]["window_rounds"] = 1
    assert validate_campaign(calibrated).fingerprint() == one.fingerprint()
    calibrated["selection"]["calibrate"]["window_rounds"] = 3
    assert validate_campaign(calibrated).fingerprint_settings()["selection"]["calibrate"]["window_rounds"] == 3
    assert validate_campaign(calibrated).fingerprint() != one.fingerprint()
