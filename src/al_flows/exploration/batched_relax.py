"""Batched relaxation at fixed cell of many replicas with one ensemble prediction per step.

Units: positions in Angstrom, energies in eV, forces (and ``fmax``) in eV/Angstrom.

:func:`relax_batched` relaxes K structures (different atom counts allowed) together: every
optimiser step makes ONE ensemble prediction of all running replicas (all members), the
ensemble-mean forces drive each replica's optimiser, and a replica leaves the batch once its largest
atomic force norm is below ``fmax`` (ASE's criterion) or after ``max_steps`` steps. The model
deviation (:func:`al_flows.potential.deviation.max_force_deviation`) is that of the final structure.
Members run wherever the ensemble lives (CPU or GPU).

Two engines make the same steps (each replica follows the sequence of positions of the ASE optimiser
run alone with :class:`al_flows.potential.ensemble.EnsembleCalculator`, as ``Optimizer.irun(fmax,
steps)`` drives it), up to floating-point round-off:

- ``"torch"`` (default): one batched optimiser steps all running replicas at once as float64 tensor
  operations on the ensemble's device (:mod:`al_flows.exploration.batched_optimisers`: ASE's BFGS,
  LBFGS and FIRE), and the neighbour lists of all replicas come from one filter per step over
  candidates kept with a skin (:class:`al_flows.potential.skin_neighbours.SkinNeighbours`, through
  :meth:`al_flows.potential.ensemble.Ensemble.predict_inputs`; an ensemble stand-in with only
  ``predict(frames)`` is given the frames);
- ``"ase"`` (the reference, and the engine before the torch one): per replica, ASE's own ``BFGS`` /
  ``LBFGS`` object, stepped in lockstep from the forces the batched prediction put on its replica
  (a calculator that only holds injected results), or ASE's FIRE written out here in numpy
  (``ase/optimize/fire.py``, ASE 3.29, :class:`FIREParameters`); ``ensemble.predict(frames)``
  builds every replica's neighbour list every step.

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
from typing import Callable, Literal, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.optimize import BFGS, LBFGS

from al_flows.exploration.batched_optimisers import FIREParameters, make_optimiser
from al_flows.exploration.replica_checks import describe_error, is_replica_error
from al_flows.potential.deviation import max_force_deviation
from al_flows.potential.skin_neighbours import DEFAULT_SKIN, SkinNeighbours

__all__ = ["FIREParameters", "Relaxed", "relax_batched", "BATCHED_OPTIMIZERS", "ENGINES"]

BATCHED_OPTIMIZERS = ("FIRE", "BFGS", "LBFGS")
ENGINES = ("torch", "ase")
_ASE_OPTIMIZERS = {"BFGS": BFGS, "LBFGS": LBFGS}

# (mean energy eV, mean forces [N, 3] eV/A, member forces [M, N, 3]) of a frame, or why it failed
Evaluation = tuple[float, np.ndarray, np.ndarray] | str


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


def _evaluate(predict: Callable[[list[int]], list[Evaluation]], n: int) -> list[Evaluation]:
    """``predict(indices)`` of all ``n`` frames in one call; for a frame whose evaluation raises, a
    one-line description of the error instead (found by evaluating the frames one by one; the others
    are then predicted together again)."""
    try:
        return predict(list(range(n)))
    except Exception as err:
        if not is_replica_error(err):
            raise
        if n == 1:
            return [describe_error(err)]
    bad: dict[int, str] = {}
    single: list[Evaluation] = []
    for j in range(n):
        try:
            single.extend(predict([j]))
        except Exception as err:
            if not is_replica_error(err):
                raise
            bad[j] = describe_error(err)
    if not bad:  # the batch failed but no frame does alone: their own evaluations it is
        return single
    ok = [j for j in range(n) if j not in bad]
    good = iter(predict(ok) if ok else [])
    return [bad[j] if j in bad else next(good) for j in range(n)]


def _mean_results(pred, n: int) -> list[Evaluation]:
    """(mean energy, mean forces, member forces) of the ``n`` frames of an ``EnsemblePrediction``."""
    energies = pred.mean_energies
    return [(float(energies[j]), pred.forces[j].mean(axis=0), pred.forces[j]) for j in range(n)]


def _frames_predictor(ensemble, frames: list[Atoms], batch_size: int | None):
    """``predict(indices)`` by ``ensemble.predict`` of those frames (their neighbour lists built in it)."""

    def predict(indices: list[int]) -> list[Evaluation]:
        fs = [frames[j] for j in indices]
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            pred = ensemble.predict(fs) if batch_size is None else ensemble.predict(fs, batch_size=batch_size)
        return _mean_results(pred, len(fs))

    return predict


def _inputs_predictor(ensemble, neighbours: SkinNeighbours, rows: list[int], positions, batch_size: int | None):
    """``predict(indices)`` by ``ensemble.predict_inputs`` of replicas ``rows[indices]`` at their
    ``positions``, neighbour lists from ``neighbours`` (one filter per call)."""

    def predict(indices: list[int]) -> list[Evaluation]:
        inputs = neighbours.inputs([rows[j] for j in indices], [positions[j] for j in indices])
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            pred = ensemble.predict_inputs(inputs, **({} if batch_size is None else {"batch_size": batch_size}))
        return _mean_results(pred, len(indices))

    return predict


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


def _done(ev: Evaluation, positions, n_steps: int, fmax: float, max_steps: int) -> Relaxed | None:
    """The outcome of a replica evaluated at ``positions`` after ``n_steps`` steps, or None while it
    goes on: failed (raised, non-finite), converged (largest atomic force norm < ``fmax``) or out of
    steps."""
    if isinstance(ev, str):
        return _failed(positions, n_steps, ev)
    energy, forces, member_forces = ev
    if not (np.isfinite(energy) and np.isfinite(forces).all()):
        return _failed(positions, n_steps, "non-finite energy" if not np.isfinite(energy) else "non-finite forces")
    converged = bool(np.linalg.norm(forces, axis=1).max() < fmax) if len(forces) else True
    if converged or n_steps >= max_steps:
        return _finished(positions, energy, forces, member_forces, converged, n_steps)
    return None


def relax_batched(
    structures: Sequence[Atoms],
    ensemble,
    fmax: float = 0.05,
    max_steps: int = 500,
    optimizer: Literal["FIRE", "BFGS", "LBFGS"] = "FIRE",
    fire: FIREParameters | None = None,
    batch_size: int | None = None,
    engine: Literal["torch", "ase"] = "torch",
    skin: float = DEFAULT_SKIN,
) -> list[Relaxed]:
    """Relax the internal coordinates of every structure at fixed cell (copies; inputs untouched)
    with the ensemble mean, all replicas in lockstep with one ensemble prediction per step (see
    module doc). ``ensemble``: an :class:`al_flows.potential.ensemble.Ensemble` or anything with its
    ``predict(frames) -> EnsemblePrediction``; ``batch_size`` is passed on to it when given (an
    Ensemble collates at most that many frames per forward pass; default 64). ``engine``: "torch"
    (one batched optimiser, neighbour lists kept with a ``skin`` in Angstrom) or "ase" (one ASE
    optimiser per replica, the reference). Returns one :class:`Relaxed` per structure, in order."""
    if optimizer not in BATCHED_OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {BATCHED_OPTIMIZERS}, got {optimizer!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if max_steps < 0:
        raise ValueError("max_steps must be >= 0")
    work = []
    for atoms in structures:
        if atoms.constraints:
            raise ValueError("relax_batched does not support constraints")
        a = atoms.copy()
        a.calc = None
        work.append(a)
    fire = fire or FIREParameters()
    if engine == "ase":
        return _relax_ase(work, ensemble, fmax, max_steps, optimizer, fire, batch_size)
    return _relax_torch(work, ensemble, (fmax, max_steps), optimizer, fire, batch_size, skin)


def _relax_ase(work: list[Atoms], ensemble, fmax, max_steps, optimizer, fire, batch_size) -> list[Relaxed]:
    """The "ase" engine: one ASE optimiser (or numpy FIRE state) per replica, ``ensemble.predict``."""
    results: list[Relaxed | None] = [None] * len(work)
    if optimizer == "FIRE":
        states = [_FireState(x=a.get_positions().ravel(), dt=fire.dt, a=fire.a) for a in work]
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
        frames = [work[k] for k in running]
        evaluated = _evaluate(_frames_predictor(ensemble, frames, batch_size), len(frames))
        still = []
        for k, ev in zip(running, evaluated, strict=True):
            results[k] = _done(ev, work[k].positions, n_steps[k], fmax, max_steps)
            if results[k] is not None or isinstance(ev, str):
                continue
            energy, forces, _ = ev
            with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
                if optimizer == "FIRE":
                    _fire_step(states[k], forces.ravel(), energy, fire)
                else:
                    calcs[k].inject(work[k], energy, forces)
                    opts[k].step()
            n_steps[k] += 1
            still.append(k)
        running = still
    return list(results)  # type: ignore[arg-type]


def _relax_torch(work: list[Atoms], ensemble, stop, optimizer, fire, batch_size, skin) -> list[Relaxed]:
    """The "torch" engine: one batched optimiser on the ensemble's device; neighbour lists from
    :class:`SkinNeighbours` when the ensemble takes model inputs (``predict_inputs``), else
    ``ensemble.predict`` of the frames. ``stop``: (fmax, max_steps)."""
    fmax, max_steps = stop
    device = getattr(ensemble, "device", "cpu")
    opt = make_optimiser(optimizer, [a.positions for a in work], device, fire)
    cutoff = getattr(getattr(ensemble, "settings", None), "cutoff", None)
    neighbours = None
    if hasattr(ensemble, "predict_inputs") and cutoff is not None:
        neighbours = SkinNeighbours(work, float(cutoff), skin)
    results: list[Relaxed | None] = [None] * len(work)
    n_steps = [0] * len(work)
    running = list(range(len(work)))
    while running:
        positions = opt.positions()
        if neighbours is not None:
            predict = _inputs_predictor(ensemble, neighbours, running, positions, batch_size)
        else:
            for k, pos in zip(running, positions):
                work[k].positions = pos
            predict = _frames_predictor(ensemble, [work[k] for k in running], batch_size)
        evaluated = _evaluate(predict, len(running))
        kept: list[int] = []
        for row, (k, ev) in enumerate(zip(running, evaluated, strict=True)):
            results[k] = _done(ev, positions[row], n_steps[k], fmax, max_steps)
            if results[k] is None:
                kept.append(row)
        if not kept:
            break
        if len(kept) < len(running):
            opt.keep(kept)
        chosen = [ev for ev in (evaluated[row] for row in kept) if not isinstance(ev, str)]
        forces = opt.padded([ev[1] for ev in chosen])
        energies = torch.tensor([ev[0] for ev in chosen], dtype=torch.float64, device=opt.device)
        opt.step(forces, energies)
        running = [running[row] for row in kept]
        for k in running:
            n_steps[k] += 1
    return list(results)  # type: ignore[arg-type]
