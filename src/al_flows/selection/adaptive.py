"""An adaptive lower trust level (dpgen2's ``adaptive-lower`` exploration report; docs/methods.md).

With fixed trust levels, a wide window makes nearly every explored frame a candidate, and the cap
on labels per round then draws uniformly from everything explored: deviation selection becomes
random selection. The adaptive lower level keeps the window narrow instead. Each round, of the
frames that did not fail (finite deviation eps < trust_hi, eV/Angstrom), the
``n = max(n_candidates, floor(fraction * n_not_failed))`` with the highest deviation become
candidates (all of them when fewer are left): ``trust_lo`` is set to the n-th highest deviation,
so frames at or above it are candidates and the rest accurate. The level is then held within
``[floor, ceiling]`` (eV/Angstrom), which may change the number of candidates: a floor keeps
converged models from labelling frames whose deviation is below any useful error, a ceiling
keeps a round with a wide spread from counting poor frames accurate.

dpgen2 counts a stage as converged when trust_lo stops moving: every step between consecutive
levels of the last ``checked_rounds`` rounds is smaller than ``tolerance`` (eV/Angstrom). The
accurate ratio means nothing here (the candidate share is fixed by construction), so this takes
its place as the convergence test of the trust window.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import Field, model_validator

from al_flows.settings import Settings

__all__ = ["AdaptiveLevelSettings", "adaptive_trust_lo", "levels_settled"]


class AdaptiveLevelSettings(Settings):
    """How ``selection.trust_lo: adaptive`` sets each round's lower trust level (module doc)."""

    n_candidates: int = Field(
        20, ge=0, description="at least this many of the highest-deviation frames below trust_hi become candidates"
    )
    fraction: float = Field(
        0.0, ge=0, le=1, description="or this fraction of the frames below trust_hi, whichever is more"
    )
    floor: float = Field(0.0, ge=0, description="eV/Angstrom; trust_lo is never set below this")
    ceiling: float | None = Field(
        None, gt=0, description="eV/Angstrom; trust_lo is never set above this (None: trust_hi)"
    )
    tolerance: float = Field(
        0.005, gt=0, description="eV/Angstrom; converged when trust_lo moved less than this between checked rounds"
    )
    checked_rounds: int = Field(2, ge=2, description="rounds whose consecutive levels must all agree within tolerance")

    @model_validator(mode="after")
    def _bounds(self):
        if self.ceiling is not None and not self.floor < self.ceiling:
            raise ValueError(
                f"selection.adaptive.floor ({self.floor}) must be lower than selection.adaptive.ceiling "
                f"({self.ceiling})"
            )
        return self


def adaptive_trust_lo(
    deviations: Sequence[float] | np.ndarray, trust_hi: float, settings: AdaptiveLevelSettings
) -> float:
    """This round's lower trust level (eV/Angstrom) from its frames' deviations (module doc).

    With no frame below ``trust_hi`` (or ``n`` = 0) the level is ``trust_hi``, clipped to the
    ceiling: nothing is a candidate. Ties at the level are all candidates (eps >= trust_lo)."""
    eps = np.asarray(deviations, dtype=float).reshape(-1)
    kept = np.sort(eps[np.isfinite(eps) & (eps < trust_hi)])
    n = min(max(settings.n_candidates, int(np.floor(settings.fraction * kept.size))), kept.size)
    level = float(kept[-n]) if n > 0 else float(trust_hi)
    ceiling = trust_hi if settings.ceiling is None else min(settings.ceiling, trust_hi)
    return float(min(max(level, settings.floor), ceiling))


def levels_settled(levels: Sequence[float], settings: AdaptiveLevelSettings) -> bool:
    """Whether the trust_lo of the last ``checked_rounds`` rounds (``levels``, oldest first,
    this round last; eV/Angstrom) stopped moving: every consecutive step is below ``tolerance``.
    False while fewer rounds have run."""
    last = [float(x) for x in levels][-settings.checked_rounds :]
    if len(last) < settings.checked_rounds:
        return False
    return all(abs(b - a) < settings.tolerance for a, b in zip(last, last[1:], strict=False))
