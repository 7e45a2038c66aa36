"""Surface energies of one fcc element (for :mod:`al_flows.validation.autotest`; the surface formation
energy of Zhang et al., DP-GEN: E_sf = (E_s - N_s E_0) / (2A)).

Conventions
- Slab: ``ase.build.fcc100`` / ``fcc110`` / ``fcc111`` at the calculator's own lattice constant,
  ``layers`` atomic layers parallel to the surface, ``size`` in-plane repeats of the surface cell,
  periodic in-plane, a gap of ``vacuum`` Angstrom between the slab and its periodic image along the
  normal (the cell is periodic in all three directions, so any calculator works). Two surfaces.
- E_0: energy per atom of the bulk fcc crystal at the same lattice constant and calculator.
- Relaxed (default): positions relaxed at fixed cell (BFGS), as Zhang et al. define E_sf for the
  relaxed surface structure; the unrelaxed value (the bulk-terminated slab) is returned too.

Units: Angstrom, eV; the surface energy in eV/Angstrom^2 and J/m^2 (the autotest row).
"""

from __future__ import annotations

import numpy as np
from ase.build import fcc100, fcc110, fcc111
from ase.units import _e

from al_flows.validation.lattices import MakeCalc, crystal, lattice_minimum, relax_positions

__all__ = ["J_PER_M2", "SURFACES", "surface_energy"]

J_PER_M2 = _e * 1e20  # eV/Angstrom^2 -> J/m^2
SURFACES = {"100": fcc100, "110": fcc110, "111": fcc111}


def surface_energy(
    element: str,
    make_calculator: MakeCalc,
    miller: str = "111",
    layers: int = 9,
    vacuum: float = 12.0,
    size=(2, 2),
    relax: bool = True,
    a0: float | None = None,
    fmax: float = 0.01,
    max_opt_steps: int = 500,
) -> dict:
    """E_surf = (E_slab - N E_0) / (2 A) of the fcc (``miller``) surface, eV/Angstrom^2 and J/m^2,
    relaxed at fixed cell unless ``relax`` is False; also the unrelaxed value."""
    if miller not in SURFACES:
        raise ValueError(f"miller {miller!r}: use one of {sorted(SURFACES)}")
    if layers < 3:
        raise ValueError(f"layers {layers}: a slab needs at least 3 layers")
    calc = make_calculator()
    a0 = a0 or lattice_minimum(element, "fcc", calc)[0]
    bulk = crystal(element, "fcc", a0, cubic=True)
    bulk.calc = calc
    e0 = bulk.get_potential_energy() / len(bulk)
    slab = SURFACES[miller](element, size=(size[0], size[1], layers), a=a0, vacuum=vacuum / 2)
    slab.pbc = True
    slab.calc = calc
    area = float(np.linalg.norm(np.cross(slab.cell[0], slab.cell[1])))
    n = len(slab)
    e_unrelaxed = slab.get_potential_energy()
    converged = relax_positions(slab, fmax, max_opt_steps) if relax else False
    per_a2 = (slab.get_potential_energy() - n * e0) / (2 * area)
    per_a2_unrelaxed = (e_unrelaxed - n * e0) / (2 * area)
    return {
        "miller": miller,
        "E_surf": float(per_a2 * J_PER_M2),
        "E_surf_eV_per_A2": float(per_a2),
        "E_surf_unrelaxed": float(per_a2_unrelaxed * J_PER_M2),
        "N": n,
        "area": area,
        "layers": layers,
        "vacuum": float(vacuum),
        "a0": float(a0),
        "converged": converged,
    }
