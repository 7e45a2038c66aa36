"""The calibrated error bound (split conformal on error / deviation), the calibration measures, the
error-unit trust window and the uniformly drawn calibration labels."""

import math

import numpy as np
import pytest

from al_flows.selection.calibration_record import (
    coverage_curve,
    miscalibration_area,
    residual_measures,
    residuals_of,
    spearman,
)
from al_flows.selection.conformal import ConformalBound, conformal_scale, covered, fit_conformal
from al_flows.selection.error_bounds import ErrorTrust, bound_of, deviation_levels, share_below


def synthetic(rng, n: int, underestimate: float = 4.0) -> list[dict]:
    """Residuals of known law: deviation log-normal, true error = underestimate * deviation * |z|, z
    standard normal (the deviation underestimates the error about ``underestimate``-fold)."""
    eps = np.exp(rng.normal(np.log(0.05), 0.7, n))
    err = underestimate * eps * np.abs(rng.normal(size=n))
    return [
        {"deviation": float(d), "error": float(e), "element": "Cu" if i % 2 else "Ni"}
        for i, (d, e) in enumerate(zip(eps, err, strict=True))
    ]


def test_conformal_scale_is_the_rank_the_guarantee_needs():
    s = np.arange(1.0, 20.0)  # 19 scores: 90 % needs rank ceil(20 * 0.9) = 18
    assert conformal_scale(s, 0.9) == 18.0
    assert conformal_scale(s[:8], 0.9) == math.inf  # 8 scores: rank 9 > 8, no finite bound
    assert conformal_scale(np.arange(1.0, 10.0), 0.9) == 9.0  # 9 scores: the largest
    with pytest.raises(ValueError, match="coverage"):
        conformal_scale(s, 1.0)


def test_split_conformal_bound_has_the_nominal_coverage_on_data_of_known_error():
    """Marginal coverage of split conformal with n = 19 calibration scores at 90 %: exactly
    18/20 = 0.90 for continuous scores. Over T = 20000 independent (calibration set, new frame)
    draws the observed share is binomial(T, 0.9): its 99.9 % interval is 0.9 +- 3.29 sqrt(0.09 / T)
    = 0.9 +- 0.0070. The plain 90th percentile of the 19 scores (numpy.quantile, between the 17th
    and 18th) covers 0.86 and the 17th score 0.85 (measured with these draws): both fall outside it, as
    does the raw deviation (below 0.5 here)."""
    rng = np.random.default_rng(7)
    T, n = 20000, 19
    eps = np.exp(rng.normal(np.log(0.05), 0.7, (T, n + 1)))
    err = 4.0 * eps * np.abs(rng.normal(size=(T, n + 1)))
    hits = np.empty(T, dtype=bool)
    for t in range(T):
        cal = [{"deviation": d, "error": e} for d, e in zip(eps[t, :n], err[t, :n], strict=True)]
        bound = fit_conformal(cal, 0.9, None)
        hits[t] = covered(bound, [{"deviation": eps[t, n], "error": err[t, n]}])[0]
    half = 3.29 * math.sqrt(0.9 * 0.1 / T)
    assert abs(hits.mean() - 0.9) < half
    assert (err[:, n] <= eps[:, n]).mean() < 0.5  # the deviation itself underestimates the error


def test_a_large_calibration_set_covers_fresh_frames_at_the_nominal_rate():
    """One fit on 2000 residuals, checked on 20000 fresh frames: the conditional coverage of split
    conformal is Beta-distributed around 0.9 with sd sqrt(0.09 / 2000) = 0.0067; with the test's own
    binomial sd 0.0021 the 99.9 % interval is 0.9 +- 3.29 * 0.0070 = +- 0.023."""
    rng = np.random.default_rng(11)
    bound = fit_conformal(synthetic(rng, 2000), 0.9, None)
    fresh = synthetic(rng, 20000)
    assert covered(bound, fresh).mean() == pytest.approx(0.9, abs=0.023)
    assert bound.scale == pytest.approx(4.0 * 1.645, rel=0.1)  # 4 |z| at the 90th percentile of |z|


def test_per_element_scales_are_recorded_where_the_data_allow():
    rng = np.random.default_rng(3)
    pts = synthetic(rng, 60)
    bound = fit_conformal(pts, 0.9, 20)
    assert set(bound.per_element) == {"Cu", "Ni"} and all(g["n"] == 30 for g in bound.per_element.values())
    assert fit_conformal(pts, 0.9, 40).per_element == {}  # 30 each < 40
    again = ConformalBound.from_dict(bound.as_dict())
    assert again == bound
    empty = fit_conformal(pts[:3], 0.9, None)
    assert not empty.finite and empty.as_dict()["scale"] is None
    assert covered(empty, pts[:3]).all()  # an infinite bound covers everything


def test_coverage_curve_and_miscalibration_area():
    rng = np.random.default_rng(5)
    cal, fresh = synthetic(rng, 3000), synthetic(rng, 3000)
    curve = coverage_curve(cal, fresh, None)
    assert [r["nominal"] for r in curve][:3] == [0.1, 0.2, 0.3]
    assert all(abs(r["observed"] - r["nominal"]) < 0.04 for r in curve)
    area = miscalibration_area(curve)
    assert area is not None and area < 0.02
    # calibrated on errors half as large: every bound too low, the curve below the diagonal
    shrunk = [{**p, "error": p["error"] / 2} for p in cal]
    bad = coverage_curve(shrunk, fresh, None)
    assert all(r["observed"] < r["nominal"] for r in bad)
    assert miscalibration_area(bad) > 0.1
    assert miscalibration_area([]) is None and coverage_curve([], fresh) == []
    # the area of the diagonal itself is 0; a curve at 0 everywhere: 0.5 (triangle)
    assert miscalibration_area([{"nominal": p, "observed": p} for p in (0.1, 0.5, 0.9)]) == pytest.approx(0.0)


def test_residual_measures_rank_scale_and_coverage():
    rng = np.random.default_rng(9)
    earlier, now = synthetic(rng, 500), synthetic(rng, 400)
    m = residual_measures(now, earlier, 0.9, None)
    assert m["n"] == 400
    assert 0.3 < m["spearman"] < 0.8  # error = 4 eps |z|: ranked by eps, scattered by |z|
    x = np.array([p["deviation"] for p in now])
    y = np.array([p["error"] for p in now])
    assert m["scale"] == pytest.approx(x @ y / (x @ x), rel=1e-12)
    assert m["raw_coverage"] == pytest.approx(np.mean(y <= x))
    assert m["coverage"] == pytest.approx(0.9, abs=0.06)
    first = residual_measures(now, [], 0.9, None)  # no earlier residuals: no bound to check
    assert first["coverage"] is None and first["curve"] == [] and first["miscalibration_area"] is None
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_residuals_of_measures_the_largest_atomic_error_and_deviation():
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = Atoms("CuNi", positions=[[0, 0, 0], [2.5, 0, 0]], cell=[10, 10, 10], pbc=True)
    ref_f = np.array([[0.1, 0.0, 0.0], [-0.1, 0.0, 0.0]])
    atoms.calc = SinglePointCalculator(atoms, energy=-1.0, forces=ref_f)
    atoms.info.update(frame_id="f1", calibration_sample=True)
    forces = np.array([ref_f + [[0, 0, 0], [0.3, 0, 0]], ref_f + [[0, 0, 0], [-0.1, 0, 0]]])  # members disagree on Ni
    energies = np.array([[-1.2], [-1.0]])
    (p,) = residuals_of([atoms], energies, [forces], round_=4)
    assert p["frame_id"] == "f1" and p["round"] == 4 and p["sample"] == "random" and p["element"] == "Ni"
    assert p["deviation"] == pytest.approx(0.2)  # Ni: members at +0.3 and -0.1 around the mean +0.1
    assert p["error"] == pytest.approx(0.1)  # the mean is 0.1 off on Ni
    assert p["energy_deviation"] == pytest.approx(0.1 / 2) and p["energy_error"] == pytest.approx(0.1 / 2)


def test_error_window_is_the_deviation_window_of_the_bound():
    bound = ConformalBound(coverage=0.9, scale=4.0, n=50)
    trust = ErrorTrust(error_lo=0.1, error_hi=1.0)
    assert deviation_levels(trust, bound) == pytest.approx((0.025, 0.25))
    assert deviation_levels(trust, ConformalBound(0.9, math.inf, 3)) is None
    assert deviation_levels(trust, None) is None
    assert share_below([0.01, 0.02, 0.03, np.nan], bound, 0.1) == pytest.approx(0.5)  # bounds .04 .08 .12 nan
    assert share_below([0.01], None, 0.1) is None
    with pytest.raises(ValueError, match="error_lo"):
        ErrorTrust(error_lo=0.5, error_hi=0.2)
    pts = [{"deviation": 0.1, "error": 0.3}] * 12
    assert bound_of(pts, 0.9).scale == pytest.approx(3.0) and bound_of([], 0.9) is None
