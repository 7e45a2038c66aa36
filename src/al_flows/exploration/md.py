"""Molecular-dynamics explorers driven by the ensemble (ANI-Al and DP-GEN; docs/methods.md).

All trajectories of a call advance together: every step makes ONE batched ensemble prediction
for all running trajectories (mean forces drive the dynamics, the model deviation is read off
the same prediction). Integrator: Langevin BAOAB (Leimkuhler-Matthews) at fixed cell::

    v += dt/2 F/m;  x += dt/2 v;  v = c v + sqrt((1 - c^2) kT/m) xi;  x += dt/2 v;  F(x);  v += dt/2 F/m

with c = exp(-friction dt). Units: Angstrom, eV, amu, fs, K, GPa.

NPT (optional, ``pressure_GPa`` given): an isotropic Berendsen barostat per trajectory. After each
step's (batched) force and stress evaluation and the last half kick, the instantaneous pressure

    P = -trace(<stress>)/3 + sum_i m_i v_i^2 / (3 V)        (= -tr(sigma)/3 + N k_B T_kin / V)

(ensemble-mean ASE stress, tensile positive) sets the scale factor

    mu = (1 - beta dt/tau (P0 - P))^(1/3),  clipped to [0.99, 1.01],

and the cell and positions of that trajectory are scaled by mu (velocities are not), as ASE's
``NPTBerendsen``; beta = ``compressibility_per_GPa``, tau = ``barostat_tau_ps``. The ensemble is
asked for stresses (``predict(frames, stress=True)``) only in NPT; the NVT path is unchanged.

- :func:`langevin_schedule` (ANI-Al, Smith et al.): each trajectory draws T_start, T_end, T_mod,
  t_0 and follows ``T(t) = T_start + (t/t_max)(T_end - T_start) + T_mod sin^2(pi t / t_0)``;
  it stops as soon as the model deviation reaches ``stop_deviation`` and its last frame is
  returned (``info['stopped'] = True``) for selection.
- :func:`nvt_explore` (DP-GEN, Zhang et al.): constant temperature per call (the campaign raises
  it with the round), frames recorded every ``record_every`` steps, no early stop.

Snapshots every ``record_every`` steps are returned too: they measure how much of the
trajectory the ensemble already describes (the accurate ratio).

Blow-ups (:mod:`al_flows.exploration.replica_checks`): every step, before the prediction, a trajectory with
non-finite positions, an atom that moved more than 1 Angstrom in the step or two atoms closer than
0.5 Angstrom is dropped; after it, one whose evaluation raised (the others are predicted again
together), or whose energy/forces (stress in NPT) are not finite or whose largest force exceeds
100 eV/Angstrom, is dropped too (step 0: the starting structure). A dropped trajectory records no
more frames and is described in ``dropped`` (replica, parent_id, step, time_ps, reason); it keeps
drawing (and discarding) its thermostat noise every step, so the other trajectories do not depend on
whether or when it failed (they are those of a run in which it went on to the last step).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from pydantic import Field, model_validator

from al_flows.exploration.replica_checks import (
    LIMITS,
    ReplicaLimits,
    evaluation_problem,
    geometry_problem,
    predict_isolating,
)
from al_flows.exploration.replica_checks import dropped as dropped_record
from al_flows.frames.dataset import frame_id
from al_flows.settings import Settings, Temperatures

__all__ = [
    "ScheduleSettings",
    "NVTSettings",
    "schedule_temperature",
    "draw_schedule",
    "berendsen_mu",
    "instantaneous_pressure_GPa",
    "run_batched_langevin",
    "langevin_schedule",
    "nvt_explore",
]


def _range(lo_hi) -> tuple[float, float]:
    lo, hi = (float(x) for x in lo_hi)
    if lo > hi:
        raise ValueError(f"range ({lo}, {hi}): the first value must not exceed the second")
    return lo, hi


class ScheduleSettings(Settings):
    """ANI-Al sampler: Langevin MD with a randomised temperature schedule and early stop."""

    n_runs: int = Field(8, gt=0, description="trajectories per round, run as one batch")
    t_start_K: tuple[float, float] = Field((10.0, 1000.0), description="K, uniform range of T_start")
    t_end_K: tuple[float, float] = Field((10.0, 600.0), description="K, uniform range of T_end")
    t_mod_K: tuple[float, float] = Field((0.0, 2000.0), description="K, uniform range of T_mod")
    t0_ps: tuple[float, float] = Field((10.0, 50.0), description="ps, uniform range of the modulation period t_0")
    t_max_ps: float = Field(5.0, gt=0, description="ps, trajectory length (the schedule's t_max)")
    timestep_fs: float = Field(1.0, gt=0)
    friction_per_ps: float = Field(5.0, gt=0, description="Langevin friction, 1/ps")
    stop_deviation: float = Field(
        0.15, gt=0, description="eV/Angstrom; a trajectory stops when the deviation reaches this"
    )
    record_every: int = Field(100, gt=0, description="steps between recorded snapshots")

    @model_validator(mode="after")
    def _ranges(self):
        for name in ("t_start_K", "t_end_K", "t_mod_K", "t0_ps"):
            _range(getattr(self, name))
        if min(self.t_start_K[0], self.t_end_K[0]) <= 0 or self.t0_ps[0] <= 0 or self.t_mod_K[0] < 0:
            raise ValueError("temperatures and t0 must be positive (T_mod may be 0)")
        return self


class NVTSettings(Settings):
    """DP-GEN sampler: NVT (or, with ``ensemble="npt"``, NPT: isotropic Berendsen barostat) Langevin
    MD; round k runs at ``temperatures_K[min(k, len - 1)]``."""

    n_runs: int = Field(4, gt=0, description="trajectories per starting structure")
    n_starts: int | None = Field(None, gt=0, description="starting structures drawn (seeded) per round; default all")
    temperatures_K: Temperatures = Field(
        [300.0, 600.0, 900.0, 1200.0], min_length=1, description="K per round, raised with the round"
    )
    n_steps: int = Field(2000, gt=0)
    timestep_fs: float = Field(1.0, gt=0)
    friction_per_ps: float = Field(5.0, gt=0)
    record_every: int = Field(50, gt=0)
    ensemble: Literal["nvt", "npt"] = Field("nvt", description="nvt: fixed cell; npt: isotropic Berendsen barostat")
    pressure_GPa: float = Field(0.0, description="GPa, target pressure of the barostat (npt)")
    barostat_tau_ps: float = Field(0.5, gt=0, description="ps, Berendsen barostat time constant (npt)")
    compressibility_per_GPa: float = Field(
        0.01, gt=0, description="1/GPa, compressibility assumed by the barostat (npt)"
    )


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


MU_CLIP = 0.01  # the barostat changes a cell length by at most 1 % per step


def berendsen_mu(pressure_GPa, target_GPa: float, compressibility_per_GPa: float, timestep_fs: float, tau_ps: float):
    """Isotropic Berendsen scale factor of the cell lengths, ``(1 - beta dt/tau (P0 - P))^(1/3)``,
    clipped to [1 - MU_CLIP, 1 + MU_CLIP] (pressures in GPa, beta in 1/GPa)."""
    x = 1.0 - compressibility_per_GPa * (timestep_fs / (1000.0 * tau_ps)) * (
        target_GPa - np.asarray(pressure_GPa, dtype=float)
    )
    return np.clip(np.cbrt(x), 1.0 - MU_CLIP, 1.0 + MU_CLIP)


def instantaneous_pressure_GPa(stress_voigt, masses: np.ndarray, velocities: np.ndarray, volume: float) -> float:
    """P = -trace(stress)/3 + sum m v^2 / (3V) in GPa (stress: ASE Voigt eV/A^3; masses amu [N, 1],
    velocities in ASE units [N, 3]; volume A^3)."""
    s = np.asarray(stress_voigt, dtype=float)
    kinetic = float((masses * velocities**2).sum()) / (3.0 * volume)
    return (-(s[0] + s[1] + s[2]) / 3.0 + kinetic) / units.GPa


def _frame(atoms: Atoms, energy: float, forces: np.ndarray, info: dict) -> Atoms:
    frame = atoms.copy()
    frame.calc = SinglePointCalculator(frame, energy=float(energy), forces=np.array(forces))
    frame.info = dict(info)
    frame.info["frame_id"] = frame_id(frame)
    return frame


def run_batched_langevin(
    starts: list[Atoms],
    ensemble,
    temperature: Callable[[int, float], float],
    n_steps: int,
    timestep_fs: float,
    friction_per_ps: float,
    record_every: int,
    seed: int,
    stop_deviation: float | None = None,
    info: list[dict] | None = None,
    pressure_GPa: float | None = None,
    barostat_tau_ps: float = 0.5,
    compressibility_per_GPa: float = 0.01,
    dropped: list[dict] | None = None,
    limits: ReplicaLimits = LIMITS,
) -> list[Atoms]:
    """Advance one Langevin trajectory per start (copies) for ``n_steps``; ``temperature(k, t_ps)``
    gives trajectory k's target temperature (K) at time t. Returns recorded frames (every
    ``record_every`` steps, and each stop frame), labelled with the ensemble mean energy/forces
    and carrying info: run, step, time_ps, temperature_K, deviation, stopped, plus ``info[k]``.
    A trajectory whose deviation reaches ``stop_deviation`` (or is not finite) stops there.

    ``pressure_GPa`` (None: NVT, fixed cell) turns on the isotropic Berendsen barostat of every
    trajectory (module doc; starts must be periodic in 3D); recorded frames then also carry
    ``volume_A3`` and ``pressure_GPa`` (instantaneous, at the frame's geometry).

    A trajectory that blows up (module doc) is dropped and its record appended to ``dropped``."""
    npt = pressure_GPa is not None
    if npt and (barostat_tau_ps <= 0 or compressibility_per_GPa <= 0):
        raise ValueError("barostat_tau_ps and compressibility_per_GPa must be positive")
    rng = np.random.default_rng(int(seed) & 0xFFFFFFFFFFFFFFFF)
    dt = timestep_fs * units.fs
    c = math.exp(-friction_per_ps * timestep_fs / 1000.0)
    systems = [a.copy() for a in starts]
    for a in systems:
        a.calc = None
        if npt and not (np.all(a.pbc) and a.cell.volume > 1e-6):
            raise ValueError("NPT needs starting structures periodic in all three directions")
        a.wrap()
    masses = [a.get_masses()[:, None] for a in systems]
    vel = []
    for k, a in enumerate(systems):
        kt = units.kB * temperature(k, 0.0)
        v = rng.normal(size=(len(a), 3)) * np.sqrt(kt / masses[k])
        vel.append(v - (masses[k] * v).sum(0) / masses[k].sum())
    burning: list[int] = []  # dropped trajectories: their noise is still drawn (see module doc)

    def drop(k: int, step: int, reason: str) -> None:
        burning.append(k)
        if dropped is not None:
            parent = str((info[k] if info else {}).get("parent_id", ""))
            dropped.append(dropped_record(k, step, reason, parent_id=parent, time_ps=step * timestep_fs / 1000.0))

    def evaluate(running: list[int], step: int, stress: bool):
        """(prediction, running) of the trajectories ``running`` that evaluate without a blow-up
        (``pred`` indexes ``running``); the others are dropped."""
        pred, ok, errors = predict_isolating(
            lambda fs: ensemble.predict(fs, stress=True) if stress else ensemble.predict(fs),
            [systems[k] for k in running],
        )
        for j, why in errors.items():
            drop(running[j], step, why)
        running = [running[j] for j in ok]
        if pred is None:
            return None, []
        pred = _Batch(pred, stress)
        keep = [
            j
            for j, k in enumerate(running)
            if not _drop_if(
                evaluation_problem(
                    pred.mean_energies[j], pred.mean_forces[j], limits, pred.mean_stresses[j] if stress else None
                ),
                drop,
                k,
                step,
            )
        ]
        # the others' numbers stay those of this batch; only the failed leave it
        return pred.subset(keep), [running[j] for j in keep]

    running = [k for k in range(len(systems)) if not _drop_if(geometry_problem(systems[k], limits), drop, k, 0)]
    forces: list = [None] * len(systems)
    pred, running = evaluate(running, 0, False)
    for j, k in enumerate(running):
        forces[k] = pred.mean_forces[j]
    frames: list[Atoms] = []
    for step in range(1, n_steps + 1):
        if not running:
            break
        t_ps = step * timestep_fs / 1000.0
        moving = set(running)
        moved = {}
        for k in sorted(moving.union(burning)):
            if k not in moving:
                rng.normal(size=vel[k].shape)  # a dropped trajectory's noise, drawn and discarded
                continue
            a, m = systems[k], masses[k]
            before = a.positions.copy()
            vel[k] += 0.5 * dt * forces[k] / m
            a.positions += 0.5 * dt * vel[k]
            kt = units.kB * temperature(k, t_ps)
            vel[k] = c * vel[k] + np.sqrt((1.0 - c * c) * kt / m) * rng.normal(size=vel[k].shape)
            a.positions += 0.5 * dt * vel[k]
            moved[k] = a.positions - before
            a.wrap()
        running = [k for k in running if not _drop_if(geometry_problem(systems[k], limits, moved[k]), drop, k, step)]
        pred, running = evaluate(running, step, npt)
        if not running:
            break
        dev = pred.deviation
        still = []
        for j, k in enumerate(running):
            forces[k] = pred.mean_forces[j]
            vel[k] += 0.5 * dt * forces[k] / masses[k]
            stop = stop_deviation is not None and (not np.isfinite(dev[j]) or dev[j] >= stop_deviation)
            if npt:
                volume = float(systems[k].cell.volume)
                pressure = instantaneous_pressure_GPa(pred.mean_stresses[j], masses[k], vel[k], volume)
            if stop or step % record_every == 0:
                meta = {
                    **(info[k] if info else {}),
                    "run": k,
                    "step": step,
                    "time_ps": t_ps,
                    "temperature_K": float(temperature(k, t_ps)),
                    "deviation": float(dev[j]),
                    "stopped": bool(stop),
                }
                if npt:
                    meta.update(volume_A3=volume, pressure_GPa=float(pressure))
                frames.append(_frame(systems[k], pred.mean_energies[j], forces[k], meta))
            if npt and not stop and np.isfinite(pressure):
                mu = float(berendsen_mu(pressure, pressure_GPa, compressibility_per_GPa, timestep_fs, barostat_tau_ps))
                systems[k].set_cell(systems[k].cell.array * mu, scale_atoms=True)
            if not stop:
                still.append(k)
        running = still
    return frames


def _drop_if(problem: str | None, drop, k: int, step: int) -> bool:
    """Drop trajectory ``k`` at ``step`` when there is a ``problem``; whether it was dropped."""
    if problem is None:
        return False
    drop(k, step, problem)
    return True


class _Batch:
    """An ensemble prediction's per-frame means and deviations, each computed once (the
    prediction's properties recompute them for every frame on each access)."""

    def __init__(self, pred, stress: bool):
        self.mean_energies = np.asarray(pred.mean_energies)
        self.mean_forces = list(pred.mean_forces)
        self.deviation = np.asarray(pred.deviation)
        self.mean_stresses = np.asarray(pred.mean_stresses) if stress else None

    def subset(self, keep: list[int]) -> _Batch:
        """The frames ``keep`` (same numbers: rows of this batch's arrays)."""
        if len(keep) == len(self.mean_forces):
            return self
        out = object.__new__(_Batch)
        out.mean_energies = self.mean_energies[keep]
        out.mean_forces = [self.mean_forces[j] for j in keep]
        out.deviation = self.deviation[keep]
        out.mean_stresses = None if self.mean_stresses is None else self.mean_stresses[keep]
        return out


def langevin_schedule(
    structures: list[Atoms],
    ensemble,
    settings: ScheduleSettings,
    seed: int,
    explorer: str = "langevin",
    dropped: list[dict] | None = None,
) -> list[Atoms]:
    """ANI-Al exploration: ``n_runs`` trajectories, each from a start drawn from ``structures``
    with its own temperature schedule, stopped early on high deviation (see module doc);
    trajectories that blow up are appended to ``dropped``."""
    rng = np.random.default_rng((int(seed) & 0xFFFFFFFF, 17))
    picks = rng.integers(len(structures), size=settings.n_runs)
    schedules = [draw_schedule(rng, settings) for _ in range(settings.n_runs)]
    starts = [structures[i] for i in picks]
    info = [
        {
            "explorer": explorer,
            "parent_id": str(structures[i].info.get("structure_id") or structures[i].info.get("frame_id", "")),
            "schedule": sch,
        }
        for i, sch in zip(picks, schedules, strict=True)
    ]
    n_steps = int(round(settings.t_max_ps * 1000.0 / settings.timestep_fs))
    return run_batched_langevin(
        starts,
        ensemble,
        lambda k, t: float(schedule_temperature(t, **schedules[k])),
        n_steps,
        settings.timestep_fs,
        settings.friction_per_ps,
        settings.record_every,
        int(rng.integers(2**62)),
        settings.stop_deviation,
        info,
        dropped=dropped,
    )


def nvt_explore(
    structures: list[Atoms],
    ensemble,
    settings: NVTSettings,
    round_: int,
    seed: int,
    explorer: str = "md",
    dropped: list[dict] | None = None,
) -> list[Atoms]:
    """DP-GEN exploration: ``n_runs`` NVT (or NPT, ``settings.ensemble``) trajectories per structure
    at this round's temperature; trajectories that blow up are appended to ``dropped``."""
    temp = float(settings.temperatures_K[min(max(round_, 0), len(settings.temperatures_K) - 1)])
    if settings.n_starts is not None and settings.n_starts < len(structures):
        rng = np.random.default_rng((int(seed) & 0xFFFFFFFF, 19))
        structures = [structures[i] for i in sorted(rng.choice(len(structures), settings.n_starts, replace=False))]
    starts = [a for a in structures for _ in range(settings.n_runs)]
    info = [
        {"explorer": explorer, "parent_id": str(a.info.get("structure_id") or a.info.get("frame_id", ""))}
        for a in starts
    ]
    return run_batched_langevin(
        starts,
        ensemble,
        lambda k, t: temp,
        settings.n_steps,
        settings.timestep_fs,
        settings.friction_per_ps,
        settings.record_every,
        seed,
        None,
        info,
        dropped=dropped,
        **(
            {
                "pressure_GPa": settings.pressure_GPa,
                "barostat_tau_ps": settings.barostat_tau_ps,
                "compressibility_per_GPa": settings.compressibility_per_GPa,
            }
            if settings.ensemble == "npt"
            else {}
        ),
    )
