"""Batched relaxation at fixed cell of many replicas with one ensemble prediction per step.

Units: positions in Angstrom, energies in eV, forces (and ``fmax``) in eV/Angstrom.

:func:`relax_batched` relaxes K structures (different atom counts allowed) together: every
optimiser step makes ONE ``ensemble.predict(running_replicas)`` call (all members, all running
replicas; neighbour lists once per replica and step, see :meth:`al_flows.potential.ensemble.Ensemble.predict`),
the ensemble-mean forces drive each replica's own optimiser state, and a replica leaves the batch
once its largest atomic force norm is below ``fmax`` (ASE's criterion) or after ``max_steps``
steps. The model deviation (:func:`al_flows.potential.deviation.max_force_deviation`) is that of the final
structure. Members run wherever the ensemble lives (CPU or GPU); the optimiser arithmetic is
float64 numpy on the host.

Optimisers (each replica follows exactly the same sequence of positions as the ASE optimiser
run alone with :class:`al_flows.potential.ensemble.EnsembleCalculator`, as ``Optimizer.irun(fmax, steps)``
drives it; only the floating-point round-off of a batched model evaluation may differ):

- ``"FIRE"``: ASE's FIRE (``ase/optimize/fire.py``, ASE 3.29) written out here per replica:
  time step ``dt`` (start 0.1), ``maxstep`` 0.2 Angstrom on the norm of the whole step, ``dtmax``,
  ``Nmin``, ``finc``, ``fdec``, ``astart``, ``fa``, ``a`` and the optional ``downhill_check``
  (:class:`FIREParameters`).
- ``"BFGS"`` / ``"LBFGS"``: ASE's own optimiser objects, one per replica, stepped in lockstep;
  each step they read the forces the batched prediction put on their replica (a calculator that
  only holds injected results), so their arithmetic is ASE's.

A replica whose energy or forces are not finite, or whose evaluation raises (any exception but an
out-of-memory error, see :func:`al_flows.exploration.replica_checks.is_replica_error`), stops at once with
``finite=False`` and a one-line ``reason``; the others go on. A raising batch is evaluated frame by
frame to find the replicas that raise, and the others are then evaluated together again, so their
numbers are those of a batch without the failed replicas (when no frame raises alone, their single
evaluations are used). The shear explorers drop such a replica and record why.
Constraints are not supported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.optimize import BFGS, LBFGS

from al_flows.exploration.replica_checks import describe_error, is_replica_error
from al_flows.potential.deviation import max_force_deviation

__all__ = ["FIREParameters", "Relaxed", "relax_batched", "BATCHED_OPTIMIZERS"]

BATCHED_OPTIMIZERS = ("FIRE", "BFGS", "LBFGS")
_ASE_OPTIMIZERS = {"BFGS": BFGS, "LBFGS": LBFGS}


@dataclass(frozen=True)
class FIREParameters:
    """ASE FIRE's parameters and defaults (``ase.optimize.FIRE``; ``maxstep`` in Angstrom, ``dt``
    and ``dtmax`` in ASE's FIRE time units)."""

    dt: float = 0.1
    maxstep: float = 0.2
    dtmax: float = 1.0
    Nmin: int = 5
    finc: float = 1.1
    fdec: float = 0.5
    astart: float = 0.1
    fa: float = 0.99
    a: float = 0.1
    downhill_check: bool = False


@dataclass
class Relaxed:
    """Outcome of one replica: final ``positions`` [N, 3] (Angstrom), ensemble-mean ``energy`` (eV)
    and ``forces`` [N, 3] (eV/A) there, ``member_forces`` [M, N, 3], ``deviation`` (eV/A),
    ``converged`` (max force norm < fmax), ``n_steps`` (optimiser steps made, as ASE's
    ``opt.nsteps``) and ``finite`` (False: stopped on a non-finite or failed evaluation; energy,
    forces and deviation are then NaN, and ``reason`` says why on one line)."""

    positions: np.ndarray
    energy: float
    forces: np.ndarray
    member_forces: np.ndarray | None
    deviation: float
    converged: bool
    n_steps: int
    finite: bool = True
    reason: str = ""


@dataclass
class _FireState:
    x: np.ndarray  # flat positions [3N], float64
    dt: float
    a: float
    vel: np.ndarray | None = None
    Nsteps: int = 0
    e_last: float = np.nan
    r_last: np.ndarray | None = None
    vel_last: np.ndarray | None = None


def _fire_step(st: _FireState, gradient: np.ndarray, energy: float, p: FIREParameters) -> None:
    """One ``ase.optimize.FIRE.step`` on ``st`` (``gradient`` = forces.ravel(), ASE's negative
    gradient; ``energy`` at st.x), the same operations in the same order as ASE."""
    if st.vel is None:
        st.vel = np.zeros(st.x.shape[0])
        if p.downhill_check:
            st.e_last = energy
            st.r_last = st.x.copy()
            st.vel_last = st.vel.copy()
    else:
        is_uphill = False
        if p.downhill_check:
            if energy > st.e_last:
                # ASE resets to r_last and re-evaluates there: the energy is e_last again
                assert st.r_last is not None  # set on the first step whenever downhill_check is on
                st.x = st.r_last.copy()
                is_uphill = True
            else:
                st.e_last = energy
            st.r_last = st.x.copy()
            st.vel_last = st.vel.copy()
        vf = np.vdot(gradient, st.vel)
        grad2 = np.vdot(gradient, gradient)
        if vf > 0.0 and not is_uphill:
            st.vel = (1.0 - st.a) * st.vel + st.a * gradient / np.sqrt(grad2) * np.sqrt(np.vdot(st.vel, st.vel))
            if st.Nsteps > p.Nmin:
                st.dt = min(st.dt * p.finc, p.dtmax)
                st.a *= p.fa
            st.Nsteps += 1
        else:
            st.vel[:] *= 0.0
            st.a = p.astart
            st.dt *= p.fdec
            st.Nsteps = 0
    st.vel += st.dt * gradient
    dr = st.dt * st.vel
    normdr = np.sqrt(np.vdot(dr, dr))
    if normdr > p.maxstep:
        dr = p.maxstep * dr / normdr
    st.x = st.x + dr


class _InjectedCalculator(Calculator):
    """Holds the energy/forces the batched prediction computed for its atoms' current positions;
    any other request is an error (so an ASE optimiser cannot silently evaluate elsewhere)."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def inject(self, atoms: Atoms, energy: float, forces: np.ndarray) -> None:
        self.atoms = atoms.copy()
        self.results = {"energy": float(energy), "free_energy": float(energy), "forces": np.array(forces, dtype=float)}

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        raise RuntimeError("batched relaxation: the optimiser asked for a geometry the batch did not evaluate")


def _evaluate(
    ensemble, frames: list[Atoms], batch_size: int | None
) -> list[tuple[float, np.ndarray, np.ndarray] | str]:
    """(mean energy, mean forces [N,3], member forces [M,N,3]) per frame from one ``predict`` call;
    for a frame whose evaluation raises, a one-line description of the error instead (found by
    evaluating the frames one by one; the others are then predicted together again)."""

    def call(fs):
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            pred = ensemble.predict(fs) if batch_size is None else ensemble.predict(fs, batch_size=batch_size)
        energies = pred.mean_energies
        return [(float(energies[j]), pred.forces[j].mean(axis=0), pred.forces[j]) for j in range(len(fs))]

    try:
        return call(frames)
    except Exception as err:
        if not is_replica_error(err):
            raise
        if len(frames) == 1:
            return [describe_error(err)]
    bad: dict[int, str] = {}
    single = []
    for j, f in enumerate(frames):
        try:
            single.extend(call([f]))
        except Exception as err:
            if not is_replica_error(err):
                raise
            bad[j] = describe_error(err)
    if not bad:  # the batch failed but no frame does alone: their own evaluations it is
        return single
    ok = [j for j in range(len(frames)) if j not in bad]
    good = iter(call([frames[j] for j in ok]) if ok else [])
    return [bad[j] if j in bad else next(good) for j in range(len(frames))]


def _finished(positions, energy, forces, member_forces, converged, n_steps) -> Relaxed:
    with np.errstate(invalid="ignore", over="ignore"):
        dev = max_force_deviation(member_forces)
    return Relaxed(
        np.array(positions, dtype=float).reshape(-1, 3),
        float(energy),
        np.array(forces, dtype=float),
        np.array(member_forces, dtype=float),
        float(dev),
        bool(converged),
        int(n_steps),
        True,
    )


def _failed(positions, n_steps, reason: str) -> Relaxed:
    n = np.asarray(positions).reshape(-1, 3).shape[0]
    return Relaxed(
        np.array(positions, dtype=float).reshape(-1, 3),
        float("nan"),
        np.full((n, 3), np.nan),
        None,
        float("nan"),
        False,
        int(n_steps),
        False,
        f"{reason} at optimiser step {int(n_steps)}",
    )


def relax_batched(
    structures: Sequence[Atoms],
    ensemble,
    fmax: float = 0.05,
    max_steps: int = 500,
    optimizer: Literal["FIRE", "BFGS", "LBFGS"] = "FIRE",
    fire: FIREParameters | None = None,
    batch_size: int | None = None,
) -> list[Relaxed]:
    """Relax the internal coordinates of every structure at fixed cell (copies; inputs untouched)
    with the ensemble mean, all replicas in lockstep with one ``ensemble.predict`` per step (see
    module doc). ``ensemble``: an :class:`al_flows.potential.ensemble.Ensemble` or anything with its
    ``predict(frames) -> EnsemblePrediction``; ``batch_size`` is passed on to ``predict`` when given
    (an Ensemble collates at most that many frames per forward pass; default 64).
    Returns one :class:`Relaxed` per structure, in order."""
    if optimizer not in BATCHED_OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {BATCHED_OPTIMIZERS}, got {optimizer!r}")
    if max_steps < 0:
        raise ValueError("max_steps must be >= 0")
    p = fire or FIREParameters()
    work = []
    for atoms in structures:
        if atoms.constraints:
            raise ValueError("relax_batched does not support constraints")
        a = atoms.copy()
        a.calc = None
        work.append(a)
    results: list[Relaxed | None] = [None] * len(work)
    if optimizer == "FIRE":
        states = [_FireState(x=a.get_positions().ravel(), dt=p.dt, a=p.a) for a in work]
    else:
        calcs = [_InjectedCalculator() for _ in work]
        for a, c in zip(work, calcs):
            a.calc = c
        opts = [_ASE_OPTIMIZERS[optimizer](a, logfile=None, trajectory=None) for a in work]
    n_steps = [0] * len(work)
    running = list(range(len(work)))
    while running:
        if optimizer == "FIRE":
            for k in running:
                work[k].set_positions(states[k].x.reshape(-1, 3))
        evaluated = _evaluate(ensemble, [work[k] for k in running], batch_size)
        still = []
        for k, ev in zip(running, evaluated, strict=True):
            if isinstance(ev, str):
                results[k] = _failed(work[k].positions, n_steps[k], ev)
                continue
            energy, forces, member_forces = ev
            if not (np.isfinite(energy) and np.isfinite(forces).all()):
                why = "non-finite energy" if not np.isfinite(energy) else "non-finite forces"
                results[k] = _failed(work[k].positions, n_steps[k], why)
                continue
            converged = bool(np.linalg.norm(forces, axis=1).max() < fmax) if len(forces) else True
            if converged or n_steps[k] >= max_steps:
                results[k] = _finished(work[k].positions, energy, forces, member_forces, converged, n_steps[k])
                continue
            with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
                if optimizer == "FIRE":
                    _fire_step(states[k], forces.ravel(), energy, p)
                else:
                    calcs[k].inject(work[k], energy, forces)
                    opts[k].step()
            n_steps[k] += 1
            still.append(k)
        running = still
    return list(results)  # type: ignore[arg-type]
