"""Molecular-dynamics explorers driven by the ensemble (ANI-Al and DP-GEN; docs/methods.md).

Both run :func:`al_flows.exploration.langevin.run_batched_langevin`: all trajectories of a call advance
together with one batched ensemble prediction per step (Langevin BAOAB at fixed cell, or NPT with an
isotropic Berendsen barostat; blow-ups dropped, see that module). Units: Angstrom, eV, amu, fs, K, GPa.

- :func:`langevin_schedule` (ANI-Al, Smith et al.): each trajectory starts from a newly generated
  random cell (``start: random_cells``; ``structures``: from the campaign's starting structures),
  draws T_start, T_end, T_mod, t_0 and follows
  ``T(t) = T_start + (t/t_max)(T_end - T_start) + T_mod sin^2(pi t / t_0)``; it stops as soon as
  the ensemble's size-intensive energy spread (the members' per-atom energies, each member's mean
  removed; :mod:`al_flows.potential.atom_energies`) reaches ``stop_energy_spread_intensive`` (or, with
  ``stop_measure: energy_spread``, the method's rho = sigma_E / sqrt(N) reaches ``stop_energy_spread``;
  with ``stop_measure: force_deviation``, the force deviation reaches ``stop_deviation``). The stop
  frame (``info['stopped'] = True``) is always labelled (``info['always_label']``); the other
  snapshots only measure the accurate ratio unless ``select_snapshots`` (``info['selectable']``).
  :func:`survival_times` gives each trajectory's time before it stopped (the convergence test of
  the method: trajectories that survive long without tripping the threshold).
- :func:`nvt_explore` (DP-GEN, Zhang et al.): constant temperature per call (the campaign raises
  it with the round), frames recorded every ``record_every`` steps, no early stop.

Snapshots every ``record_every`` steps are returned too: they measure how much of the
trajectory the ensemble already describes (the accurate ratio).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from ase import Atoms
from pydantic import Field, model_validator

from al_flows.exploration.auto_schedule import AutoSchedule, level_values
from al_flows.exploration.langevin import Barostat, LangevinRun, run_batched_langevin
from al_flows.settings import Settings, Temperatures
from al_flows.structures.generators import RandomCellSettings, random_cells

__all__ = [
    "ScheduleSettings",
    "NVTSettings",
    "MDStage",
    "round_stage",
    "stage_count",
    "schedule_temperature",
    "draw_schedule",
    "langevin_schedule",
    "survival_times",
    "nvt_explore",
]


# eV, the default threshold of stop_measure energy_spread_intensive (calibration: docs/methods.md)
STOP_ENERGY_SPREAD_INTENSIVE = 0.05


def _range(lo_hi) -> tuple[float, float]:
    lo, hi = (float(x) for x in lo_hi)
    if lo > hi:
        raise ValueError(f"range ({lo}, {hi}): the first value must not exceed the second")
    return lo, hi


class ScheduleSettings(Settings):
    """ANI-Al sampler: Langevin MD with a randomised temperature schedule and early stop."""

    n_runs: int = Field(default=8, gt=0, description="trajectories per round, run as one batch")
    t_start_K: tuple[float, float] = Field(default=(10.0, 1000.0), description="K, uniform range of T_start")
    t_end_K: tuple[float, float] = Field(default=(10.0, 600.0), description="K, uniform range of T_end")
    t_mod_K: tuple[float, float] = Field(default=(0.0, 2000.0), description="K, uniform range of T_mod")
    t0_ps: tuple[float, float] = Field(
        default=(10.0, 50.0), description="ps, uniform range of the modulation period t_0"
    )
    t_max_ps: float = Field(default=5.0, gt=0, description="ps, trajectory length (the schedule's t_max)")
    timestep_fs: float = Field(default=1.0, gt=0)
    friction_per_ps: float = Field(default=5.0, gt=0, description="Langevin friction, 1/ps")
    start: Literal["random_cells", "structures"] = Field(
        default="random_cells",
        description="random_cells: every trajectory from a newly generated random cell (the method); "
        "structures: from the campaign's starting structures, reused round after round",
    )
    cells: RandomCellSettings = Field(
        default_factory=RandomCellSettings,
        description="start random_cells: edges, density and minimum distance of the fresh cells (the paper's by "
        "default; n_cells is not used: one cell per trajectory)",
    )
    stop_measure: Literal["energy_spread_intensive", "energy_spread", "force_deviation"] = Field(
        default="energy_spread_intensive",
        description="energy_spread_intensive: stop when the spread of the members' per-atom energies, each member's "
        "mean removed, reaches stop_energy_spread_intensive (does not grow with the cell's size); energy_spread: "
        "when sigma_E/sqrt(N) reaches stop_energy_spread (the method's; larger cells stop earlier); "
        "force_deviation: when the force deviation reaches stop_deviation",
    )
    stop_energy_spread_intensive: float = Field(
        default=STOP_ENERGY_SPREAD_INTENSIVE,
        gt=0,
        description="eV; stop_measure energy_spread_intensive: a trajectory stops when the size-intensive energy "
        "spread reaches this (default calibrated as docs/methods.md says)",
    )
    stop_energy_spread: float = Field(
        default=0.10,
        gt=0,
        description="eV; stop_measure energy_spread: a trajectory stops when sigma_E/sqrt(N_atoms) reaches this "
        "(default calibrated as docs/methods.md says)",
    )
    stop_deviation: float = Field(
        default=0.15,
        gt=0,
        description="eV/Angstrom; stop_measure force_deviation: a trajectory stops when the deviation reaches this",
    )
    record_every: int = Field(default=100, gt=0, description="steps between recorded snapshots")
    label_stop_frames: bool = Field(
        default=True,
        description="label every stop frame, outside the trust window and the cap (selection strategy deviation)",
    )
    select_snapshots: bool = Field(
        default=False,
        description="let the recorded snapshots go through the usual selection too; false: they only measure the "
        "accurate ratio",
    )

    @model_validator(mode="after")
    def _ranges(self):
        for name in ("t_start_K", "t_end_K", "t_mod_K", "t0_ps"):
            _range(getattr(self, name))
        if min(self.t_start_K[0], self.t_end_K[0]) <= 0 or self.t0_ps[0] <= 0 or self.t_mod_K[0] < 0:
            raise ValueError("temperatures and t0 must be positive (T_mod may be 0)")
        if not (self.label_stop_frames or self.select_snapshots):
            raise ValueError(
                "label_stop_frames and select_snapshots are both false, so this explorer would label nothing; "
                "set one of them to true"
            )
        return self


class MDStage(Settings):
    """One stage of DP-GEN's exploration (an entry of its ``model_devi_jobs``): every starting system
    of ``systems`` runs ``n_runs`` trajectories at every temperature and (NPT) pressure."""

    temperatures_K: Temperatures = Field(min_length=1, description="K; every one is run in this stage")
    pressures_GPa: list[float] = Field(
        default=[0.0], min_length=1, description="GPa; ensemble npt: every one is run (nvt: ignored)"
    )
    ensemble: Literal["nvt", "npt"] = Field(default="nvt", description="nvt: fixed cell; npt: Berendsen barostat")
    n_steps: int = Field(default=2000, gt=0, description="MD steps per trajectory")
    n_runs: int = Field(default=1, gt=0, description="trajectories per starting system, temperature and pressure")
    systems: list[int] | None = Field(
        default=None, description="indices of the starting structures this stage runs from (default: all)"
    )


class NVTSettings(Settings):
    """DP-GEN sampler: NVT (or, with ``ensemble="npt"``, NPT: isotropic Berendsen barostat) Langevin
    MD; round k runs at ``temperatures_K[min(k, len - 1)]``."""

    n_runs: int = Field(default=4, gt=0, description="trajectories per starting structure")
    n_starts: int | None = Field(
        default=None, gt=0, description="starting structures drawn (seeded) per round; default all"
    )
    temperatures_K: Temperatures = Field(
        default=[300.0, 600.0, 900.0, 1200.0], min_length=1, description="K per round, raised with the round"
    )
    n_steps: int = Field(default=2000, gt=0)
    timestep_fs: float = Field(default=1.0, gt=0)
    friction_per_ps: float = Field(default=5.0, gt=0)
    record_every: int = Field(default=50, gt=0)
    ensemble: Literal["nvt", "npt"] = Field(
        default="nvt", description="nvt: fixed cell; npt: isotropic Berendsen barostat"
    )
    pressure_GPa: float = Field(default=0.0, description="GPa, target pressure of the barostat (npt)")
    barostat_tau_ps: float = Field(default=0.5, gt=0, description="ps, Berendsen barostat time constant (npt)")
    compressibility_per_GPa: float = Field(
        default=0.01, gt=0, description="1/GPa, compressibility assumed by the barostat (npt)"
    )
    stages: list[MDStage] | None = Field(
        default=None,
        description="DP-GEN's staged exploration: the loop stays in a stage until its accurate ratio reaches the "
        "target, then moves on (replaces temperatures_K, n_steps, n_runs, ensemble and pressure_GPa)",
    )

    schedule: AutoSchedule | None = Field(
        default=None,
        description="exploration that schedules itself: levels between schedule.temperatures_K (and, npt, "
        "schedule.pressures_GPa) bounds, moved up or back from each round's outcome "
        "(al_flows.exploration.auto_schedule)",
    )

    @model_validator(mode="after")
    def _stages_or_rounds(self):
        clash = self.given({"temperatures_K", "n_steps", "n_runs", "ensemble", "pressure_GPa"})
        if self.stages is not None and clash:
            raise ValueError(
                f"stages replace {sorted(clash)}: give those per stage (stages[].temperatures_K, ...) or drop stages"
            )
        if self.schedule is None:
            return self
        if self.stages is not None:
            raise ValueError("give stages (written by hand) or schedule (levels between bounds), not both")
        given = self.given({"temperatures_K", "pressure_GPa"})
        if given:
            raise ValueError(
                f"schedule replaces {sorted(given)}: give schedule.temperatures_K / schedule.pressures_GPa"
            )
        if self.schedule.temperatures_K is None:
            raise ValueError("schedule.temperatures_K: an md schedule needs [lowest, highest] temperatures (K)")
        if self.schedule.gamma_max is not None:
            raise ValueError("schedule.gamma_max is for shear explorers; an md schedule takes temperatures_K")
        if self.schedule.pressures_GPa is not None and self.ensemble != "npt":
            raise ValueError("schedule.pressures_GPa needs ensemble: npt (nvt runs at fixed cell)")
        return self


def schedule_temperature(t_ps, t_start: float, t_end: float, t_mod: float, t0_ps: float, t_max_ps: float):
    """T(t) = T_start + (t/t_max)(T_end - T_start) + T_mod sin^2(pi t / t_0) (K; t in ps)."""
    t = np.asarray(t_ps, dtype=float)
    return t_start + (t / t_max_ps) * (t_end - t_start) + t_mod * np.sin(np.pi * t / t0_ps) ** 2


def draw_schedule(rng: np.random.Generator, s: ScheduleSettings) -> dict:
    """One trajectory's schedule parameters (K, ps) drawn uniformly from the settings' ranges."""
    return {
        "t_start": float(rng.uniform(*s.t_start_K)),
        "t_end": float(rng.uniform(*s.t_end_K)),
        "t_mod": float(rng.uniform(*s.t_mod_K)),
        "t0_ps": float(rng.uniform(*s.t0_ps)),
        "t_max_ps": float(s.t_max_ps),
    }


def langevin_schedule(
    structures: list[Atoms],
    ensemble,
    settings: ScheduleSettings,
    seed: int,
    explorer: str = "langevin",
    dropped: list[dict] | None = None,
) -> list[Atoms]:
    """ANI-Al exploration: ``n_runs`` trajectories, each from a fresh random cell of the elements of
    ``structures`` (``settings.start``; or from a start drawn from ``structures``) with its own
    temperature schedule, stopped early on high disagreement (see module doc); trajectories that
    blow up are appended to ``dropped``."""
    rng = np.random.default_rng((int(seed) & 0xFFFFFFFF, 17))
    picks = rng.integers(len(structures), size=settings.n_runs)
    schedules = [draw_schedule(rng, settings) for _ in range(settings.n_runs)]
    if settings.start == "random_cells":
        elements = sorted({s for a in structures for s in a.get_chemical_symbols()})
        cells = settings.cells.model_copy(update={"n_cells": settings.n_runs})
        starts = random_cells(cells, elements, int(rng.integers(2**62)))
        parents = [str(a.info["frame_id"]) for a in starts]
    else:
        starts = [structures[i] for i in picks]
        parents = [str(a.info.get("structure_id") or a.info.get("frame_id", "")) for a in starts]
    info = [
        {"explorer": explorer, "parent_id": parent, "start": settings.start, "schedule": sch}
        for parent, sch in zip(parents, schedules, strict=True)
    ]
    n_steps = int(round(settings.t_max_ps * 1000.0 / settings.timestep_fs))
    measure = settings.stop_measure
    run = LangevinRun(
        n_steps,
        settings.timestep_fs,
        settings.friction_per_ps,
        settings.record_every,
        int(rng.integers(2**62)),
        settings.stop_deviation if measure == "force_deviation" else None,
        stop_energy_spread=settings.stop_energy_spread if measure == "energy_spread" else None,
        stop_energy_spread_intensive=(
            settings.stop_energy_spread_intensive if measure == "energy_spread_intensive" else None
        ),
    )
    frames = run_batched_langevin(
        starts, ensemble, lambda k, t: float(schedule_temperature(t, **schedules[k])), run, info, dropped=dropped
    )
    for a in frames:
        if a.info["stopped"]:
            a.info["always_label"] = settings.label_stop_frames
        else:
            a.info["selectable"] = settings.select_snapshots
    return frames


def survival_times(frames: list[Atoms], dropped: list[dict], n_runs: int, t_max_ps: float) -> list[float]:
    """Per trajectory of one :func:`langevin_schedule` call (ps): the time of its stop frame, of its
    blow-up (a dropped trajectory: the ensemble failed there too), or ``t_max_ps`` when it ran to the end."""
    out = [float(t_max_ps)] * n_runs
    for d in dropped:
        out[int(d["replica"])] = float(d["time_ps"])
    for a in frames:
        if a.info.get("stopped"):
            out[int(a.info["run"])] = float(a.info["time_ps"])
    return out


def round_stage(settings: NVTSettings, round_: int, stage: int) -> MDStage:
    """What one call explores: stage ``stage`` of ``settings.stages`` (the last for a larger index),
    level ``stage`` of ``settings.schedule``, or, without either, round ``round_``'s temperature
    (``temperatures_K[min(round, last)]``)."""
    if settings.stages:
        return settings.stages[min(max(stage, 0), len(settings.stages) - 1)]
    if settings.schedule is not None:
        sched = settings.schedule
        level = min(max(stage, 0), sched.n_levels - 1)
        temps = level_values(sched.temperatures_K or (0.0, 0.0), sched.n_levels)
        pressures = level_values(sched.pressures_GPa, sched.n_levels) if sched.pressures_GPa else None
        return MDStage(
            temperatures_K=[temps[level]],
            pressures_GPa=[pressures[level] if pressures else settings.pressure_GPa],
            ensemble=settings.ensemble,
            n_steps=settings.n_steps,
            n_runs=settings.n_runs,
        )
    temp = float(settings.temperatures_K[min(max(round_, 0), len(settings.temperatures_K) - 1)])
    return MDStage(
        temperatures_K=[temp],
        pressures_GPa=[settings.pressure_GPa],
        ensemble=settings.ensemble,
        n_steps=settings.n_steps,
        n_runs=settings.n_runs,
    )


def stage_count(settings) -> int:
    """Stages (hand-written ``stages``) or levels (``schedule``) an explorer's settings move through; 1 for none."""
    if getattr(settings, "stages", None):
        return len(settings.stages)
    schedule = getattr(settings, "schedule", None)
    return schedule.n_levels if isinstance(schedule, AutoSchedule) else 1


def _fixed(temperatures: list[float]):
    """A temperature callback: trajectory k at ``temperatures[k]`` (K) throughout."""

    def temperature(k: int, t_ps: float) -> float:
        return temperatures[k]

    return temperature


def nvt_explore(
    structures: list[Atoms],
    ensemble,
    settings: NVTSettings,
    round_: int,
    seed: int,
    explorer: str = "md",
    dropped: list[dict] | None = None,
    stage: int = 0,
) -> list[Atoms]:
    """DP-GEN exploration: ``n_runs`` NVT (or NPT) trajectories per structure, temperature and
    pressure of :func:`round_stage` (one batched call per pressure); trajectories that blow up are
    appended to ``dropped``. Frames of a staged explorer carry ``info['stage']``."""
    what = round_stage(settings, round_, stage)
    staged = stage_count(settings) > 1
    if what.systems is not None:
        if max(what.systems) >= len(structures):
            raise ValueError(
                f"stages[{stage}].systems {what.systems}: only {len(structures)} starting structures; "
                f"use indices below {len(structures)}"
            )
        structures = [structures[i] for i in what.systems]
    if settings.n_starts is not None and settings.n_starts < len(structures):
        rng = np.random.default_rng((int(seed) & 0xFFFFFFFF, 19))
        structures = [structures[i] for i in sorted(rng.choice(len(structures), settings.n_starts, replace=False))]
    frames: list[Atoms] = []
    pressures = what.pressures_GPa if what.ensemble == "npt" else [None]
    for j, pressure in enumerate(pressures):
        runs = [(a, float(t)) for a in structures for t in what.temperatures_K for _ in range(what.n_runs)]
        info = [
            {
                "explorer": explorer,
                "parent_id": str(a.info.get("structure_id") or a.info.get("frame_id", "")),
                **({"stage": stage} if staged else {}),
                **({"target_pressure_GPa": pressure} if staged and pressure is not None else {}),
            }
            for a, _ in runs
        ]
        barostat = (
            None if pressure is None else Barostat(pressure, settings.barostat_tau_ps, settings.compressibility_per_GPa)
        )
        run = LangevinRun(
            what.n_steps,
            settings.timestep_fs,
            settings.friction_per_ps,
            settings.record_every,
            seed if j == 0 else int(np.random.SeedSequence([seed, j]).generate_state(1)[0]),
            None,
            barostat,
        )
        part: list[dict] = []
        frames += run_batched_langevin([a for a, _ in runs], ensemble, _fixed([t for _, t in runs]), run, info, part)
        if dropped is not None:
            dropped += part
    return frames
