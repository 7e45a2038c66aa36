"""A labelled pool from NVT molecular dynamics with the labeller itself (like the AIMD set of Sprueill et al.).

The pool of Sprueill et al. is VASP AIMD of the Cu-Ni multilayers: NVT at 1000 K and 1500 K, 400 steps of
1 fs, every ionic step one frame (docs/methods.md). :func:`nvt_pool` runs the same protocol
with any ASE calculator (EMT for the 2-core example): Langevin thermostat, Maxwell-Boltzmann
start, every ``interval``-th step kept with its energy (eV) and forces (eV/A).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixCom
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, thermalize_momenta

from al_flows.frames.ids import frame_id

__all__ = ["nvt_frames", "nvt_pool"]


def nvt_frames(
    atoms: Atoms,
    calculator,
    temperature_K: float,
    n_steps: int,
    timestep_fs: float = 1.0,
    friction_per_fs: float = 0.01,
    interval: int = 1,
    seed: int = 0,
    labeller: str = "ase",
) -> list[Atoms]:
    """Langevin NVT trajectory of a copy of ``atoms``; frames at steps interval, 2*interval, ...
    carry a SinglePointCalculator (energy, forces, stress for periodic cells) and info: explorer
    "md", parent_id, temperature_K, step, labeller, round -1, frame_id."""
    rng = np.random.default_rng(int(seed) & 0xFFFFFFFF)
    work = atoms.copy()
    work.calc = calculator
    work.set_constraint(FixCom())
    thermalize_momenta(work, temperature_K=temperature_K, rng=rng)
    Stationary(work)
    dyn = Langevin(
        work,
        timestep_fs * units.fs,
        temperature_K=temperature_K,
        friction=friction_per_fs / units.fs,
        fixcm=False,
        rng=rng,
    )
    parent = str(atoms.info.get("structure_id") or atoms.info.get("frame_id") or frame_id(atoms))
    frames: list[Atoms] = []
    for step in range(1, n_steps + 1):
        dyn.run(1)
        if step % interval:
            continue
        # the labeller's own forces: FixCom (which only steers the dynamics) must not alter the label
        results = {
            "energy": float(work.get_potential_energy()),
            "forces": np.array(work.get_forces(apply_constraint=False)),
        }
        if work.pbc.all():
            results["stress"] = np.array(work.get_stress())
        frame = work.copy()
        frame.set_constraint()
        frame.calc = SinglePointCalculator(frame, **results)
        frame.info = {
            "round": -1,
            "explorer": "md",
            "parent_id": parent,
            "model_id": "",
            "deviation": float("nan"),
            "labeller": labeller,
            "temperature_K": float(temperature_K),
            "step": step,
            "seed": int(seed),
        }
        frame.info["frame_id"] = frame_id(frame)
        frames.append(frame)
    return frames


def nvt_pool(
    structures: list[Atoms],
    make_calculator: Callable,
    temperatures_K: list[float],
    n_steps: int,
    timestep_fs: float = 1.0,
    interval: int = 1,
    seed: int = 0,
    labeller: str = "ase",
) -> list[Atoms]:
    """One NVT run per (structure, temperature); run k (in that order) is seeded by (seed, k)."""
    frames: list[Atoms] = []
    k = 0
    for atoms in structures:
        for temperature in temperatures_K:
            run_seed = int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, k]).generate_state(1)[0])
            frames.extend(
                nvt_frames(
                    atoms,
                    make_calculator(),
                    temperature,
                    n_steps,
                    timestep_fs,
                    interval=interval,
                    seed=run_seed,
                    labeller=labeller,
                )
            )
            k += 1
    return frames
