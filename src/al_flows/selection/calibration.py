"""Trust levels calibrated from data (DP-GEN trust levels, docs/methods.md, with the levels fitted, not guessed).

After a round's candidates are labelled, each labelled frame gives a pair (deviation eps at
selection, true error), with the true error measured like the deviation: the largest atomic
force error of the ensemble mean, ``err = max_i |<F_i> - F_i|`` (eV/Angstrom). A relation
err = g(eps) is fitted:

- ``proportional``: err = a eps (least squares through the origin);
- ``power``: log err = log a + b log eps (least squares in log-log).

The next round's trust levels are the deviations at which the fitted error equals the target
errors: ``trust_lo = g^-1(target_error_lo)`` (frames below: accurate enough, not labelled) and
``trust_hi = g^-1(target_error_hi)`` (frames above: too wrong to be physical, not labelled).
With fewer than ``min_points`` usable pairs, or a fit that does not increase, the levels in use
are kept (not the configured ones: a calibrated campaign keeps its last calibrated levels) and
the reason recorded. The minimum, 10 by default: the proportional fit has one parameter whose
relative standard error is about s / sqrt(n), with s the relative scatter of the true error at a
given deviation (about 0.5 in the example campaigns), so 10 points give about +-16 % (1 sigma) on
both levels, while 4 give +-25 % and a single point anything. A level moves by at most a factor
``max_change_factor`` (default 2) per round, so one round's scatter cannot turn every explored
frame into a candidate (or none); the clipping is recorded in the reason.

One round's labels are few (16 in the DP-GEN example) and their errors scatter: a round whose
labels happen to be hard halves trust_lo and the next round counts no frame accurate.
``window_rounds`` pools the pairs of the last rounds (this one and ``window_rounds - 1`` before it,
each pair as measured in its own round) into one fit, which damps that swing at the cost of
following a changing relation more slowly; 1 (the default) fits this round's labels alone.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from al_flows.settings import Settings

__all__ = [
    "CalibrationSettings",
    "max_force_errors",
    "fit_relation",
    "predict_error",
    "calibrated_levels",
    "limit_change",
    "window_points",
]


class CalibrationSettings(Settings):
    """Fit the deviation -> true error relation after every round and set the next trust levels."""

    target_error_lo: float = Field(0.1, gt=0, description="eV/Angstrom; fitted error below which a frame is accurate")
    target_error_hi: float = Field(1.0, gt=0, description="eV/Angstrom; fitted error above which a frame is failed")
    relation: Literal["proportional", "power"] = "proportional"
    min_points: int = Field(10, ge=2, description="labelled frames needed for a fit (module doc: why 10)")
    max_change_factor: float | None = Field(
        2.0, ge=1, description="a level moves by at most this factor per round (None: no limit)"
    )
    window_rounds: int = Field(
        1, ge=1, description="fit the labelled frames of this many rounds: this one and those just before (1: this one)"
    )

    @model_validator(mode="after")
    def _targets(self):
        if not self.target_error_lo < self.target_error_hi:
            raise ValueError(
                f"calibrate: target_error_lo ({self.target_error_lo}) must be lower than target_error_hi "
                f"({self.target_error_hi})"
            )
        return self


def max_force_errors(predicted: list[np.ndarray], reference: list[np.ndarray]) -> np.ndarray:
    """Per frame: the largest atomic force-error norm max_i |F_pred,i - F_ref,i| (eV/Angstrom)."""
    return np.array(
        [
            float(np.linalg.norm(np.asarray(p) - np.asarray(r), axis=1).max())
            for p, r in zip(predicted, reference, strict=True)
        ]
    )


def fit_relation(deviation, error, relation: str = "proportional") -> dict:
    """Fit err = g(eps) on finite positive pairs; returns {relation, a, b, r2, n} (b = 1 for
    'proportional'); r2 is the coefficient of determination of err (of log err for 'power')."""
    eps, err = np.asarray(deviation, dtype=float), np.asarray(error, dtype=float)
    ok = np.isfinite(eps) & np.isfinite(err) & (eps > 0) & (err > 0)
    eps, err = eps[ok], err[ok]
    n = int(len(eps))
    if n == 0:
        return {"relation": relation, "a": float("nan"), "b": float("nan"), "r2": float("nan"), "n": 0}
    if relation == "proportional":
        a, b = float(eps @ err / (eps @ eps)), 1.0
        fitted, target = a * eps, err
    elif relation == "power":
        x, y = np.log(eps), np.log(err)
        if n < 2 or np.ptp(x) == 0:
            return {"relation": relation, "a": float("nan"), "b": float("nan"), "r2": float("nan"), "n": n}
        b, log_a = np.polyfit(x, y, 1)
        a, b = float(np.exp(log_a)), float(b)
        fitted, target = log_a + b * x, y
    else:
        raise ValueError(f"relation: unknown relation {relation!r}; use proportional or power")
    ss_res = float(((target - fitted) ** 2).sum())
    ss_tot = float(((target - target.mean()) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    return {"relation": relation, "a": a, "b": b, "r2": r2, "n": n}


def predict_error(fit: dict, deviation):
    """Fitted true error (eV/Angstrom) at ``deviation``: a * eps**b."""
    return fit["a"] * np.asarray(deviation, dtype=float) ** fit["b"]


def calibrated_levels(
    fit: dict, settings: CalibrationSettings, current: tuple[float, float]
) -> tuple[float, float, str]:
    """(trust_lo, trust_hi, reason): the deviations where the fit reaches the target errors, or
    ``current`` with the reason the fit was not used ('' when it was)."""
    if fit["n"] < settings.min_points:
        return (*current, f"only {fit['n']} usable labelled frames (< min_points {settings.min_points})")
    a, b = fit["a"], fit["b"]
    if not (np.isfinite(a) and np.isfinite(b) and a > 0 and b > 0):
        return (*current, f"fit does not increase with the deviation (a={a:.3g}, b={b:.3g})")
    lo = float((settings.target_error_lo / a) ** (1.0 / b))
    hi = float((settings.target_error_hi / a) ** (1.0 / b))
    return lo, hi, ""


def limit_change(
    levels: tuple[float, float], current: tuple[float, float], factor: float | None
) -> tuple[float, float, str]:
    """(trust_lo, trust_hi, note): ``levels`` moved by at most ``factor`` from ``current`` each
    (the window kept open); the note says what was limited ('' when nothing was)."""
    lo, hi = levels
    if factor is None:
        return lo, hi, ""
    # a level at 0 (e.g. a configured trust_lo of 0) has no scale to limit a move against: it takes the fit
    new_lo, new_hi = (
        float(np.clip(v, c / factor, c * factor)) if c > 0 else float(v) for v, c in zip(levels, current, strict=True)
    )
    if new_lo >= new_hi:  # keep the fitted ratio of the levels
        new_hi = new_lo * hi / lo
    if (new_lo, new_hi) == (lo, hi):
        return lo, hi, ""
    return (
        new_lo,
        new_hi,
        f"fitted levels {lo:.3g}/{hi:.3g} limited to a factor {factor:g} of {current[0]:.3g}/{current[1]:.3g}",
    )


def window_points(earlier: list[dict], current: list[dict], round: int, window_rounds: int) -> list[dict]:
    """The (deviation, error) pairs a round's fit uses: ``current`` (this round's, given ``round``)
    after those of ``earlier`` (each with its ``round``) from the ``window_rounds - 1`` rounds before."""
    first = round - window_rounds + 1
    kept = [p for p in earlier if first <= int(p["round"]) < round]
    return kept + [{**p, "round": round} for p in current]
