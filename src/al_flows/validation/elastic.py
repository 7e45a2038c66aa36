"""Cubic elastic constants of one element (for :mod:`al_flows.validation.autotest`).

Conventions
- Elastic: cubic conventional cell at the equilibrium a0; strains +-delta; C11, C12 from
  eps_xx, C44 from engineering shear gamma_yz = delta; atoms relaxed at fixed cell (BFGS)
  in every strained cell. Stress method: central differences of the ASE stress (tensile
  positive). Fallback when the calculator has no stress (NotImplementedError): 5-point
  second derivatives of E/V0 at 0, +-delta, +-2delta for eps_xx (C11), eps_xx = eps_yy
  (2(C11 + C12)) and gamma_yz (C44).

Units: Angstrom, eV, GPa.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.units import GPa

from al_flows.validation.lattices import MakeCalc, crystal, lattice_minimum, relax_positions

__all__ = ["elastic_constants"]


def _strained(atoms0: Atoms, eps: np.ndarray, calc, fmax: float, steps: int, stress: bool):
    atoms = atoms0.copy()
    atoms.set_cell(atoms0.cell[:] @ (np.eye(3) + eps), scale_atoms=True)
    atoms.calc = calc
    if len(atoms) > 1:
        relax_positions(atoms, fmax, steps)
    return atoms.get_potential_energy(), (atoms.get_stress(voigt=True) if stress else None)


def elastic_constants(
    element: str,
    make_calculator: MakeCalc,
    lattice: str = "fcc",
    delta: float = 0.005,
    a0: float | None = None,
    fmax: float = 0.01,
    max_opt_steps: int = 500,
) -> dict:
    """Cubic C11, C12, C44 and B = (C11 + 2 C12)/3 (GPa); ``method`` is "stress" or "energy"."""
    calc = make_calculator()
    a0 = a0 or lattice_minimum(element, lattice, calc)[0]
    atoms0 = crystal(element, lattice, a0, cubic=True)
    atoms0.calc = calc
    try:
        atoms0.get_stress()
        use_stress = True
    except NotImplementedError:
        use_stress = False

    def mode(i, j, e):  # symmetric strain with eps_ij = eps_ji = e (i == j: normal strain)
        m = np.zeros((3, 3))
        m[i, j] = m[j, i] = e
        return m

    def run(eps):
        return _strained(atoms0, eps, calc, fmax, max_opt_steps, use_stress)

    if use_stress:
        (_, sp), (_, sm) = run(mode(0, 0, delta)), run(mode(0, 0, -delta))
        (_, tp), (_, tm) = run(mode(1, 2, delta / 2)), run(mode(1, 2, -delta / 2))
        c11 = (sp[0] - sm[0]) / (2 * delta)
        c12 = (sp[1] + sp[2] - sm[1] - sm[2]) / (4 * delta)
        c44 = (tp[3] - tm[3]) / (2 * delta)
    else:
        v0 = atoms0.get_volume()

        def d2(make_eps):  # 5-point second derivative of E/V0 (eV/A^3)
            e = [run(make_eps(k * delta))[0] for k in (-2, -1, 0, 1, 2)]
            return (-e[0] + 16 * e[1] - 30 * e[2] + 16 * e[3] - e[4]) / (12 * delta**2 * v0)

        c11 = d2(lambda x: mode(0, 0, x))
        c12 = d2(lambda x: mode(0, 0, x) + mode(1, 1, x)) / 2 - c11
        c44 = d2(lambda x: mode(1, 2, x / 2))
    c11, c12, c44 = (float(c / GPa) for c in (c11, c12, c44))
    return {
        "C11": c11,
        "C12": c12,
        "C44": c44,
        "B": (c11 + 2 * c12) / 3,
        "a0": float(a0),
        "method": "stress" if use_stress else "energy",
    }
