"""Defects of one element: vacancy and interstitial formation energies and the generalised
stacking-fault energy (for :mod:`al_flows.validation.autotest`).

Conventions
- Vacancy: E_f = E(N-1) - (N-1)/N E(N), cubic cell repeated, positions relaxed, cell fixed.
- Interstitial (fcc only; the octahedral and tetrahedral sites of Zhang et al., DP-GEN, in their table
  of Cu defect energies):
  E_f = E(N+1) - (N+1)/N E(N), one atom added at the site nearest the middle of the same
  repeated cubic cell (octahedral: (1/2, 1/2, 1/2) a, tetrahedral: (1/4, 1/4, 1/4) a of a
  conventional cell), positions relaxed at fixed cell. The relaxation starts on the symmetric
  site, where the force on the added atom vanishes by symmetry, so the atom stays on its site
  (the energy of the interstitial AT that site, which may be a saddle, not the split dumbbell).
- GSFE (fcc only): (111) periodic stack from ``ase.build.fcc111(periodic=True)``; the upper
  half of the layers is shifted rigidly by f * b_p along the partial <112> direction (b_p =
  a/sqrt(6), the A->B stacking shift) AND the c vector is tilted by the same f * b_p, so the
  periodic boundary stays perfect: ONE fault per cell, gamma = (E(f) - E(0)) / A (no factor
  1/2). Atoms relax along z only (FixCartesian x, y); with ``relax_normal`` (default) the cell
  height is relaxed too (bounded Brent, energy-only), as a slab with vacuum would, which removes
  the 1/layers elastic penalty of a fixed cell (EMT Al ISF: -3.5 fixed vs -11.2 relaxed at 9
  layers; -11.2 at any layer count when relaxed). f = 1 is the intrinsic
  fault (ISF); the unstable fault (USF) is the maximum for 0 <= f <= 1 (parabola-refined);
  f = 2 is the on-top stacking, f = 3 the perfect crystal again.

Units: Angstrom, eV, mJ/m^2.
"""

from __future__ import annotations

import math

import numpy as np
from ase import Atoms
from ase.build import fcc111
from ase.constraints import FixCartesian
from ase.units import _e
from scipy.optimize import minimize_scalar

from al_flows.validation.lattices import MakeCalc, crystal, lattice_minimum, relax_positions

__all__ = [
    "MJ_PER_M2",
    "INTERSTITIAL_SITES",
    "vacancy_formation",
    "interstitial_formation",
    "stacking_fault",
    "gsfe_cell",
]

MJ_PER_M2 = _e * 1e20 * 1e3  # eV/Angstrom^2 -> mJ/m^2
# fractional position of each interstitial site in the fcc conventional cell
INTERSTITIAL_SITES = {"octahedral": (0.5, 0.5, 0.5), "tetrahedral": (0.25, 0.25, 0.25)}


def vacancy_formation(
    element: str,
    make_calculator: MakeCalc,
    repeat=(3, 3, 3),
    relax: bool = True,
    lattice: str = "fcc",
    a0: float | None = None,
    fmax: float = 0.01,
    max_opt_steps: int = 500,
) -> dict:
    """E_vac = E(N-1) - (N-1)/N E(N) (eV), positions relaxed at fixed cell; also the unrelaxed value."""
    calc = make_calculator()
    a0 = a0 or lattice_minimum(element, lattice, calc)[0]
    perfect = crystal(element, lattice, a0, cubic=True).repeat(tuple(repeat))
    perfect.calc = calc
    n, e_bulk = len(perfect), perfect.get_potential_energy()
    defect = perfect.copy()
    del defect[0]
    defect.calc = calc
    e_unrelaxed = defect.get_potential_energy()
    converged = relax_positions(defect, fmax, max_opt_steps) if relax else False
    ref = (n - 1) / n * e_bulk
    return {
        "E_vac": float(defect.get_potential_energy() - ref),
        "E_vac_unrelaxed": float(e_unrelaxed - ref),
        "N": n,
        "a0": float(a0),
        "converged": converged,
    }


def interstitial_formation(
    element: str,
    make_calculator: MakeCalc,
    site: str = "octahedral",
    repeat=(3, 3, 3),
    relax: bool = True,
    a0: float | None = None,
    fmax: float = 0.01,
    max_opt_steps: int = 500,
) -> dict:
    """E_int = E(N+1) - (N+1)/N E(N) (eV) of an fcc self-interstitial at ``site`` (octahedral or
    tetrahedral), positions relaxed at fixed cell; also the unrelaxed value."""
    if site not in INTERSTITIAL_SITES:
        raise ValueError(f"site {site!r}: use one of {sorted(INTERSTITIAL_SITES)}")
    calc = make_calculator()
    a0 = a0 or lattice_minimum(element, "fcc", calc)[0]
    perfect = crystal(element, "fcc", a0, cubic=True).repeat(tuple(repeat))
    perfect.calc = calc
    n, e_bulk = len(perfect), perfect.get_potential_energy()
    middle = np.array([r // 2 for r in repeat], dtype=float)  # the conventional cell nearest the middle
    defect = perfect.copy()
    defect.append(element)
    defect.positions[-1] = a0 * (middle + np.array(INTERSTITIAL_SITES[site]))
    defect.calc = calc
    e_unrelaxed = defect.get_potential_energy()
    converged = relax_positions(defect, fmax, max_opt_steps) if relax else False
    ref = (n + 1) / n * e_bulk
    return {
        "site": site,
        "E_int": float(defect.get_potential_energy() - ref),
        "E_int_unrelaxed": float(e_unrelaxed - ref),
        "N": n,
        "a0": float(a0),
        "converged": converged,
    }


def stacking_fault(
    element: str,
    make_calculator: MakeCalc,
    n_points: int = 11,
    layers: int = 9,
    max_fraction: float = 1.0,
    a0: float | None = None,
    size=(1, 1),
    relax_normal: bool = True,
    fmax: float = 0.01,
    max_opt_steps: int = 500,
) -> dict:
    """GSFE along <112>{111} (mJ/m^2) vs fraction of b_p = a/sqrt(6); one fault per tilted cell."""
    if layers % 3:
        raise ValueError("layers must be a multiple of 3 (ABC stacking)")
    calc = make_calculator()
    a0 = a0 or lattice_minimum(element, "fcc", calc)[0]
    base, upper, bp = gsfe_cell(element, a0, layers, size)
    area = float(np.linalg.norm(np.cross(base.cell[0], base.cell[1])))
    cache: dict[float, float] = {}

    def relaxed(atoms: Atoms, sz: float = 1.0) -> float:  # z-only relaxation, cell height scaled by sz
        atoms = atoms.copy()
        cell = atoms.cell[:].copy()
        cell[2, 2] *= sz
        atoms.set_cell(cell, scale_atoms=True)  # keeps x, y (c is tilted only in-plane)
        atoms.set_constraint(FixCartesian(range(len(atoms)), mask=(True, True, False)))
        atoms.calc = calc
        relax_positions(atoms, fmax, max_opt_steps)
        return float(atoms.get_potential_energy())

    def energy(f: float) -> float:
        f = round(float(f), 12)
        if f not in cache:
            atoms = base.copy()
            atoms.positions[upper] += f * bp
            cell = atoms.cell[:].copy()
            cell[2] += f * bp
            atoms.set_cell(cell, scale_atoms=False)
            if relax_normal:
                cache[f] = float(
                    minimize_scalar(
                        lambda sz: relaxed(atoms, sz), bounds=(0.9, 1.1), method="bounded", options={"xatol": 1e-6}
                    ).fun
                )
            else:
                cache[f] = relaxed(atoms)
        return cache[f]

    fr = np.linspace(0.0, max_fraction, n_points)
    gamma = np.array([(energy(f) - energy(0.0)) / area * MJ_PER_M2 for f in fr])
    isf = (energy(1.0) - energy(0.0)) / area * MJ_PER_M2
    f_us, usf = _unstable_fault(fr, gamma)
    return {
        "fractions": fr.tolist(),
        "displacement": (fr * np.linalg.norm(bp)).tolist(),
        "gamma": gamma.tolist(),
        "gamma_usf": usf,
        "usf_fraction": f_us,
        "gamma_isf": float(isf),
        "b_p": float(np.linalg.norm(bp)),
        "area": area,
        "a0": float(a0),
        "layers": layers,
    }


def gsfe_cell(element: str, a0: float, layers: int, size) -> tuple[Atoms, np.ndarray, np.ndarray]:
    """The periodic (111) stack of ``layers`` fcc layers (lattice constant ``a0``, Angstrom) sorted by
    height, the mask of its upper half and the A->B stacking shift b_p (in-plane, |b_p| = a/sqrt(6))."""
    base = fcc111(element, size=(size[0], size[1], layers), a=a0, periodic=True)
    base = base[np.argsort(base.positions[:, 2], kind="stable")]
    d111 = a0 / math.sqrt(3)
    layer = np.rint((base.positions[:, 2] - base.positions[0, 2]) / d111).astype(int)
    upper = layer >= layers // 2
    p1, p2 = base.cell[0] / size[0], base.cell[1] / size[1]
    d = base.positions[np.argmax(layer == 1)] - base.positions[0]
    cands = [d + i * p1 + j * p2 for i in range(-2, 3) for j in range(-2, 3)]
    bp = min(cands, key=lambda v: np.hypot(v[0], v[1]))
    bp[2] = 0.0  # the A->B stacking shift, |bp| = a/sqrt(6)
    return base, upper, bp


def _unstable_fault(fr: np.ndarray, gamma: np.ndarray) -> tuple[float, float]:
    """(fraction, GSFE in mJ/m^2) of the unstable fault: the maximum of ``gamma`` for fractions up to 1,
    refined by a parabola through it and its neighbours."""
    inside = np.flatnonzero(fr <= 1.0 + 1e-12)
    i = int(inside[np.argmax(gamma[inside])])
    f_us, usf = float(fr[i]), float(gamma[i])
    if 0 < i < len(fr) - 1:  # parabola through the maximum and its neighbours
        c = np.polyfit(fr[i - 1 : i + 2], gamma[i - 1 : i + 2], 2)
        if c[0] < 0:
            f_us = float(-c[1] / (2 * c[0]))
            usf = float(np.polyval(c, f_us))
    return f_us, usf
