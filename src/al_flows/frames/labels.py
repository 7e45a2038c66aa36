"""A frame's labels: the results of its calculator (a SinglePointCalculator: energy eV, forces
eV/Angstrom, optionally stress eV/Angstrom^3), a copy of a frame that keeps them, and the energy a
frame recorded."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.calculator import all_properties
from ase.calculators.singlepoint import SinglePointCalculator


def recorded_energy(atoms: Atoms) -> float:
    """``info['energy']`` (eV) if recorded, else the attached calculator's energy."""
    return float(atoms.info["energy"]) if "energy" in atoms.info else float(atoms.get_potential_energy())


def frame_labels(atoms: Atoms) -> dict:
    """The results of ``atoms``' calculator (a new dict; empty without a calculator)."""
    calc = atoms.calc
    return dict(getattr(calc, "results", {}) or {}) if calc is not None else {}


def copy_frame(atoms: Atoms) -> Atoms:
    """Copy of a frame including info, arrays and a SinglePointCalculator with its labels."""
    new = atoms.copy()
    new.info = dict(atoms.info)
    results = {
        k: (np.array(v) if isinstance(v, np.ndarray) else v)
        for k, v in frame_labels(atoms).items()
        if k in all_properties
    }
    if results:
        new.calc = SinglePointCalculator(new, **results)
    return new
