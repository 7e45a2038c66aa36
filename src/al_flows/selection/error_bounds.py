"""Settings that put the calibrated error bound to work (docs/methods.md, "Calibrated error bounds"):
the bound every round records (``selection.bound``: its coverage and the uniformly drawn
calibration labels) and a trust window in error units (``selection.trust``).

The bound of a frame is q * eps, q the split-conformal scale of every residual labelled so far
(:mod:`al_flows.selection.conformal`, pooled over elements). A window in error units,
error_lo <= q * eps < error_hi, is therefore the deviation window
[error_lo / q, error_hi / q): :func:`deviation_levels` gives it. Until a finite bound exists
(90 % needs 9 residuals) a round uses the deviation levels ``trust_lo`` / ``trust_hi``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import Field, model_validator

from al_flows.selection.conformal import ConformalBound, fit_conformal
from al_flows.settings import Settings

__all__ = ["BoundSettings", "ErrorTrust", "bound_of", "deviation_levels", "share_below"]


class BoundSettings(Settings):
    """The calibrated error bound each round records (``selection.bound``)."""

    coverage: float = Field(
        0.9, gt=0, lt=1, description="nominal coverage of the bound on the largest atomic force error"
    )
    random_sample: int = Field(
        0,
        ge=0,
        description="frames per round drawn uniformly from the explored frames that are neither failed nor selected, "
        "labelled so the bound is not fitted on the high-deviation tail alone (counted in the budget; marked "
        "calibration_sample in provenance)",
    )
    min_per_element: int = Field(
        20,
        ge=2,
        description="residuals an element needs for its own scale in the record (element of the most-deviating atom)",
    )


class ErrorTrust(Settings):
    """A trust window in error units (eV/Angstrom) on the calibrated bound (``selection.trust``)."""

    error_lo: float = Field(gt=0, description="eV/Angstrom; a frame whose bound is below this is accurate")
    error_hi: float = Field(gt=0, description="eV/Angstrom; a frame whose bound is at or above this is failed")
    coverage: float | None = Field(
        None, gt=0, lt=1, description="nominal coverage of the bound the window reads (None: selection.bound.coverage)"
    )

    @model_validator(mode="after")
    def _order(self):
        if not self.error_lo < self.error_hi:
            raise ValueError(
                f"selection.trust.error_lo ({self.error_lo}) must be lower than selection.trust.error_hi "
                f"({self.error_hi})"
            )
        return self


def bound_of(residuals: Sequence[dict] | None, coverage: float) -> ConformalBound | None:
    """The pooled conformal bound of ``residuals`` (the calibration document's) at ``coverage``;
    None without residuals."""
    if not residuals:
        return None
    return fit_conformal(residuals, coverage, None)


def deviation_levels(trust: ErrorTrust, bound: ConformalBound | None) -> tuple[float, float] | None:
    """The deviation levels (trust_lo, trust_hi), eV/Angstrom, equal to the error window ``trust``
    under ``bound`` (error / q); None while the bound is not finite."""
    if bound is None or not bound.finite or bound.scale <= 0:
        return None
    return trust.error_lo / bound.scale, trust.error_hi / bound.scale


def share_below(deviations, bound: ConformalBound | None, target: float) -> float | None:
    """The share of frames (their ``deviations``, eV/Angstrom) whose bound is below ``target``
    (eV/Angstrom; a frame with a non-finite deviation is not); None while the bound is not finite."""
    eps = np.asarray(deviations, dtype=float).reshape(-1)
    if bound is None or not bound.finite or not len(eps):
        return None
    b = bound.bounds(eps)
    with np.errstate(invalid="ignore"):
        return float(np.mean(np.isfinite(b) & (b < target)))
