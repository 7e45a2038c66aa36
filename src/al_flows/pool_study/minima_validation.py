"""Check NNP shear minima against the reference method (the Fig. 6 analysis of Sprueill et al.).

For each NNP minimum (a relaxed gamma_max frame):

1. single point with the reference: ``e_ref`` vs the NNP energy ``e_nnp`` (eV/atom difference
   ``d_single``; the paper found |d| <= 0.005 eV/atom);
2. relax the internal coordinates with the reference at fixed cell: ``e_ref_relaxed``; the
   minimum is *spurious* when this drops the reference energy by more than ``spurious_tol``
   eV/atom (no matching reference minimum: the paper's 5 of 21, ~10 eV lower);
3. relax the reference minimum back with the NNP: ``e_nnp_back`` vs ``e_ref_relaxed``
   (does the NNP hold the reference minimum? Fig. S2 of Sprueill et al., within 0.006 eV/atom).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.optimize import BFGS

from al_flows.frames.ids import frame_id
from al_flows.frames.labels import recorded_energy

__all__ = ["select_minima", "relax_fixed_cell", "validation_row", "validate_minimum"]


def select_minima(minima: list[Atoms], n: int) -> list[Atoms]:
    """The ``n`` minima with the highest energy per atom above the lowest minimum of the same
    system (``info['parent_id']``); ties keep input order. Adds ``info['excess_energy_per_atom']``."""
    lowest: dict[str, float] = {}
    per_atom = []
    for atoms in minima:
        e = recorded_energy(atoms) / len(atoms)
        key = str(atoms.info.get("parent_id", ""))
        lowest[key] = min(lowest.get(key, np.inf), e)
        per_atom.append((key, e))
    excess = [e - lowest[key] for key, e in per_atom]
    order = sorted(range(len(minima)), key=lambda k: -excess[k])[: max(0, int(n))]
    chosen = []
    for k in order:
        atoms = minima[k].copy()
        atoms.calc = minima[k].calc
        atoms.info = dict(minima[k].info, excess_energy_per_atom=float(excess[k]))
        chosen.append(atoms)
    return chosen


def relax_fixed_cell(atoms: Atoms, calculator, fmax: float, max_steps: int) -> tuple[Atoms, float, bool, int]:
    """(relaxed copy with a SinglePointCalculator, energy eV, converged, optimiser steps)."""
    work = atoms.copy()
    work.calc = calculator
    opt = BFGS(work, logfile=None)
    converged = bool(opt.run(fmax=fmax, steps=max_steps))
    energy = float(work.get_potential_energy())
    relaxed = work.copy()
    relaxed.calc = SinglePointCalculator(relaxed, energy=energy, forces=np.array(work.get_forces()))
    relaxed.info = dict(atoms.info)
    relaxed.info["frame_id"] = frame_id(relaxed)
    return relaxed, energy, converged, int(opt.nsteps)


def validation_row(
    minimum: Atoms,
    e_ref: float,
    ref_relaxed: Atoms,
    e_ref_relaxed: float,
    ref_converged: bool,
    ref_steps: int,
    make_nnp: Callable,
    fmax: float = 0.01,
    max_steps: int = 500,
    spurious_tol: float = 0.005,
) -> dict:
    """Row of the validation table from the reference's single point ``e_ref`` and relaxation
    (``ref_relaxed``, ``e_ref_relaxed``, eV); relaxes ``ref_relaxed`` back with the NNP."""
    n = len(minimum)
    e_nnp = recorded_energy(minimum)
    _, e_nnp_back, back_conv, _ = relax_fixed_cell(ref_relaxed, make_nnp(), fmax, max_steps)
    drop = (e_ref - e_ref_relaxed) / n
    return {
        "frame_id": str(minimum.info.get("frame_id", frame_id(minimum))),
        "system": str(minimum.info.get("parent_id", "")),
        "run": int(minimum.info.get("run", -1)),
        "gamma": float(minimum.info.get("gamma", np.nan)),
        "n_atoms": n,
        "excess_energy_per_atom": float(minimum.info.get("excess_energy_per_atom", np.nan)),
        "e_nnp": e_nnp,
        "e_ref": float(e_ref),
        "d_single_per_atom": (e_nnp - e_ref) / n,
        "e_ref_relaxed": float(e_ref_relaxed),
        "relax_drop_per_atom": drop,
        "ref_relax_steps": int(ref_steps),
        "ref_relax_converged": bool(ref_converged),
        "e_nnp_back": e_nnp_back,
        "d_back_per_atom": (e_nnp_back - e_ref_relaxed) / n,
        "nnp_back_converged": back_conv,
        "spurious": bool(drop > spurious_tol),
    }


def validate_minimum(
    minimum: Atoms,
    make_reference: Callable,
    make_nnp: Callable,
    fmax: float = 0.01,
    max_steps: int = 500,
    spurious_tol: float = 0.005,
) -> tuple[dict, Atoms]:
    """Row of the validation table for one NNP minimum (energies eV, differences eV/atom) and
    the reference-relaxed structure, with an ASE calculator as the reference."""
    single = minimum.copy()
    single.calc = make_reference()
    e_ref = float(single.get_potential_energy())
    relaxed, e_ref_relaxed, ref_conv, ref_steps = relax_fixed_cell(minimum, make_reference(), fmax, max_steps)
    row = validation_row(
        minimum, e_ref, relaxed, e_ref_relaxed, ref_conv, ref_steps, make_nnp, fmax, max_steps, spurious_tol
    )
    return row, relaxed
