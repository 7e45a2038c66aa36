"""The neighbour list of al_flows: one function for the model's inputs
(:func:`al_flows.potential.inputs.frame_inputs`), the replica checks of the explorers
(:func:`al_flows.exploration.replica_checks.min_distance`) and the structure checks
(:func:`al_flows.frames.checks.close_pairs`).

Pairs come from matscipy's ``neighbour_list`` with every periodic image within the cutoff, which
is exact in small and sheared triclinic cells. matscipy needs a cell with a volume: a
non-periodic frame without one (ASE's default zero cell) is given a box holding all its atoms,
which changes no pair (a non-periodic frame has no images, so every shift is zero). A partly
periodic frame with a degenerate cell takes ASE's neighbour list (the structure checks refuse
such cells before asking for pairs).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

# |det(cell)| (Angstrom^3) below which a cell counts as having no volume
DEGENERATE_VOLUME = 1e-6


def neighbour_list(quantities: str, atoms: Atoms, cutoff: float):
    """``matscipy.neighbours.neighbour_list(quantities, atoms, cutoff)`` (e.g. ``"ijdS"``: first
    atom, second atom, distance in Angstrom, cell shift of the second), every periodic image
    within ``cutoff`` included; also for a non-periodic frame without a cell (see the module doc)."""
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if abs(np.linalg.det(np.asarray(atoms.cell.array, dtype=float))) < DEGENERATE_VOLUME:
        if not pbc.any():
            # matscipy needs a box; any box holding all atoms works for a non-periodic frame
            boxed = Atoms(numbers=atoms.numbers, positions=atoms.positions, pbc=False)
            boxed.set_cell(np.ptp(atoms.positions, axis=0) + 1.0, scale_atoms=False)
            boxed.center()
            atoms = boxed
        else:
            from ase.neighborlist import neighbor_list

            return neighbor_list(quantities, atoms, float(cutoff))
    from matscipy.neighbours import neighbour_list as matscipy_neighbour_list  # imported on first use (~0.2 s)

    return matscipy_neighbour_list(quantities, atoms, float(cutoff))
