"""The pieces of one shear step that the sequential and the batched runner share: the noise seeds
of a replica, the info its frames inherit, perturbing and shearing (Angstrom), the blow-up check of
a relaxed frame and the labelled frame (energy eV, forces eV/Angstrom)."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from al_flows.exploration.replica_checks import ReplicaLimits, evaluation_problem, geometry_problem
from al_flows.exploration.shear import ShearSettings
from al_flows.exploration.shear_geometry import shear_cell
from al_flows.frames.ids import frame_id
from al_flows.frames.info import PROVENANCE_KEYS

_SHEAR_KEYS = ("run", "step", "gamma", "energy", "converged", "n_opt_steps", "seed")


def seed_word(n: int) -> int:
    """Non-negative 64-bit seed word of any Python int (negative seeds allowed)."""
    return int(n) & 0xFFFFFFFFFFFFFFFF


def start_parent_id(atoms: Atoms) -> str:
    """The parent_id of the frames of a run from ``atoms``: its ``structure_id``, else its frame_id."""
    return str(atoms.info.get("structure_id") or atoms.info.get("frame_id") or frame_id(atoms))


def run_seed(seed: int, structure_index: int) -> int:
    """Seed of the runs from structure ``structure_index`` in
    :func:`al_flows.exploration.shear_sequential.explore_shear`."""
    return int(
        np.random.SeedSequence([seed_word(seed), seed_word(structure_index)]).generate_state(1, dtype=np.uint32)[0]
    )


def perturb_and_shear(work: Atoms, rng: np.random.Generator, settings: ShearSettings) -> None:
    """Steps (1) and (2) of a shear step (:mod:`al_flows.exploration.shear`), in place: N(0, sigma^2)
    noise (Angstrom) on every coordinate, then the cell sheared by ``shear_step`` with the atoms
    scaled along."""
    if settings.sigma > 0:
        work.positions = work.positions + rng.normal(0.0, settings.sigma, size=(len(work), 3))
    work.set_cell(shear_cell(work.cell[:], settings.shear_step), scale_atoms=True)


def inherited_info(atoms: Atoms) -> dict:
    """The info a start's frames inherit: all but provenance and the shear keys."""
    return {k: v for k, v in atoms.info.items() if k not in PROVENANCE_KEYS and k not in _SHEAR_KEYS}


def relaxed_problem(work: Atoms, energy: float, forces: np.ndarray, limits: ReplicaLimits) -> str | None:
    """Why a relaxed frame shows a blow-up (non-finite energy/forces/positions, a force above the
    limit, atoms too close), or None."""
    return evaluation_problem(energy, forces, limits) or geometry_problem(work, limits)


def shear_frame(work: Atoms, labels: tuple[float, np.ndarray], base_info: dict, **info) -> Atoms:
    """Copy of ``work`` labelled with (energy eV, forces eV/A), info ``base_info`` + ``info`` + frame_id."""
    frame = work.copy()
    frame.calc = SinglePointCalculator(frame, energy=labels[0], forces=labels[1])
    frame.info = dict(base_info)
    frame.info.update(info)
    frame.info["frame_id"] = frame_id(frame)
    return frame
