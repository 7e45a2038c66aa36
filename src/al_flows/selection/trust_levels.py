"""The trust window of DP-GEN (Zhang et al.; docs/methods.md): the selection settings and the class
of each explored frame.

A frame's model deviation eps (eV/Angstrom, ``info['deviation']``) classifies it:
eps < trust_lo accurate (skip), trust_lo <= eps < trust_hi candidate (label),
eps >= trust_hi or non-finite failed (skip, likely unphysical). Which frames are then labelled
(the strategies and picks) is :mod:`al_flows.selection.strategies`; when a campaign stops is its
stop policy's (:mod:`al_flows.active_learning.stop_policy`).

``trust_lo: adaptive`` sets the lower level each round from the round's own deviations, so that a
set number or fraction of the highest-deviation frames below trust_hi are candidates
(:mod:`al_flows.selection.adaptive`, dpgen2's adaptive lower level).
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import Field, model_validator

from al_flows.selection.adaptive import AdaptiveLevelSettings, adaptive_trust_lo
from al_flows.selection.calibration import CalibrationSettings
from al_flows.selection.diversity import DiverseFeatures
from al_flows.selection.error_bounds import BoundSettings, ErrorTrust
from al_flows.settings import Settings

ACCURATE, CANDIDATE, FAILED = "accurate", "candidate", "failed"


class SelectionSettings(Settings):
    """Trust window (eV/Angstrom) and the cap on frames labelled per round."""

    trust_lo: Annotated[float, Field(ge=0)] | Literal["adaptive"] = Field(
        0.05,
        description="eV/Angstrom; below: accurate. 'adaptive': set each round so that the highest-deviation frames "
        "below trust_hi become candidates (selection.adaptive; al_flows.selection.adaptive)",
    )
    trust_hi: float = Field(0.30, gt=0, description="eV/Angstrom; at or above: failed")
    strategy: Literal["deviation", "random", "all"] = Field(
        "deviation",
        description="which explored frames are labelled: deviation (candidates inside the trust window, picked by "
        "'pick' up to max_candidates), random (max_candidates frames drawn uniformly from everything explored: the "
        "baseline active learning must beat), all (every explored frame, up to max_candidates, evenly spread)",
    )
    max_candidates: int = Field(20, gt=0, description="frames labelled per round at most")
    pick: Literal["random", "highest", "diverse"] = Field(
        "random",
        description="strategy deviation: how candidates are capped: random (seeded draw), highest (largest "
        "deviations), diverse (farthest-point sampling in the ensemble's SchNet feature space, from the highest "
        "deviation; al_flows.selection.diversity)",
    )
    diverse_features: DiverseFeatures = Field(
        "structure",
        description="pick diverse: structure (per frame the mean of its atom features, Euclidean distance) or atoms "
        "(the frames' sets of atom features, symmetric Hausdorff distance: for large cells)",
    )
    calibrate: CalibrationSettings | None = Field(
        None,
        description="fit deviation -> true error after each round and set the next round's levels from target errors",
    )
    adaptive: AdaptiveLevelSettings | None = Field(
        None, description="trust_lo: adaptive: how many frames become candidates, floor, ceiling, convergence"
    )
    bound: BoundSettings = Field(
        default_factory=BoundSettings,
        description="the calibrated error bound every round records: its coverage and the uniformly drawn "
        "calibration labels (al_flows.selection.conformal)",
    )
    trust: ErrorTrust | None = Field(
        None,
        description="a trust window in error units on the calibrated bound (error_lo, error_hi, coverage); "
        "trust_lo/trust_hi apply until a finite bound exists",
    )

    @model_validator(mode="after")
    def _window(self):
        if self.trust_lo == "adaptive":
            self._check_adaptive()
        elif self.adaptive is not None:
            raise ValueError(
                f"selection.adaptive applies to trust_lo: adaptive only (trust_lo is {self.trust_lo}); "
                "set trust_lo: adaptive or remove selection.adaptive"
            )
        elif not self.trust_lo < self.trust_hi:
            raise ValueError(
                f"selection.trust_lo ({self.trust_lo}) must be lower than selection.trust_hi ({self.trust_hi})"
            )
        if self.diverse_features != "structure" and self.pick != "diverse":
            raise ValueError(
                f"selection.diverse_features={self.diverse_features!r} applies to pick: diverse only "
                f"(pick is {self.pick!r}); set pick: diverse or remove diverse_features"
            )
        return self

    @model_validator(mode="after")
    def _error_window(self):
        if self.trust is None:
            return self
        for name, on in (("trust_lo: adaptive", self.is_adaptive), ("selection.calibrate", self.calibrate is not None)):
            if on:
                raise ValueError(f"selection.trust (error units) and {name} both set the trust levels; keep one")
        return self

    @property
    def trust_coverage(self) -> float:
        """The nominal coverage of the bound an error-unit window reads."""
        if self.trust is not None and self.trust.coverage is not None:
            return self.trust.coverage
        return self.bound.coverage

    def _check_adaptive(self) -> None:
        if self.calibrate is not None:
            raise ValueError(
                "selection.trust_lo: adaptive and selection.calibrate both set the lower trust level; keep one"
            )
        ceiling = self.adaptive_settings.ceiling
        if ceiling is not None and ceiling > self.trust_hi:
            raise ValueError(
                f"selection.adaptive.ceiling ({ceiling}) is above selection.trust_hi ({self.trust_hi}); "
                "lower the ceiling or remove it (trust_hi is the ceiling then)"
            )

    @property
    def is_adaptive(self) -> bool:
        """Whether each round sets its own trust_lo from its deviations (trust_lo: adaptive)."""
        return self.trust_lo == "adaptive"

    @property
    def adaptive_settings(self) -> AdaptiveLevelSettings:
        """The adaptive level's settings (``selection.adaptive``, else their defaults)."""
        return self.adaptive if self.adaptive is not None else AdaptiveLevelSettings()

    @property
    def needs_features(self) -> bool:
        """Whether selecting needs the ensemble's features (strategy deviation with pick diverse)."""
        return self.strategy == "deviation" and self.pick == "diverse"


def classify(deviations, trust_lo: float, trust_hi: float) -> np.ndarray:
    """Status per deviation (eV/Angstrom): 'accurate' (< lo), 'candidate' (lo <= eps < hi),
    'failed' (>= hi or non-finite). Returns a numpy array of str."""
    eps = np.asarray(deviations, dtype=float).reshape(-1)
    status = np.full(eps.shape, FAILED, dtype="<U9")
    finite = np.isfinite(eps)
    status[finite & (eps < trust_lo)] = ACCURATE
    status[finite & (eps >= trust_lo) & (eps < trust_hi)] = CANDIDATE
    return status


def round_trust_lo(deviations: np.ndarray, settings: SelectionSettings) -> float:
    """The lower trust level (eV/Angstrom) a round classifies with: the configured (or calibrated)
    number, or with ``trust_lo: adaptive`` the level set from this round's ``deviations``
    (:func:`al_flows.selection.adaptive.adaptive_trust_lo`)."""
    if settings.trust_lo == "adaptive":
        return adaptive_trust_lo(deviations, settings.trust_hi, settings.adaptive_settings)
    return float(settings.trust_lo)
