"""A calibrated upper bound on a frame's force error from the ensemble deviation: split conformal
prediction on the ratio of true error to deviation (docs/methods.md, "Calibrated error bounds").

Each labelled frame gives a residual: its deviation eps (the largest atomic force deviation of the
ensemble that explored it, eV/Angstrom) and its true error err (the largest atomic force error of
that ensemble's mean against the label, eV/Angstrom), both measured before the frame is trained
on. The score is s = err / eps. Split conformal prediction (Vovk, Gammerman and Shafer,
"Algorithmic Learning in a Random World"; Angelopoulos and Bates, "A gentle introduction to
conformal prediction and distribution-free uncertainty quantification"): with n calibration
scores and a nominal coverage 1 - alpha, the scale q is the k-th smallest score,
k = ceil((n + 1)(1 - alpha)); for a new frame exchangeable with the calibration frames

    P(err <= q * eps) >= 1 - alpha        (and < 1 - alpha + 1/(n + 1) without ties).

With k > n there is no finite bound (q = inf): 90 % needs at least 9 residuals.

Per element (a Mondrian conformal predictor, Vovk et al.): a frame's group is the element of its
most-deviating atom; a group with at least ``min_per_element`` residuals gets its own scale, the
other frames use the pooled one. The guarantee then holds within each group.

What is assumed: the new frame and the calibration frames are exchangeable: drawn alike from the
same distribution, by ensembles whose error-to-deviation ratio is alike. Frames picked for their
high deviation are the tail of what is explored, not a draw from it, which is why a campaign may
label a few uniformly drawn frames each round (``selection.bound.random_sample``). The bound fails
for frames unlike any labelled (out of distribution: a new phase, a much larger strain, a
temperature never explored) and drifts as the ensemble changes round to round; the coverage each
round measures on frames it had not seen is the check.

Pure code: numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["conformal_scale", "ConformalBound", "fit_conformal", "scores_of", "covered"]


def scores_of(points: Sequence[dict]) -> np.ndarray:
    """Scores err / eps of residual ``points`` (dicts with ``deviation`` and ``error``, eV/Angstrom);
    points with a non-finite or non-positive deviation, or a non-finite error, are left out."""
    eps = np.array([float(p["deviation"]) for p in points], dtype=float)
    err = np.array([float(p["error"]) for p in points], dtype=float)
    ok = np.isfinite(eps) & (eps > 0) & np.isfinite(err)
    return err[ok] / eps[ok]


def conformal_scale(scores: Sequence[float] | np.ndarray, coverage: float) -> float:
    """The split-conformal scale q of ``scores`` at nominal ``coverage`` (0 < coverage < 1): the
    ceil((n + 1) coverage)-th smallest score; inf when that exceeds n (too few scores)."""
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must lie between 0 and 1 (exclusive), got {coverage}")
    s = np.sort(np.asarray(scores, dtype=float))
    k = math.ceil((len(s) + 1) * coverage)
    return float(s[k - 1]) if k <= len(s) else float("inf")


@dataclass(frozen=True)
class ConformalBound:
    """The fitted bound: ``scale`` (pooled q, dimensionless) from ``n`` residuals at nominal
    ``coverage``, and per element the scales of groups with enough residuals (``per_element``:
    element -> {scale, n})."""

    coverage: float
    scale: float
    n: int
    per_element: dict[str, dict] = field(default_factory=dict)

    @property
    def finite(self) -> bool:
        """Whether the bound says anything (enough residuals for the coverage)."""
        return math.isfinite(self.scale)

    def scale_for(self, element: str | None) -> float:
        """The scale of a frame whose most-deviating atom is ``element`` (pooled when the element has
        no group of its own)."""
        group = self.per_element.get(element or "")
        return float(group["scale"]) if group else self.scale

    def bounds(self, deviations, elements: Sequence[str | None] | None = None) -> np.ndarray:
        """Upper bounds (eV/Angstrom) on the largest atomic force error of frames with ``deviations``
        (eV/Angstrom) and most-deviating atoms ``elements`` (None: pooled scale for all): q * eps;
        inf where the bound is not finite, nan where the deviation is not."""
        eps = np.asarray(deviations, dtype=float).reshape(-1)
        els = list(elements) if elements is not None else [None] * len(eps)
        q = np.array([self.scale_for(e) for e in els], dtype=float)
        with np.errstate(invalid="ignore"):
            return np.where(np.isfinite(eps), q * eps, np.nan)

    def as_dict(self) -> dict:
        """A plain dict (JSON-safe: inf written as None)."""
        return {
            "coverage": self.coverage,
            "scale": self.scale if self.finite else None,
            "n": self.n,
            "per_element": self.per_element,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ConformalBound:
        """The inverse of :meth:`as_dict`."""
        scale = d.get("scale")
        return cls(
            coverage=float(d["coverage"]),
            scale=float("inf") if scale is None else float(scale),
            n=int(d["n"]),
            per_element=dict(d.get("per_element") or {}),
        )


def fit_conformal(points: Sequence[dict], coverage: float, min_per_element: int | None = 20) -> ConformalBound:
    """The bound of residual ``points`` (dicts with ``deviation``, ``error`` and optionally ``element``,
    the element of the most-deviating atom) at nominal ``coverage``; groups per element with at least
    ``min_per_element`` residuals (None: pooled only)."""
    pooled = scores_of(points)
    per_element: dict[str, dict] = {}
    if min_per_element is not None:
        for element in sorted({str(p["element"]) for p in points if p.get("element")}):
            s = scores_of([p for p in points if p.get("element") == element])
            if len(s) >= min_per_element:
                q = conformal_scale(s, coverage)
                if math.isfinite(q):
                    per_element[str(element)] = {"scale": q, "n": int(len(s))}
    return ConformalBound(coverage, conformal_scale(pooled, coverage), int(len(pooled)), per_element)


def covered(bound: ConformalBound, points: Sequence[dict]) -> np.ndarray:
    """Per point (dicts with ``deviation``, ``error``, optionally ``element``): whether its error is at
    most its bound (False where the deviation is not finite)."""
    b = bound.bounds([p["deviation"] for p in points], [p.get("element") for p in points])
    err = np.array([float(p["error"]) for p in points], dtype=float)
    with np.errstate(invalid="ignore"):
        return (np.isfinite(b) & (err <= b)) | np.isposinf(b)
