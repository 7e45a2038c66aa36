"""Exploration that schedules itself between bounds (``explorers[].schedule``).

DP-GEN users write the conditions of every exploration stage by hand (temperatures, pressures,
when to move on). With an auto schedule a user gives bounds instead: ``n_levels`` evenly spaced
levels from the lowest to the highest condition (MD: temperature and, for NPT, pressure; shear:
the strain ``gamma_max`` a run goes to). The campaign starts at level 0; after each round
(:class:`al_flows.active_learning.stop_policy.StopPolicy`):

- the round met the convergence targets (accurate ratio, ...): the next round explores the next
  level; met at the highest level: the campaign has converged;
- else, more than ``step_back_failed_ratio`` of the explored frames failed (deviation at or above
  ``trust_hi``: the ensemble is lost there): the next round steps back one level (not below 0);
- else the next round stays at this level.

So the level moves up as the potential learns and back when exploration outruns it. The level of
every round is stored (``stage`` of the selection document and round summary) and plotted.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from al_flows.settings import Settings

__all__ = ["AutoSchedule", "level_values"]


def _bounds(name: str, pair: tuple[float, float] | None) -> None:
    if pair is not None and not pair[0] <= pair[1]:
        raise ValueError(f"schedule.{name}: give [lowest, highest], got {list(pair)}")


class AutoSchedule(Settings):
    """Levels between bounds, moved up or back from each round's outcome (module doc)."""

    n_levels: int = Field(4, ge=2, description="levels from the lowest to the highest condition, evenly spaced")
    step_back_failed_ratio: float | None = Field(
        0.2,
        gt=0,
        le=1,
        description="a round with more failed frames than this fraction steps back one level (None: never)",
    )
    temperatures_K: tuple[float, float] | None = Field(None, description="md: [lowest, highest] temperature (K)")
    pressures_GPa: tuple[float, float] | None = Field(
        None, description="md with ensemble npt: [lowest, highest] pressure (GPa), raised with the temperature"
    )
    gamma_max: tuple[float, float] | None = Field(
        None, description="shear: [lowest, highest] shear strain a run goes to"
    )

    @model_validator(mode="after")
    def _ordered(self):
        _bounds("temperatures_K", self.temperatures_K)
        _bounds("pressures_GPa", self.pressures_GPa)
        _bounds("gamma_max", self.gamma_max)
        if self.temperatures_K is not None and self.temperatures_K[0] <= 0:
            raise ValueError("schedule.temperatures_K: temperatures must be positive (Kelvin)")
        if self.gamma_max is not None and self.gamma_max[0] <= 0:
            raise ValueError("schedule.gamma_max: strains must be positive")
        return self


def level_values(bounds: tuple[float, float], n_levels: int) -> list[float]:
    """``n_levels`` evenly spaced values from ``bounds[0]`` to ``bounds[1]`` (both included)."""
    return [float(v) for v in np.linspace(bounds[0], bounds[1], n_levels)]
