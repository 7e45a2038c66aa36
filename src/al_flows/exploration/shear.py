"""Perturbed stochastic shear exploration (Sprueill et al.; docs/methods.md).

Each step of a run: (1) add N(0, sigma^2) noise (Angstrom) to every coordinate, a
fresh draw per step from a generator seeded by (seed, run); (2) shear the cell by
adding ``shear_step`` (Angstrom) to cell[0,1] and cell[0,2] (a1's y and z; shear
along [011]), atoms scaled with the cell; (3) relax the internal coordinates at
fixed cell to ``fmax`` (eV/Angstrom). The relaxed frame of every step is recorded
until the shear strain gamma = sqrt(cell[0,1]^2 + cell[0,2]^2) / cell[0,0] reaches ``gamma_max``. The
number of steps follows from ``gamma_max``, ``shear_step`` and the cell (:func:`steps_to_gamma`: 42 steps
of 0.1 Angstrom on the 17.9 Angstrom paper-size cell); ``max_steps``, when set, caps it, and a cap that
cannot reach ``gamma_max`` is refused when the campaign is checked (:func:`check_reaches_gamma`).
Gamma is measured against a first cell vector along +x: a starting structure whose a1 is not along x
(a cut crystal from DP-GEN's displaced halves, a cell from a file) is first rotated rigidly into ASE's
standard form (:func:`shear_start`), so every run starts at gamma 0.

Blow-ups (:mod:`al_flows.exploration.replica_checks`): a run whose relaxation raises or yields non-finite
energy/forces, or whose relaxed frame has a force above 100 eV/Angstrom or two atoms closer than
0.5 Angstrom, ends there without that frame (the frames of its earlier steps are kept) and is
recorded in ``dropped`` (replica, structure, run, parent_id, seed, step, reason); the other runs are
not affected. No exception is raised (out-of-memory errors excepted).

:func:`explore_shear` runs the replicas (structure, run) one after the other with any ASE
calculator; :func:`explore_shear_batched` runs all of them in lockstep with an ensemble: every
shear step perturbs and shears each running replica (same noise streams), then relaxes all of
them together with :func:`al_flows.exploration.batched_relax.relax_batched` (one batched ensemble prediction
per optimiser step), and gives the frames :func:`explore_shear` gives with the ensemble's
calculator, up to the floating-point round-off of batched model evaluation.

Here: the settings (:class:`ShearSettings`) and the levels of their schedule (:func:`shear_level`).
The cell geometry and step counts are :mod:`al_flows.exploration.shear_geometry`, the pieces of one
step both runners share :mod:`al_flows.exploration.shear_steps`, the runs one after the other
:mod:`al_flows.exploration.shear_sequential` and in lockstep :mod:`al_flows.exploration.shear_batched`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from al_flows.exploration.auto_schedule import AutoSchedule, level_values
from al_flows.settings import Settings


class ShearSettings(Settings):
    """Settings of the stochastic shear explorer (lengths in Angstrom, forces in eV/Angstrom)."""

    n_runs: int = Field(default=4, gt=0, description="independent runs per starting structure")
    sigma: float = Field(default=0.05, ge=0, description="Angstrom, std of the perturbation per coordinate per step")
    shear_step: float = Field(default=0.1, gt=0, description="Angstrom added to cell[0,1] and cell[0,2] per step")
    gamma_max: float = Field(default=0.33, gt=0, description="stop once the shear strain reaches this")
    max_steps: int | None = Field(
        default=None,
        gt=0,
        description="cap on shear steps per run; default: as many as gamma_max needs on each cell "
        "(a cap too small to reach gamma_max is refused)",
    )
    fmax: float = Field(default=0.002, gt=0, description="eV/Angstrom, relaxation force tolerance")
    max_opt_steps: int = Field(default=500, gt=0, description="optimiser steps per relaxation")
    optimizer: Literal["BFGS", "LBFGS", "FIRE"] = "BFGS"
    optimizer_engine: Literal["torch", "ase"] = Field(
        default="torch",
        description="batched exploration: 'torch' steps every running replica at once with one batched optimiser "
        "(ASE's BFGS, LBFGS or FIRE as tensor operations on the ensemble's device) and keeps neighbour lists with a "
        "skin; 'ase': one ASE optimiser per replica and every neighbour list rebuilt every step (the reference, and "
        "what earlier versions ran); the same frames up to float round-off",
    )
    batched: bool = Field(
        default=True,
        description="explore with an ensemble by relaxing all replicas in lockstep (one batched ensemble "
        "prediction per optimiser step for every running replica, stepped by optimizer_engine); false: "
        "one replica after the other",
    )
    schedule: AutoSchedule | None = Field(
        default=None,
        description="exploration that schedules itself: gamma_max levels between schedule.gamma_max bounds, moved "
        "up or back from each round's outcome (al_flows.exploration.auto_schedule)",
    )

    @model_validator(mode="after")
    def _schedule(self):
        if self.schedule is None:
            return self
        if self.schedule.gamma_max is None:
            raise ValueError("schedule.gamma_max: a shear schedule needs [lowest, highest] shear strains")
        if self.schedule.temperatures_K is not None or self.schedule.pressures_GPa is not None:
            raise ValueError(
                "schedule.temperatures_K / pressures_GPa are for md explorers; a shear schedule takes gamma_max"
            )
        if self.given({"gamma_max"}):
            raise ValueError("schedule replaces gamma_max: give schedule.gamma_max: [lowest, highest]")
        return self


def shear_level(settings: ShearSettings, stage: int) -> ShearSettings:
    """The settings of level ``stage`` of ``settings.schedule`` (its gamma_max, no schedule), or
    ``settings`` themselves without a schedule."""
    sched = getattr(settings, "schedule", None)
    if sched is None or sched.gamma_max is None:
        return settings
    gamma = level_values(sched.gamma_max, sched.n_levels)[min(max(stage, 0), sched.n_levels - 1)]
    return settings.model_copy(update={"gamma_max": gamma, "schedule": None})
