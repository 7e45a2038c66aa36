"""Shear runs in lockstep with an ensemble: every shear step perturbs and shears each running replica
(the noise streams of :func:`al_flows.exploration.shear_sequential.run_shear`), then relaxes all of them
together with :func:`al_flows.exploration.batched_relax.relax_batched` (one batched ensemble prediction per
optimiser step, to ``fmax`` eV/Angstrom); lengths in Angstrom. The frames are those of
:func:`al_flows.exploration.shear_sequential.explore_shear` with the ensemble's calculator, up to the
floating-point round-off of batched model evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field

import numpy as np
from ase import Atoms

from al_flows.exploration.batched_relax import relax_batched
from al_flows.exploration.replica_checks import LIMITS, ReplicaLimits
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
    ensemble prediction of all running replicas per optimiser step; ``settings.optimizer`` FIRE,
    BFGS or LBFGS, each as ASE's, stepped by ``settings.optimizer_engine``). Replica (i, r) draws its noise from
    ``default_rng((run_seed(seed, i), r))`` as in :func:`run_shear`; frames, their order and info
    (deviation: the ensemble's model deviation of the relaxed frame) are those of
    ``explore_shear(structures, ensemble.calculator(), settings, seed, explorer)``.
    ``batch_size``: frames per forward pass, passed to ``ensemble.predict`` (its default if None).
    A replica that blows up (:mod:`al_flows.exploration.shear`) leaves the batch and is appended to ``dropped``, as in
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
            engine=settings.optimizer_engine,
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
        pid = start_parent_id(atoms)
        rseed = run_seed(seed, i)
        base_info = inherited_info(atoms)
        for r in range(settings.n_runs):
            work = shear_start(atoms)
            work.calc = None
            replicas.append(
                ShearReplica(
                    work=work,
                    start_cell=work.cell[:].copy(),
                    rng=np.random.default_rng((seed_word(rseed), seed_word(r))),
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
        problem = relaxed_problem(work, res.energy, res.forces, limits)
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
        shear_frame(
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
