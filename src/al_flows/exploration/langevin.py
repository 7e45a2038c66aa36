"""Batched Langevin MD driven by an ensemble, with an optional isotropic Berendsen barostat.

All trajectories of a call advance together: every step makes ONE batched ensemble prediction
for all running trajectories (mean forces drive the dynamics, the model deviation is read off
the same prediction). Integrator: Langevin BAOAB (Leimkuhler-Matthews) at fixed cell::

    v += dt/2 F/m;  x += dt/2 v;  v = c v + sqrt((1 - c^2) kT/m) xi;  x += dt/2 v;  F(x);  v += dt/2 F/m

with c = exp(-friction dt). Units: Angstrom, eV, amu, fs, K, GPa.

NPT (optional, :class:`Barostat` given): an isotropic Berendsen barostat per trajectory. After each
step's (batched) force and stress evaluation and the last half kick, the instantaneous pressure

    P = -trace(<stress>)/3 + sum_i m_i v_i^2 / (3 V)        (= -tr(sigma)/3 + N k_B T_kin / V)

(ensemble-mean ASE stress, tensile positive) sets the scale factor

    mu = (1 - beta dt/tau (P0 - P))^(1/3),  clipped to [0.99, 1.01],

and the cell and positions of that trajectory are scaled by mu (velocities are not), as ASE's
``NPTBerendsen``; beta = ``compressibility_per_GPa``, tau = ``tau_ps``. The ensemble is asked for
stresses (``predict(frames, stress=True)``) only in NPT; the NVT path is unchanged.

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
from dataclasses import dataclass

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator

from al_flows.exploration.replica_checks import (
    LIMITS,
    ReplicaLimits,
    evaluation_problem,
    geometry_problem,
    predict_isolating,
)
from al_flows.exploration.replica_checks import dropped as dropped_record
from al_flows.frames.ids import frame_id

__all__ = [
    "MU_CLIP",
    "Barostat",
    "LangevinRun",
    "berendsen_mu",
    "instantaneous_pressure_GPa",
    "run_batched_langevin",
]

MU_CLIP = 0.01  # the barostat changes a cell length by at most 1 % per step


@dataclass(frozen=True)
class Barostat:
    """Isotropic Berendsen barostat: target ``pressure_GPa`` (GPa), time constant ``tau_ps`` (ps) and
    the compressibility it assumes, ``compressibility_per_GPa`` (1/GPa)."""

    pressure_GPa: float
    tau_ps: float = 0.5
    compressibility_per_GPa: float = 0.01

    def __post_init__(self) -> None:
        if self.tau_ps <= 0 or self.compressibility_per_GPa <= 0:
            raise ValueError("barostat_tau_ps and compressibility_per_GPa must be positive")


@dataclass(frozen=True)
class LangevinRun:
    """One call's MD: ``n_steps`` steps of ``timestep_fs`` (fs), Langevin friction ``friction_per_ps``
    (1/ps), a frame recorded every ``record_every`` steps, noise from ``seed``; a trajectory stops when
    its force deviation reaches ``stop_deviation`` (eV/Angstrom), its energy spread reaches
    ``stop_energy_spread`` (eV, :attr:`al_flows.potential.ensemble.EnsemblePrediction.energy_spread`)
    or its size-intensive energy spread reaches ``stop_energy_spread_intensive`` (eV,
    :attr:`~al_flows.potential.ensemble.EnsemblePrediction.energy_spread_intensive`); None: that
    criterion is off. ``barostat`` None is NVT."""

    n_steps: int
    timestep_fs: float
    friction_per_ps: float
    record_every: int
    seed: int
    stop_deviation: float | None = None
    barostat: Barostat | None = None
    stop_energy_spread: float | None = None
    stop_energy_spread_intensive: float | None = None

    def stops(self, deviation: float, energy_spread: float, energy_spread_intensive: float = math.nan) -> bool:
        """Whether a trajectory with this force deviation (eV/A), energy spread and size-intensive
        energy spread (eV) stops here (a non-finite value of a criterion that is on stops it)."""
        out = False
        for value, limit in (
            (deviation, self.stop_deviation),
            (energy_spread, self.stop_energy_spread),
            (energy_spread_intensive, self.stop_energy_spread_intensive),
        ):
            if limit is not None:
                out = out or not np.isfinite(value) or value >= limit
        return out


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


def run_batched_langevin(
    starts: list[Atoms],
    ensemble,
    temperature: Callable[[int, float], float],
    run: LangevinRun,
    info: list[dict] | None = None,
    dropped: list[dict] | None = None,
    limits: ReplicaLimits = LIMITS,
) -> list[Atoms]:
    """Advance one Langevin trajectory per start (copies) for ``run.n_steps``; ``temperature(k, t_ps)``
    gives trajectory k's target temperature (K) at time t. Returns recorded frames (every
    ``run.record_every`` steps, and each stop frame), labelled with the ensemble mean energy/forces
    and carrying info: run, step, time_ps, temperature_K, deviation, energy_spread,
    energy_spread_intensive (when the ensemble gives per-atom energies), stopped, plus ``info[k]``.
    A trajectory that meets :meth:`LangevinRun.stops` stops there.

    ``run.barostat`` (None: NVT, fixed cell) turns on the isotropic Berendsen barostat of every
    trajectory (module doc; starts must be periodic in 3D); recorded frames then also carry
    ``volume_A3`` and ``pressure_GPa`` (instantaneous, at the frame's geometry).

    A trajectory that blows up (module doc) is dropped and its record appended to ``dropped``."""
    md = _Trajectories(starts, ensemble, temperature, run, info, dropped, limits)
    running = [k for k in range(len(md.systems)) if not md.drop_if(geometry_problem(md.systems[k], limits), k, 0)]
    pred, running = md.evaluate(running, 0, False)
    for j, k in enumerate(running):
        md.forces[k] = pred.mean_forces[j]
    frames: list[Atoms] = []
    for step in range(1, run.n_steps + 1):
        if not running:
            break
        moved = md.drift(running, step)
        running = [k for k in running if not md.drop_if(geometry_problem(md.systems[k], limits, moved[k]), k, step)]
        pred, running = md.evaluate(running, step, run.barostat is not None)
        if not running:
            break
        running = md.finish(pred, running, step, frames)
    return frames


class _Trajectories:
    """The trajectories of one :func:`run_batched_langevin` call: their systems (copies of the starts),
    masses (amu), velocities, forces (eV/A), the dropped ones and the noise generator."""

    def __init__(self, starts, ensemble, temperature, run: LangevinRun, info, dropped, limits: ReplicaLimits):
        self.ensemble, self.temperature, self.run = ensemble, temperature, run
        self.info, self.dropped, self.limits = info, dropped, limits
        self.rng = np.random.default_rng(int(run.seed) & 0xFFFFFFFFFFFFFFFF)
        self.dt = run.timestep_fs * units.fs
        self.c = math.exp(-run.friction_per_ps * run.timestep_fs / 1000.0)
        self.systems = [a.copy() for a in starts]
        for a in self.systems:
            a.calc = None
            if run.barostat is not None and not (np.all(a.pbc) and a.cell.volume > 1e-6):
                raise ValueError("NPT needs starting structures periodic in all three directions")
            a.wrap()
        self.masses = [a.get_masses()[:, None] for a in self.systems]
        self.vel = []
        for k, a in enumerate(self.systems):
            kt = units.kB * temperature(k, 0.0)
            v = self.rng.normal(size=(len(a), 3)) * np.sqrt(kt / self.masses[k])
            self.vel.append(v - (self.masses[k] * v).sum(0) / self.masses[k].sum())
        self.forces: list = [None] * len(self.systems)
        self.burning: list[int] = []  # dropped trajectories: their noise is still drawn (see module doc)

    def drop(self, k: int, step: int, reason: str) -> None:
        """Drop trajectory ``k`` at ``step`` (recorded in ``dropped``)."""
        self.burning.append(k)
        if self.dropped is not None:
            parent = str((self.info[k] if self.info else {}).get("parent_id", ""))
            time_ps = step * self.run.timestep_fs / 1000.0
            self.dropped.append(dropped_record(k, step, reason, parent_id=parent, time_ps=time_ps))

    def drop_if(self, problem: str | None, k: int, step: int) -> bool:
        """Drop trajectory ``k`` at ``step`` when there is a ``problem``; whether it was dropped."""
        if problem is None:
            return False
        self.drop(k, step, problem)
        return True

    def evaluate(self, running: list[int], step: int, stress: bool) -> tuple[_Batch, list[int]]:
        """(prediction, running) of the trajectories ``running`` that evaluate without a blow-up
        (the prediction indexes ``running``); the others are dropped."""
        ensemble = self.ensemble
        pred, ok, errors = predict_isolating(
            lambda fs: ensemble.predict(fs, stress=True) if stress else ensemble.predict(fs),
            [self.systems[k] for k in running],
        )
        for j, why in errors.items():
            self.drop(running[j], step, why)
        running = [running[j] for j in ok]
        if pred is None:
            return _Batch.empty(), []
        if self.run.stop_energy_spread_intensive is not None and pred.atom_energies is None:
            raise ValueError(
                "stop_measure energy_spread_intensive: the ensemble gives no per-atom energies (atom_energies); "
                "use al_flows' Ensemble or stop_measure: energy_spread"
            )
        batch = _Batch(pred, stress)
        keep = [
            j
            for j, k in enumerate(running)
            if not self.drop_if(
                evaluation_problem(
                    batch.mean_energies[j],
                    batch.mean_forces[j],
                    self.limits,
                    batch.mean_stresses[j] if batch.mean_stresses is not None else None,
                ),
                k,
                step,
            )
        ]
        # the others' numbers stay those of this batch; only the failed leave it
        return batch.subset(keep), [running[j] for j in keep]

    def drift(self, running: list[int], step: int) -> dict[int, np.ndarray]:
        """The BAOAB steps up to the force evaluation (half kick, half drift, thermostat, half drift)
        of the trajectories ``running``, and the noise draws of the dropped ones; the displacement
        (Angstrom) of every running trajectory's atoms."""
        t_ps = step * self.run.timestep_fs / 1000.0
        dt, c = self.dt, self.c
        moving = set(running)
        moved = {}
        vel = self.vel
        for k in sorted(moving.union(self.burning)):
            if k not in moving:
                self.rng.normal(size=vel[k].shape)  # a dropped trajectory's noise, drawn and discarded
                continue
            a, m = self.systems[k], self.masses[k]
            before = a.positions.copy()
            vel[k] += 0.5 * dt * self.forces[k] / m
            a.positions += 0.5 * dt * vel[k]
            kt = units.kB * self.temperature(k, t_ps)
            vel[k] = c * vel[k] + np.sqrt((1.0 - c * c) * kt / m) * self.rng.normal(size=vel[k].shape)
            a.positions += 0.5 * dt * vel[k]
            moved[k] = a.positions - before
            a.wrap()
        return moved

    def finish(self, pred: _Batch, running: list[int], step: int, frames: list[Atoms]) -> list[int]:
        """The last half kick with the new forces; the frames of this step appended to ``frames``
        (recording steps and stops); the barostat's rescaling (NPT). The trajectories still running."""
        run, barostat = self.run, self.run.barostat
        t_ps = step * run.timestep_fs / 1000.0
        dev = pred.deviation
        still = []
        for j, k in enumerate(running):
            self.forces[k] = pred.mean_forces[j]
            self.vel[k] += 0.5 * self.dt * self.forces[k] / self.masses[k]
            stop = run.stops(float(dev[j]), float(pred.energy_spread[j]), float(pred.energy_spread_intensive[j]))
            system = self.systems[k]
            if barostat is not None:
                volume = float(system.cell.volume)
                assert pred.mean_stresses is not None  # asked for in NPT
                pressure = instantaneous_pressure_GPa(pred.mean_stresses[j], self.masses[k], self.vel[k], volume)
            if stop or step % run.record_every == 0:
                meta = {
                    **(self.info[k] if self.info else {}),
                    "run": k,
                    "step": step,
                    "time_ps": t_ps,
                    "temperature_K": float(self.temperature(k, t_ps)),
                    "deviation": float(dev[j]),
                    "energy_spread": float(pred.energy_spread[j]),
                    "stopped": bool(stop),
                }
                if np.isfinite(pred.energy_spread_intensive[j]):
                    meta["energy_spread_intensive"] = float(pred.energy_spread_intensive[j])
                if barostat is not None:
                    meta.update(volume_A3=volume, pressure_GPa=float(pressure))
                frames.append(_frame(system, pred.mean_energies[j], self.forces[k], meta))
            if barostat is not None and not stop and np.isfinite(pressure):
                mu = float(
                    berendsen_mu(
                        pressure,
                        barostat.pressure_GPa,
                        barostat.compressibility_per_GPa,
                        run.timestep_fs,
                        barostat.tau_ps,
                    )
                )
                system.set_cell(system.cell.array * mu, scale_atoms=True)
            if not stop:
                still.append(k)
        return still


def _frame(atoms: Atoms, energy: float, forces: np.ndarray, info: dict) -> Atoms:
    frame = atoms.copy()
    frame.calc = SinglePointCalculator(frame, energy=float(energy), forces=np.array(forces))
    frame.info = dict(info)
    frame.info["frame_id"] = frame_id(frame)
    return frame


class _Batch:
    """An ensemble prediction's per-frame means and deviations, each computed once (the
    prediction's properties recompute them for every frame on each access)."""

    def __init__(self, pred, stress: bool) -> None:
        self.mean_energies = np.asarray(pred.mean_energies)
        self.mean_forces = list(pred.mean_forces)
        self.deviation = np.asarray(pred.deviation)
        self.energy_spread = np.asarray(pred.energy_spread)
        n = len(self.mean_energies)
        self.energy_spread_intensive = (
            np.full(n, np.nan) if pred.atom_energies is None else np.asarray(pred.energy_spread_intensive)
        )
        self.mean_stresses: np.ndarray | None = np.asarray(pred.mean_stresses) if stress else None

    @classmethod
    def empty(cls) -> _Batch:
        """A batch of no frames."""
        out = object.__new__(cls)
        out.mean_energies, out.mean_forces, out.deviation, out.mean_stresses = np.zeros(0), [], np.zeros(0), None
        out.energy_spread = out.energy_spread_intensive = np.zeros(0)
        return out

    def subset(self, keep: list[int]) -> _Batch:
        """The frames ``keep`` (same numbers: rows of this batch's arrays)."""
        if len(keep) == len(self.mean_forces):
            return self
        out = object.__new__(_Batch)
        out.mean_energies = self.mean_energies[keep]
        out.mean_forces = [self.mean_forces[j] for j in keep]
        out.deviation = self.deviation[keep]
        out.energy_spread = self.energy_spread[keep]
        out.energy_spread_intensive = self.energy_spread_intensive[keep]
        out.mean_stresses = None if self.mean_stresses is None else self.mean_stresses[keep]
        return out
