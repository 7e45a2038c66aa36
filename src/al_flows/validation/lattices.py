"""Crystal lattices of one element and their equilibrium: lattice constants, the E(a) minimum, the
equation of state and the structure energies (for :mod:`al_flows.validation.autotest`).

Conventions
- Equilibrium: a0, e0 by bounded Brent minimisation of E(a) per atom (exact minimum of the
  calculator's curve, no fit model); hcp c/a by an outer bounded Brent over ``HCP_CA_BOUNDS``
  (``relax_ca=False``: ideal sqrt(8/3)). Energy-only, so any calculator works. Structure
  energies and dE = e0(lattice) - e0(fcc) use these minima.
- EOS: a = a0 (1 + strain) around that minimum, energies per atom vs volume per atom,
  ``ase.eos.EquationOfState(eos="birchmurnaghan")``; ``fit_rms`` (meV/atom) flags curves the
  fit cannot describe (EMT Al over +-4 %: the fitted a0 is 2e-3 A off the true minimum).

Units: Angstrom, eV, GPa.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, cast

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.data import atomic_numbers, covalent_radii, reference_states
from ase.eos import EquationOfState
from ase.optimize import BFGS
from ase.units import GPa
from scipy.optimize import minimize_scalar

__all__ = [
    "MakeCalc",
    "Lattice",
    "HCP_CA_BOUNDS",
    "DEFAULT_STRAINS",
    "relax_positions",
    "crystal",
    "a_from_volume",
    "guess_lattice_constant",
    "lattice_minimum",
    "relax_lattice",
    "equation_of_state",
    "structure_energies",
]

MakeCalc = Callable[[], object]
Lattice = Literal["fcc", "hcp", "bcc", "sc", "diamond"]
HCP_CA_BOUNDS = (1.45, 1.95)
DEFAULT_STRAINS = tuple(np.linspace(-0.04, 0.04, 9))  # linear lattice strains of the EOS grid
_NN = {"fcc": 1 / math.sqrt(2), "bcc": math.sqrt(3) / 2, "sc": 1.0, "diamond": math.sqrt(3) / 4, "hcp": 1.0}
_ATOMS_PER_CUBE = {"fcc": 4, "bcc": 2, "sc": 1, "diamond": 8}


def relax_positions(atoms: Atoms, fmax: float, steps: int) -> bool:
    """BFGS on the positions at fixed cell; returns convergence."""
    return bool(BFGS(atoms, logfile=None).run(fmax=fmax, steps=steps))


def crystal(element: str, lattice: str, a: float, c_over_a: float | None = None, cubic: bool = False) -> Atoms:
    """An ``element`` crystal of ``lattice`` (fcc, hcp, bcc, sc, diamond) with lattice constant ``a`` (Angstrom)."""
    if lattice == "hcp":
        return bulk(element, "hcp", a=a, c=a * (c_over_a or math.sqrt(8 / 3)), orthorhombic=cubic)
    return bulk(element, lattice, a=a, cubic=cubic)


def a_from_volume(v: float, lattice: str, c_over_a: float | None = None) -> float:
    """Lattice constant (Angstrom) of volume per atom ``v`` (Angstrom^3)."""
    if lattice == "hcp":
        return (4 * v / (math.sqrt(3) * (c_over_a or math.sqrt(8 / 3)))) ** (1 / 3)
    return (v * _ATOMS_PER_CUBE[lattice]) ** (1 / 3)


def guess_lattice_constant(element: str, lattice: str) -> float:
    """Starting a (Angstrom): nearest-neighbour distance of ASE's reference state (else 2 covalent radii)."""
    z = atomic_numbers[element]
    ref = cast(dict[str, Any], reference_states[z] or {})  # ASE types the reference states as plain objects
    d = ref["a"] * _NN[ref["symmetry"]] if ref.get("symmetry") in _NN and "a" in ref else 2 * covalent_radii[z]
    return d / _NN[lattice]


def lattice_minimum(element: str, lattice: str, calc, c_over_a: float | None = None, a: float | None = None):
    """(a, e) at the minimum of E(a) per atom by bounded Brent (Angstrom, eV/atom), exact to ~1e-6 a."""

    def energy(x):
        atoms = crystal(element, lattice, x, c_over_a)
        atoms.calc = calc
        return atoms.get_potential_energy() / len(atoms)

    a = float(a or guess_lattice_constant(element, lattice))
    for _ in range(10):  # re-centre while the minimum sits on a bound
        lo, hi = 0.85 * a, 1.15 * a
        r = minimize_scalar(energy, bounds=(lo, hi), method="bounded", options={"xatol": 1e-7 * a})
        a = float(r.x)
        if lo + 1e-4 * a < a < hi - 1e-4 * a:
            return a, float(r.fun)
    raise RuntimeError(f"{element} {lattice}: no minimum of E(a)")


def relax_lattice(
    element: str, make_calculator: MakeCalc, lattice: str = "fcc", relax_ca: bool = True, calc=None
) -> dict:
    """Equilibrium a0 (A), e0 (eV/atom), v0 (A^3/atom) by direct minimisation of E(a) (no fit model);
    hcp: c_over_a relaxed by an outer bounded Brent over ``HCP_CA_BOUNDS`` (else ideal)."""
    calc = calc if calc is not None else make_calculator()
    q = a_start = None
    if lattice == "hcp":
        q, last = math.sqrt(8 / 3), {"a": None}
        if relax_ca:

            def e_of_q(x):
                last["a"], e = lattice_minimum(element, "hcp", calc, float(x), last["a"])
                return e

            q = float(minimize_scalar(e_of_q, bounds=HCP_CA_BOUNDS, method="bounded", options={"xatol": 1e-5}).x)
            a_start = last["a"]
    a, e = lattice_minimum(element, lattice, calc, q, a_start)
    atoms = crystal(element, lattice, a, q)
    out = {"a0": a, "e0": e, "v0": atoms.get_volume() / len(atoms)}
    return out | ({"c_over_a": q} if q else {})


def equation_of_state(
    element: str,
    make_calculator: MakeCalc,
    lattice: str = "fcc",
    a0: float | None = None,
    strains=DEFAULT_STRAINS,
    c_over_a: float | None = None,
    calc=None,
) -> dict:
    """Birch-Murnaghan fit of E/atom vs V/atom on a = a0 (1 + strain): v0 (A^3/atom), e0 (eV/atom), B (GPa),
    a0 (A), fit_rms (meV/atom) and the curve; grid centred on the E(a) minimum when a0 is None."""
    calc = calc if calc is not None else make_calculator()
    if a0 is None:
        a0 = lattice_minimum(element, lattice, calc, c_over_a)[0]
    vols, ens = [], []
    for s in np.asarray(strains, dtype=float):
        atoms = crystal(element, lattice, a0 * (1 + s), c_over_a)
        atoms.calc = calc
        vols.append(atoms.get_volume() / len(atoms))
        ens.append(atoms.get_potential_energy() / len(atoms))
    eos = EquationOfState(vols, ens, eos="birchmurnaghan")
    v0, e0, b = (float(x) for x in eos.fit(warn=False))
    rms = float(np.sqrt(np.mean((eos.func(np.array(vols), *eos.eos_parameters) - np.array(ens)) ** 2)))
    out = {
        "lattice": lattice,
        "v0": v0,
        "e0": e0,
        "B": b / GPa,
        "a0": a_from_volume(v0, lattice, c_over_a),
        "fit_rms": 1000 * rms,
        "volumes": [float(v) for v in vols],
        "energies": [float(e) for e in ens],
    }
    return out | ({"c_over_a": float(c_over_a or math.sqrt(8 / 3))} if lattice == "hcp" else {})


def structure_energies(
    element: str,
    make_calculator: MakeCalc,
    lattices=("fcc", "hcp", "bcc", "sc", "diamond"),
    strains=DEFAULT_STRAINS,
    relax_ca: bool = True,
) -> dict:
    """Per lattice {a0 A, e0 eV/atom, v0 A^3/atom[, c_over_a]} from ``relax_lattice`` plus the EOS B (GPa)
    around it, and dE = e0 - e0(fcc) (eV/atom)."""
    calc = make_calculator()
    res = {}
    for lat in dict.fromkeys(("fcc", *lattices)):
        r = relax_lattice(element, make_calculator, lat, relax_ca, calc=calc)
        r["B"] = equation_of_state(element, make_calculator, lat, r["a0"], strains, r.get("c_over_a"), calc=calc)["B"]
        res[lat] = r
    return {"structures": res, "dE": {lat: res[lat]["e0"] - res["fcc"]["e0"] for lat in res}}
