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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Literal, NamedTuple

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.optimize import BFGS, FIRE, LBFGS
from pydantic import Field, model_validator

from al_flows.exploration.auto_schedule import AutoSchedule, level_values
from al_flows.exploration.batched_relax import relax_batched
from al_flows.exploration.replica_checks import (
    LIMITS,
    ReplicaLimits,
    describe_error,
    evaluation_problem,
    geometry_problem,
    is_replica_error,
)
from al_flows.exploration.replica_checks import dropped as dropped_record
from al_flows.frames.ids import frame_id
from al_flows.frames.info import PROVENANCE_KEYS
from al_flows.settings import Settings

OPTIMIZERS = {"BFGS": BFGS, "LBFGS": LBFGS, "FIRE": FIRE}
_SHEAR_KEYS = ("run", "step", "gamma", "energy", "converged", "n_opt_steps", "seed")


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
    batched: bool = Field(
        default=True,
        description="explore with an ensemble by relaxing all replicas in lockstep (one batched ensemble "
        "prediction per optimiser step for every running replica, each with its own optimiser); false: "
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


def shear_cell(cell: np.ndarray, delta: float) -> np.ndarray:
    """New 3x3 cell (Angstrom) with ``delta`` added to cell[0,1] and cell[0,2]."""
    new = np.array(cell, dtype=float, copy=True).reshape(3, 3)
    new[0, 1] += delta
    new[0, 2] += delta
    return new


def shear_strain(cell) -> float:
    """Shear strain gamma = sqrt(cell[0,1]**2 + cell[0,2]**2) / cell[0,0] (dimensionless)."""
    c = np.asarray(cell, dtype=float).reshape(3, 3)
    return float(math.hypot(c[0, 1], c[0, 2]) / c[0, 0])


def shear_start(atoms: Atoms) -> Atoms:
    """A copy of ``atoms`` with its first cell vector along +x, where every shear run starts: unchanged
    when a1 is already along +x (off-axis part at most 1e-9 of its length), else rotated rigidly into
    ASE's standard form (lower-triangular cell, handedness kept; fractional coordinates unchanged).
    Without it, gamma = |(cell[0,1], cell[0,2])| / cell[0,0] of a cell with a1 along y, say, is
    meaningless: huge, negative or never reaching gamma_max."""
    work = atoms.copy()
    c = work.cell[:]
    if c[0, 0] > 0 and math.hypot(c[0, 1], c[0, 2]) <= 1e-9 * c[0, 0]:
        return work
    rotated, _ = work.cell.standard_form()
    work.set_cell(rotated, scale_atoms=True)
    return work


def steps_to_gamma(cell, shear_step: float, gamma_max: float, limit: int = 100_000) -> int:
    """Shear steps of ``shear_step`` (Angstrom, added to cell[0,1] and cell[0,2]) that bring
    ``cell`` to a shear strain of at least ``gamma_max`` (the tolerance of the run loop, 1e-12,
    included). For a cell with no initial shear: ``ceil(gamma_max * cell[0,0] / (sqrt(2) * shear_step))``."""
    c = np.array(cell, dtype=float).reshape(3, 3)
    for n in range(limit + 1):
        if shear_strain(c) >= gamma_max - 1e-12:
            return n
        c = shear_cell(c, shear_step)
    raise ValueError(f"shear_step {shear_step} Angstrom does not reach gamma {gamma_max} in {limit} steps")


def run_steps(settings: ShearSettings, cell) -> int:
    """Shear steps of a run from ``cell``: what gamma_max needs, capped by ``max_steps`` when set."""
    need = steps_to_gamma(cell, settings.shear_step, settings.gamma_max)
    return need if settings.max_steps is None else min(need, settings.max_steps)


def check_reaches_gamma(settings: ShearSettings, cell, field: str) -> None:
    """ValueError naming ``field`` when ``max_steps`` stops runs from ``cell`` before gamma_max."""
    need = steps_to_gamma(cell, settings.shear_step, settings.gamma_max)
    if settings.max_steps is not None and settings.max_steps < need:
        c = np.array(cell, dtype=float).reshape(3, 3)
        for _ in range(settings.max_steps):
            c = shear_cell(c, settings.shear_step)
        raise ValueError(
            f"{field}.max_steps: {settings.max_steps} steps of {settings.shear_step} Angstrom reach gamma "
            f"{shear_strain(c):.3f} on a cell with cell[0,0] = {float(np.asarray(cell)[0, 0]):.2f} Angstrom, "
            f"but gamma_max {settings.gamma_max} needs {need}; raise {field}.max_steps or {field}.shear_step, "
            "or leave max_steps out"
        )


def _u64(n: int) -> int:
    """Non-negative 64-bit seed word of any Python int (negative seeds allowed)."""
    return int(n) & 0xFFFFFFFFFFFFFFFF


def _parent_id(atoms: Atoms) -> str:
    return str(atoms.info.get("structure_id") or atoms.info.get("frame_id") or frame_id(atoms))


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
    A run that blows up (module doc) ends there; its record (replica: ``replica``, default ``run``)
    is appended to ``dropped`` when given.
    """
    rng = np.random.default_rng((_u64(seed), _u64(run)))
    opt_cls = OPTIMIZERS[settings.optimizer]
    work = shear_start(atoms)
    work.calc = calculator
    base_info = _base_info(atoms)
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
            _frame(
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


def perturb_and_shear(work: Atoms, rng: np.random.Generator, settings: ShearSettings) -> None:
    """Steps (1) and (2) of a shear step (module doc), in place: N(0, sigma^2) noise (Angstrom) on every
    coordinate, then the cell sheared by ``shear_step`` with the atoms scaled along."""
    if settings.sigma > 0:
        work.positions = work.positions + rng.normal(0.0, settings.sigma, size=(len(work), 3))
    work.set_cell(shear_cell(work.cell[:], settings.shear_step), scale_atoms=True)


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
    problem = _relaxed_problem(work, energy, forces, limits)
    if problem is not None and problem.startswith("non-finite"):
        problem += f" at optimiser step {opt.nsteps}"
    return _Relaxed(problem, energy, forces, bool(converged), int(opt.nsteps))


def _base_info(atoms: Atoms) -> dict:
    """The info a start's frames inherit: all but provenance and the shear keys."""
    return {k: v for k, v in atoms.info.items() if k not in PROVENANCE_KEYS and k not in _SHEAR_KEYS}


def _relaxed_problem(work: Atoms, energy: float, forces: np.ndarray, limits: ReplicaLimits) -> str | None:
    """Why a relaxed frame shows a blow-up (non-finite energy/forces/positions, a force above the
    limit, atoms too close), or None."""
    return evaluation_problem(energy, forces, limits) or geometry_problem(work, limits)


def _frame(work: Atoms, labels: tuple[float, np.ndarray], base_info: dict, **info) -> Atoms:
    """Copy of ``work`` labelled with (energy eV, forces eV/A), info ``base_info`` + ``info`` + frame_id."""
    frame = work.copy()
    frame.calc = SinglePointCalculator(frame, energy=labels[0], forces=labels[1])
    frame.info = dict(base_info)
    frame.info.update(info)
    frame.info["frame_id"] = frame_id(frame)
    return frame


@dataclass
class ShearReplica:
    """One (structure, run) replica of :func:`explore_shear_batched`: the structure being sheared (no
    calculator), its starting cell (Angstrom), noise generator and seed, provenance and its frames."""

    work: Atoms
    start_cell: np.ndarray
    rng: np.random.Generator
    run: int
    seed: int
    parent_id: str
    base_info: dict
    replica: int
    structure: int
    frames: list[Atoms] = dc_field(default_factory=list)


def atoms_cell(replica: ShearReplica) -> np.ndarray:
    """The starting cell of a batched replica (its step count follows from it)."""
    return replica.start_cell


def run_seed(seed: int, structure_index: int) -> int:
    """Seed of the runs from structure ``structure_index`` in :func:`explore_shear`."""
    return int(np.random.SeedSequence([_u64(seed), _u64(structure_index)]).generate_state(1, dtype=np.uint32)[0])


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
    Runs that blow up (module doc) are appended to ``dropped`` (replica ``i * n_runs + r``)."""
    frames: list[Atoms] = []
    for i, atoms in enumerate(structures):
        pid = _parent_id(atoms)
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


def explore_shear_batched(
    structures: list[Atoms],
    ensemble,
    settings: ShearSettings,
    seed: int,
    explorer: str = "shear",
    batch_size: int | None = None,
    dropped: list[dict] | None = None,
    limits: ReplicaLimits = LIMITS,
) -> list[Atoms]:
    """:func:`explore_shear` with all ``len(structures) * settings.n_runs`` replicas in lockstep and
    the ensemble mean relaxing them together (:func:`al_flows.exploration.batched_relax.relax_batched`, one
    ``ensemble.predict`` of all running replicas per optimiser step; ``settings.optimizer`` FIRE,
    BFGS or LBFGS, each as ASE's). Replica (i, r) draws its noise from
    ``default_rng((run_seed(seed, i), r))`` as in :func:`run_shear`; frames, their order and info
    (deviation: the ensemble's model deviation of the relaxed frame) are those of
    ``explore_shear(structures, ensemble.calculator(), settings, seed, explorer)``.
    ``batch_size``: frames per forward pass, passed to ``ensemble.predict`` (its default if None).
    A replica that blows up (module doc) leaves the batch and is appended to ``dropped``, as in
    :func:`explore_shear`; the others go on unchanged."""
    replicas = shear_replicas(structures, settings, seed)
    running = list(replicas)
    n_steps = max((run_steps(settings, rep.work.cell[:]) for rep in replicas), default=0)
    for step in range(1, n_steps + 1):
        if not running:
            break
        for rep in running:
            perturb_and_shear(rep.work, rep.rng, settings)
        relaxed = relax_batched(
            [rep.work for rep in running],
            ensemble,
            fmax=settings.fmax,
            max_steps=settings.max_opt_steps,
            optimizer=settings.optimizer,
            batch_size=batch_size,
        )
        running = [
            rep
            for rep, res in zip(running, relaxed, strict=True)
            if _record_relaxed(rep, res, step, settings, explorer, dropped, limits)
        ]
    return [f for rep in replicas for f in rep.frames]


def shear_replicas(structures: list[Atoms], settings: ShearSettings, seed: int) -> list[ShearReplica]:
    """The replicas (structure i, run r), in that order, of :func:`explore_shear_batched`."""
    replicas: list[ShearReplica] = []
    for i, atoms in enumerate(structures):
        pid = _parent_id(atoms)
        rseed = run_seed(seed, i)
        base_info = _base_info(atoms)
        for r in range(settings.n_runs):
            work = shear_start(atoms)
            work.calc = None
            replicas.append(
                ShearReplica(
                    work=work,
                    start_cell=work.cell[:].copy(),
                    rng=np.random.default_rng((_u64(rseed), _u64(r))),
                    run=r,
                    seed=rseed,
                    parent_id=pid,
                    base_info=base_info,
                    replica=len(replicas),
                    structure=i,
                )
            )
    return replicas


def _record_relaxed(
    rep: ShearReplica, res, step: int, settings: ShearSettings, explorer: str, dropped, limits: ReplicaLimits
) -> bool:
    """Take replica ``rep``'s batched relaxation ``res`` of shear step ``step``: its frame, or its blow-up
    (appended to ``dropped``; the run ends, as in :func:`run_shear`). Whether the replica runs on."""
    work = rep.work
    if res.finite and np.isfinite(res.positions).all():
        work.set_positions(res.positions)
        problem = _relaxed_problem(work, res.energy, res.forces, limits)
    else:
        problem = res.reason or "non-finite positions"
    if problem is not None:  # the run ends here, as in run_shear
        if dropped is not None:
            dropped.append(
                dropped_record(
                    rep.replica,
                    step,
                    problem,
                    run=int(rep.run),
                    parent_id=rep.parent_id,
                    seed=int(rep.seed),
                    structure=rep.structure,
                )
            )
        return False
    gamma = shear_strain(work.cell[:])
    rep.frames.append(
        _frame(
            work,
            (res.energy, res.forces),
            rep.base_info,
            explorer=explorer,
            parent_id=rep.parent_id,
            run=int(rep.run),
            step=step,
            gamma=gamma,
            energy=res.energy,
            deviation=res.deviation,
            converged=res.converged,
            n_opt_steps=res.n_steps,
            seed=int(rep.seed),
        )
    )
    return gamma < settings.gamma_max - 1e-12 and step < run_steps(settings, atoms_cell(rep))
