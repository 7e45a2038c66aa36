"""Autotest of a finished potential against the reference calculator (as ANI-Al and DP-GEN judge theirs; docs/methods.md).

Every property function takes an element symbol and a zero-argument ``make_calculator``
(any ASE calculator: the labeller, e.g. ``EMT``, or the NNP; called once per function) and
returns a JSON-able dict of floats. Units: Angstrom, eV, GPa, mJ/m^2.

Conventions
- Equilibrium: a0, e0 by bounded Brent minimisation of E(a) per atom (exact minimum of the
  calculator's curve, no fit model); hcp c/a by an outer bounded Brent over ``HCP_CA_BOUNDS``
  (``relax_ca=False``: ideal sqrt(8/3)). Energy-only, so any calculator works. Structure
  energies and dE = e0(lattice) - e0(fcc) use these minima.
- EOS: a = a0 (1 + strain) around that minimum, energies per atom vs volume per atom,
  ``ase.eos.EquationOfState(eos="birchmurnaghan")``; ``fit_rms`` (meV/atom) flags curves the
  fit cannot describe (EMT Al over +-4 %: the fitted a0 is 2e-3 A off the true minimum).
- Elastic: cubic conventional cell at the equilibrium a0; strains +-delta; C11, C12 from
  eps_xx, C44 from engineering shear gamma_yz = delta; atoms relaxed at fixed cell (BFGS)
  in every strained cell. Stress method: central differences of the ASE stress (tensile
  positive). Fallback when the calculator has no stress (NotImplementedError): 5-point
  second derivatives of E/V0 at 0, +-delta, +-2delta for eps_xx (C11), eps_xx = eps_yy
  (2(C11 + C12)) and gamma_yz (C44).
- Vacancy: E_f = E(N-1) - (N-1)/N E(N), cubic cell repeated, positions relaxed, cell fixed.
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
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
from ase import Atoms
from ase.build import bulk, fcc111
from ase.constraints import FixCartesian
from ase.data import atomic_numbers, covalent_radii, reference_states
from ase.eos import EquationOfState
from ase.optimize import BFGS
from ase.units import GPa, _e
from pydantic import Field
from scipy.optimize import minimize_scalar

from al_flows.settings import Settings

MakeCalc = Callable[[], object]
Lattice = Literal["fcc", "hcp", "bcc", "sc", "diamond"]
HCP_CA_BOUNDS = (1.45, 1.95)
DEFAULT_STRAINS = tuple(np.linspace(-0.04, 0.04, 9))  # linear lattice strains of the EOS grid
MJ_PER_M2 = _e * 1e20 * 1e3  # eV/Angstrom^2 -> mJ/m^2
_NN = {"fcc": 1 / math.sqrt(2), "bcc": math.sqrt(3) / 2, "sc": 1.0, "diamond": math.sqrt(3) / 4, "hcp": 1.0}
_ATOMS_PER_CUBE = {"fcc": 4, "bcc": 2, "sc": 1, "diamond": 8}
DEFAULT_TOLERANCES = {  # absolute, in the row's unit; indicative DFT-vs-NNP accuracies
    "a0": 0.02,
    "v0": 0.3,
    "e0": 0.01,
    "B": 10.0,
    "dE": 10.0,
    "C11": 15.0,
    "C12": 15.0,
    "C44": 15.0,
    "E_vac": 0.1,
    "gamma_usf": 20.0,
    "gamma_isf": 20.0,
}


class AutotestSettings(Settings):
    """Knobs of the autotest (Angstrom, eV/Angstrom; tolerances in each row's unit)."""

    lattice: Literal["fcc", "bcc", "sc", "diamond"] = Field(
        "fcc", description="ground-state lattice for EOS/elastic/vacancy"
    )
    lattices: list[Lattice] = Field(["fcc", "hcp", "bcc", "sc", "diamond"], description="structures compared with fcc")
    eos_max_strain: float = Field(0.04, gt=0, lt=0.3, description="max linear strain of the EOS grid")
    eos_points: int = Field(9, ge=5, description="points of the EOS grid")
    relax_hcp_ca: bool = Field(True, description="relax hcp c/a (else ideal sqrt(8/3))")
    elastic_delta: float = Field(0.005, gt=0, lt=0.05, description="finite strain for C_ij")
    vacancy_repeat: tuple[int, int, int] = Field((3, 3, 3), description="repeat of the cubic cell")
    vacancy_relax: bool = True
    gsfe_points: int = Field(11, ge=3, description="points of the GSFE path 0..gsfe_max_fraction")
    gsfe_layers: int = Field(9, ge=3, multiple_of=3, description="(111) layers in the periodic cell")
    gsfe_max_fraction: float = Field(1.0, ge=1.0, description="end of the path in units of b_p")
    gsfe_relax_normal: bool = Field(True, description="relax the GSFE cell height (else fixed cell)")
    fmax: float = Field(0.01, gt=0, description="eV/Angstrom, relaxation tolerance")
    max_opt_steps: int = Field(500, gt=0)
    tolerances: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_TOLERANCES))

    def strains(self) -> np.ndarray:
        return np.linspace(-self.eos_max_strain, self.eos_max_strain, self.eos_points)


def _relax(atoms: Atoms, fmax: float, steps: int) -> bool:
    """BFGS on the positions at fixed cell; returns convergence."""
    return bool(BFGS(atoms, logfile=None).run(fmax=fmax, steps=steps))


def _crystal(element: str, lattice: str, a: float, c_over_a: float | None = None, cubic: bool = False) -> Atoms:
    if lattice == "hcp":
        return bulk(element, "hcp", a=a, c=a * (c_over_a or math.sqrt(8 / 3)), orthorhombic=cubic)
    return bulk(element, lattice, a=a, cubic=cubic)


def _a_from_v(v: float, lattice: str, c_over_a: float | None = None) -> float:
    """Lattice constant (Angstrom) of volume per atom ``v`` (Angstrom^3)."""
    if lattice == "hcp":
        return (4 * v / (math.sqrt(3) * (c_over_a or math.sqrt(8 / 3)))) ** (1 / 3)
    return (v * _ATOMS_PER_CUBE[lattice]) ** (1 / 3)


def guess_lattice_constant(element: str, lattice: str) -> float:
    """Starting a (Angstrom): nearest-neighbour distance of ASE's reference state (else 2 covalent radii)."""
    z = atomic_numbers[element]
    ref = reference_states[z] or {}
    d = ref["a"] * _NN[ref["symmetry"]] if ref.get("symmetry") in _NN and "a" in ref else 2 * covalent_radii[z]
    return d / _NN[lattice]


def _min_a(element: str, lattice: str, calc, c_over_a: float | None = None, a: float | None = None):
    """(a, e) at the minimum of E(a) per atom by bounded Brent (Angstrom, eV/atom), exact to ~1e-6 a."""

    def energy(x):
        atoms = _crystal(element, lattice, x, c_over_a)
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
                last["a"], e = _min_a(element, "hcp", calc, float(x), last["a"])
                return e

            q = float(minimize_scalar(e_of_q, bounds=HCP_CA_BOUNDS, method="bounded", options={"xatol": 1e-5}).x)
            a_start = last["a"]
    a, e = _min_a(element, lattice, calc, q, a_start)
    atoms = _crystal(element, lattice, a, q)
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
        a0 = _min_a(element, lattice, calc, c_over_a)[0]
    vols, ens = [], []
    for s in np.asarray(strains, dtype=float):
        atoms = _crystal(element, lattice, a0 * (1 + s), c_over_a)
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
        "a0": _a_from_v(v0, lattice, c_over_a),
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
        r = relax_lattice(element, None, lat, relax_ca, calc=calc)
        r["B"] = equation_of_state(element, None, lat, r["a0"], strains, r.get("c_over_a"), calc=calc)["B"]
        res[lat] = r
    return {"structures": res, "dE": {lat: res[lat]["e0"] - res["fcc"]["e0"] for lat in res}}


def _strained(atoms0: Atoms, eps: np.ndarray, calc, fmax: float, steps: int, stress: bool):
    atoms = atoms0.copy()
    atoms.set_cell(atoms0.cell[:] @ (np.eye(3) + eps), scale_atoms=True)
    atoms.calc = calc
    if len(atoms) > 1:
        _relax(atoms, fmax, steps)
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
    a0 = a0 or _min_a(element, lattice, calc)[0]
    atoms0 = _crystal(element, lattice, a0, cubic=True)
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

    run = lambda eps: _strained(atoms0, eps, calc, fmax, max_opt_steps, use_stress)
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
    a0 = a0 or _min_a(element, lattice, calc)[0]
    perfect = _crystal(element, lattice, a0, cubic=True).repeat(tuple(repeat))
    perfect.calc = calc
    n, e_bulk = len(perfect), perfect.get_potential_energy()
    defect = perfect.copy()
    del defect[0]
    defect.calc = calc
    e_unrelaxed = defect.get_potential_energy()
    converged = _relax(defect, fmax, max_opt_steps) if relax else False
    ref = (n - 1) / n * e_bulk
    return {
        "E_vac": float(defect.get_potential_energy() - ref),
        "E_vac_unrelaxed": float(e_unrelaxed - ref),
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
    a0 = a0 or _min_a(element, "fcc", calc)[0]
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
    area = float(np.linalg.norm(np.cross(base.cell[0], base.cell[1])))
    cache: dict[float, float] = {}

    def relaxed(atoms: Atoms, sz: float = 1.0) -> float:  # z-only relaxation, cell height scaled by sz
        atoms = atoms.copy()
        cell = atoms.cell[:].copy()
        cell[2, 2] *= sz
        atoms.set_cell(cell, scale_atoms=True)  # keeps x, y (c is tilted only in-plane)
        atoms.set_constraint(FixCartesian(range(len(atoms)), mask=(True, True, False)))
        atoms.calc = calc
        _relax(atoms, fmax, max_opt_steps)
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
    inside = np.flatnonzero(fr <= 1.0 + 1e-12)
    i = int(inside[np.argmax(gamma[inside])])
    f_us, usf = float(fr[i]), float(gamma[i])
    if 0 < i < len(fr) - 1:  # parabola through the maximum and its neighbours
        c = np.polyfit(fr[i - 1 : i + 2], gamma[i - 1 : i + 2], 2)
        if c[0] < 0:
            f_us = float(-c[1] / (2 * c[0]))
            usf = float(np.polyval(c, f_us))
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


def compute_properties(element: str, make_calculator: MakeCalc, settings: AutotestSettings) -> dict:
    """All autotest properties of one calculator."""
    s = settings
    se = structure_energies(element, make_calculator, [s.lattice, *s.lattices], s.strains(), s.relax_hcp_ca)
    a0 = se["structures"][s.lattice]["a0"]
    eos = equation_of_state(element, make_calculator, s.lattice, a0, s.strains())
    kw = {"a0": a0, "fmax": s.fmax, "max_opt_steps": s.max_opt_steps}
    out = {
        "eos": eos,
        "structures": se,
        "elastic": elastic_constants(element, make_calculator, s.lattice, s.elastic_delta, **kw),
        "vacancy": vacancy_formation(element, make_calculator, s.vacancy_repeat, s.vacancy_relax, s.lattice, **kw),
    }
    if s.lattice == "fcc":
        out["stacking_fault"] = stacking_fault(
            element,
            make_calculator,
            s.gsfe_points,
            s.gsfe_layers,
            s.gsfe_max_fraction,
            relax_normal=s.gsfe_relax_normal,
            **kw,
        )
    return out


def _values(p: dict, lattice: str) -> list[tuple[str, str, float]]:
    """(name, unit, value) rows: a0, v0, e0 at the E(a) minimum, B from the EOS fit."""
    eq = p["structures"]["structures"][lattice]
    rows = [
        ("a0", "Angstrom", eq["a0"]),
        ("v0", "Angstrom^3/atom", eq["v0"]),
        ("e0", "eV/atom", eq["e0"]),
        ("B", "GPa", p["eos"]["B"]),
    ]
    for lat, de in p["structures"]["dE"].items():
        if lat != lattice:
            rows.append((f"dE[{lat}-{lattice}]", "meV/atom", 1000 * (de - p["structures"]["dE"][lattice])))
            rows.append((f"a0[{lat}]", "Angstrom", p["structures"]["structures"][lat]["a0"]))
    rows += [(c, "GPa", p["elastic"][c]) for c in ("C11", "C12", "C44")]
    rows.append(("E_vac", "eV", p["vacancy"]["E_vac"]))
    if "stacking_fault" in p:
        rows += [(g, "mJ/m^2", p["stacking_fault"][g]) for g in ("gamma_usf", "gamma_isf")]
    return rows


def autotest(
    element: str, make_reference: MakeCalc, make_model: MakeCalc, settings: AutotestSettings | None = None
) -> dict:
    """Properties of both calculators and rows {property, unit, reference, model, abs_error, rel_error,
    tolerance, passed}; rel_error is None where the reference is 0; ``passed`` over all rows."""
    settings = settings or AutotestSettings()
    ref = compute_properties(element, make_reference, settings)
    mod = compute_properties(element, make_model, settings)
    rows = []
    for (name, unit, r), (_, _, m) in zip(_values(ref, settings.lattice), _values(mod, settings.lattice)):
        err = abs(m - r)
        tol = settings.tolerances.get(name.split("[")[0])
        rows.append(
            {
                "property": name,
                "unit": unit,
                "reference": float(r),
                "model": float(m),
                "abs_error": float(err),
                "rel_error": float(err / abs(r)) if r != 0 else None,
                "tolerance": tol,
                "passed": bool(tol is None or err <= tol),
            }
        )
    return {
        "element": element,
        "settings": settings.model_dump(mode="json"),
        "reference": ref,
        "model": mod,
        "rows": rows,
        "passed": all(r["passed"] for r in rows),
    }


def autotest_table_markdown(rows: list[dict]) -> str:
    """Markdown table of autotest rows."""
    fmt = lambda x: "-" if x is None else f"{x:.4g}"
    lines = [
        "| property | unit | reference | model | abs error | rel error | tolerance | pass |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['property']} | {r['unit']} | {fmt(r['reference'])} | {fmt(r['model'])} | "
            f"{fmt(r['abs_error'])} | {fmt(r['rel_error'])} | {fmt(r.get('tolerance'))} | "
            f"{'yes' if r.get('passed', True) else 'NO'} |"
        )
    return "\n".join(lines)
