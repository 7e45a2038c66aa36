"""Shear runs one after the other with any ASE calculator: one run (:func:`run_shear`, relaxing at
fixed cell with an ASE optimiser to ``fmax`` eV/Angstrom) and the runs from many structures
(:func:`explore_shear`); the protocol and its blow-ups are :mod:`al_flows.exploration.shear`."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from ase import Atoms
from ase.optimize import BFGS, FIRE, LBFGS

from al_flows.exploration.replica_checks import LIMITS, ReplicaLimits, describe_error, is_replica_error
from al_flows.exploration.replica_checks import dropped as dropped_record
from al_flows.exploration.shear import ShearSettings
from al_flows.exploration.shear_geometry import run_steps, shear_start, shear_strain
from al_flows.exploration.shear_steps import (
    inherited_info,
    perturb_and_shear,
    relaxed_problem,
    run_seed,
    seed_word,
    shear_frame,
    start_parent_id,
)

OPTIMIZERS = {"BFGS": BFGS, "LBFGS": LBFGS, "FIRE": FIRE}


def run_shear(
    atoms: Atoms,
    calculator,
    settings: ShearSettings,
    seed: int,
    run: int = 0,
    parent_id: str = "",
    explorer: str = "shear",
    dropped: list[dict] | None = None,
    replica: int | None = None,
    limits: ReplicaLimits = LIMITS,
) -> list[Atoms]:
    """One shear run from a copy of ``atoms``; returns the relaxed frame of every step.

    Frames carry a SinglePointCalculator(energy eV, forces eV/Angstrom) from ``calculator``
    and info: explorer, parent_id, run, step (1-based), gamma, energy (eV), deviation
    (``calculator.results['model_deviation']`` in eV/Angstrom, NaN if absent), converged,
    n_opt_steps, seed, frame_id. Noise comes from ``numpy.random.default_rng((seed, run))``.
    A run that blows up (:mod:`al_flows.exploration.shear`) ends there; its record (replica:
    ``replica``, default ``run``) is appended to ``dropped`` when given.
    """
    rng = np.random.default_rng((seed_word(seed), seed_word(run)))
    opt_cls = OPTIMIZERS[settings.optimizer]
    work = shear_start(atoms)
    work.calc = calculator
    base_info = inherited_info(atoms)
    frames: list[Atoms] = []
    for step in range(1, run_steps(settings, work.cell[:]) + 1):
        perturb_and_shear(work, rng, settings)
        relaxed = _relax_fixed_cell(work, opt_cls, settings, limits)
        if relaxed.problem is not None:
            if dropped is not None:
                replica_id = run if replica is None else replica
                dropped.append(
                    dropped_record(replica_id, step, relaxed.problem, run=int(run), parent_id=parent_id, seed=int(seed))
                )
            break
        results = getattr(calculator, "results", {}) or {}
        deviation = float(results.get("model_deviation", np.nan))
        gamma = shear_strain(work.cell[:])
        frames.append(
            shear_frame(
                work,
                (relaxed.energy, relaxed.forces),
                base_info,
                explorer=explorer,
                parent_id=parent_id,
                run=int(run),
                step=step,
                gamma=gamma,
                energy=relaxed.energy,
                deviation=deviation,
                converged=relaxed.converged,
                n_opt_steps=relaxed.n_steps,
                seed=int(seed),
            )
        )
        if gamma >= settings.gamma_max - 1e-12:
            break
    return frames


class _Relaxed(NamedTuple):
    """A relaxation at fixed cell: its blow-up (None: none), energy (eV), forces (eV/A), convergence
    and optimiser steps."""

    problem: str | None
    energy: float
    forces: np.ndarray  # empty when the relaxation raised
    converged: bool
    n_steps: int


def _relax_fixed_cell(work: Atoms, opt_cls, settings: ShearSettings, limits: ReplicaLimits) -> _Relaxed:
    """Step (3) of a shear step: relax ``work``'s positions with its calculator to ``settings.fmax``
    (at most ``max_opt_steps``), stopping at once on non-finite forces; a blow-up is described."""
    opt = opt_cls(work, logfile=None, trajectory=None)
    converged = False
    try:
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            for converged in opt.irun(fmax=settings.fmax, steps=settings.max_opt_steps):
                if not np.isfinite(work.get_forces()).all():
                    break  # stop relaxing at once; the check below ends the run
        energy = float(work.get_potential_energy())
        forces = np.array(work.get_forces(), dtype=float)
    except Exception as err:
        if not is_replica_error(err):
            raise
        return _Relaxed(
            f"{describe_error(err)} at optimiser step {opt.nsteps}", math.nan, np.empty((0, 3)), False, int(opt.nsteps)
        )
    problem = relaxed_problem(work, energy, forces, limits)
    if problem is not None and problem.startswith("non-finite"):
        problem += f" at optimiser step {opt.nsteps}"
    return _Relaxed(problem, energy, forces, bool(converged), int(opt.nsteps))


def explore_shear(
    structures: list[Atoms],
    calculator,
    settings: ShearSettings,
    seed: int,
    explorer: str = "shear",
    dropped: list[dict] | None = None,
    limits: ReplicaLimits = LIMITS,
) -> list[Atoms]:
    """``settings.n_runs`` shear runs from every structure; run r of structure i uses noise
    seeded by (run_seed(seed, i), r). parent_id is the structure's ``structure_id`` (else its frame_id).
    Runs that blow up (:mod:`al_flows.exploration.shear`) are appended to ``dropped`` (replica ``i * n_runs + r``)."""
    frames: list[Atoms] = []
    for i, atoms in enumerate(structures):
        pid = start_parent_id(atoms)
        for r in range(settings.n_runs):
            mine: list[dict] = []
            frames.extend(
                run_shear(
                    atoms,
                    calculator,
                    settings,
                    seed=run_seed(seed, i),
                    run=r,
                    parent_id=pid,
                    explorer=explorer,
                    dropped=mine,
                    replica=i * settings.n_runs + r,
                    limits=limits,
                )
            )
            if dropped is not None:
                dropped.extend({**d, "structure": i} for d in mine)
    return frames
