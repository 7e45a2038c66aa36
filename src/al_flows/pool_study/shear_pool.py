"""A labelled pool made the way of Sprueill et al.: shear paths relaxed by the labeller itself,
every optimiser step a frame, plus labeller MD at each strain (no jobflow).

Each run follows the stochastic shear protocol of :mod:`al_flows.exploration.shear` (perturb, shear by
``shear_step`` on cell[0,1] and cell[0,2], relax at fixed cell) with the labeller as the
calculator, and records EVERY optimiser step of every relaxation (the paper's pool holds the
relaxation trajectories, not only their minima), with ``info``: explorer ``labeller_shear``, run,
step (shear step), opt_step, gamma, parent_id, labeller, round -1. The relaxed structure of each
shear step then starts one NVT (Langevin) run per temperature (:func:`al_flows.exploration.labeller_md.nvt_pool`;
the paper: 1000 K and 1500 K), whose frames carry the step's ``gamma``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from al_flows.exploration.labeller_md import nvt_pool
from al_flows.exploration.shear import ShearSettings
from al_flows.exploration.shear_geometry import run_steps, shear_start, shear_strain
from al_flows.exploration.shear_sequential import OPTIMIZERS
from al_flows.exploration.shear_steps import perturb_and_shear
from al_flows.frames.ids import frame_id

__all__ = ["labeller_shear_trajectories", "labeller_shear_pool", "labelled_copy"]


def labelled_copy(work: Atoms, info: dict) -> Atoms:
    """A copy of ``work`` with the energy and forces of its calculator frozen and ``info`` (with frame_id)."""
    frame = work.copy()
    frame.calc = SinglePointCalculator(
        frame, energy=float(work.get_potential_energy()), forces=np.array(work.get_forces(), dtype=float)
    )
    frame.info = dict(info)
    frame.info["frame_id"] = frame_id(frame)
    return frame


def labeller_shear_trajectories(
    structures: list[Atoms], make_calculator: Callable, settings: ShearSettings, seed: int, labeller: str
) -> tuple[list[Atoms], list[Atoms]]:
    """(every optimiser-step frame, the relaxed frame of every shear step) of ``settings.n_runs``
    labeller shear runs per structure; run r of structure i draws its noise from
    ``default_rng((seed, i, r))``."""
    steps, relaxed = [], []
    for i, atoms in enumerate(structures):
        parent = str(atoms.info.get("structure_id") or atoms.info.get("frame_id") or frame_id(atoms))
        for r in range(settings.n_runs):
            rng = np.random.default_rng((int(seed) & 0xFFFFFFFF, i, r))
            work = shear_start(atoms)
            work.calc = make_calculator()
            for step in range(1, run_steps(settings, work.cell[:]) + 1):
                perturb_and_shear(work, rng, settings)
                gamma = shear_strain(work.cell[:])
                base = {
                    "explorer": "labeller_shear",
                    "run": r,
                    "step": step,
                    "gamma": gamma,
                    "parent_id": parent,
                    "labeller": labeller,
                    "round": -1,
                    "model_id": "",
                    "deviation": float("nan"),
                }
                opt = OPTIMIZERS[settings.optimizer](work, logfile=None, trajectory=None)
                for opt_step, _ in enumerate(opt.irun(fmax=settings.fmax, steps=settings.max_opt_steps)):
                    steps.append(labelled_copy(work, {**base, "opt_step": opt_step}))  # forces at these positions
                relaxed.append(steps[-1])
    return steps, relaxed


def labeller_shear_pool(
    structures: list[Atoms],
    make_calculator: Callable,
    settings: ShearSettings,
    seed: int,
    labeller: str,
    temperatures_K: list[float],
    md_steps: int,
    md_timestep_fs: float,
    md_interval: int,
) -> list[Atoms]:
    """The pool: every optimiser step of the labeller shear runs, then MD from each relaxed
    shear step at each temperature (no MD when ``temperatures_K`` is empty)."""
    steps, relaxed = labeller_shear_trajectories(structures, make_calculator, settings, seed, labeller)
    frames = list(steps)
    if temperatures_K and md_steps > 0:
        for k, start in enumerate(relaxed):
            start = start.copy()
            start.info = {
                "structure_id": f"{start.info['parent_id']}-run{start.info['run']}-step{start.info['step']}",
                "gamma": start.info["gamma"],
            }
            md = nvt_pool(
                [start],
                make_calculator,
                list(temperatures_K),
                md_steps,
                md_timestep_fs,
                interval=md_interval,
                seed=int(seed) + 7919 * (k + 1),
                labeller=labeller,
            )
            for atoms in md:
                atoms.info.update(gamma=start.info["gamma"], explorer="labeller_shear_md")
            frames.extend(md)
    return frames
