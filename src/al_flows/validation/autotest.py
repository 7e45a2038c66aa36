"""Autotest of a finished potential against the reference calculator (as ANI-Al and DP-GEN judge theirs;
docs/methods.md).

Every property function takes an element symbol and a zero-argument ``make_calculator``
(any ASE calculator: the labeller, e.g. ``EMT``, or the NNP; called once per function) and
returns a JSON-able dict of floats. Units: Angstrom, eV, GPa, mJ/m^2 (stacking faults), J/m^2
(surfaces).

Conventions
- Equilibrium, EOS, structure energies: :mod:`al_flows.validation.lattices`.
- Elastic constants: :mod:`al_flows.validation.elastic`.
- Vacancy, interstitials and generalised stacking fault: :mod:`al_flows.validation.defects`.
- Surface energies: :mod:`al_flows.validation.surfaces`.
- How a row is judged (tolerances, sign): :mod:`al_flows.validation.tolerances`.
Interstitials, stacking fault and surfaces are computed for an fcc ground state only (the rows
DP-GEN's autotest reports for fcc Al; Zhang et al.).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from al_flows.settings import Settings
from al_flows.validation.defects import interstitial_formation, stacking_fault, vacancy_formation
from al_flows.validation.elastic import elastic_constants
from al_flows.validation.lattices import Lattice, MakeCalc, equation_of_state, structure_energies
from al_flows.validation.surfaces import surface_energy
from al_flows.validation.tolerances import (
    DEFAULT_RELATIVE_TOLERANCES,
    DEFAULT_SIGN_ZERO,
    DEFAULT_TOLERANCES,
    check_limits,
    judge_row,
    limit_of,
    limits_copy,
)

__all__ = [
    "DEFAULT_TOLERANCES",
    "DEFAULT_RELATIVE_TOLERANCES",
    "DEFAULT_SIGN_ZERO",
    "AutotestSettings",
    "compute_properties",
    "autotest",
    "autotest_rows",
    "autotest_table_markdown",
]


class AutotestSettings(Settings):
    """Knobs of the autotest (Angstrom, eV/Angstrom; tolerances in each row's unit)."""

    lattice: Literal["fcc", "bcc", "sc", "diamond"] = Field(
        default="fcc", description="ground-state lattice for EOS/elastic/vacancy"
    )
    lattices: list[Lattice] = Field(
        default=["fcc", "hcp", "bcc", "sc", "diamond"], description="structures compared with fcc"
    )
    eos_max_strain: float = Field(default=0.04, gt=0, lt=0.3, description="max linear strain of the EOS grid")
    eos_points: int = Field(default=9, ge=5, description="points of the EOS grid")
    relax_hcp_ca: bool = Field(default=True, description="relax hcp c/a (else ideal sqrt(8/3))")
    elastic_delta: float = Field(default=0.005, gt=0, lt=0.05, description="finite strain for C_ij")
    vacancy_repeat: tuple[int, int, int] = Field(default=(3, 3, 3), description="repeat of the cubic cell")
    vacancy_relax: bool = True
    interstitial_sites: list[Literal["octahedral", "tetrahedral"]] = Field(
        default=["octahedral", "tetrahedral"], description="fcc interstitial sites ([]: none)"
    )
    interstitial_repeat: tuple[int, int, int] = Field(
        default=(3, 3, 3), description="repeat of the cubic cell holding one interstitial"
    )
    interstitial_relax: bool = Field(default=True, description="relax positions (cell fixed); else unrelaxed")
    surfaces: list[Literal["100", "110", "111"]] = Field(
        default=["100", "110", "111"], description="fcc surfaces (Miller indices; []: none)"
    )
    surface_layers: int = Field(default=9, ge=3, description="atomic layers of the slab")
    surface_size: tuple[int, int] = Field(default=(2, 2), description="in-plane repeats of the surface cell")
    surface_vacuum: float = Field(default=12.0, gt=0, description="Angstrom, gap between the slab and its image")
    surface_relax: bool = Field(default=True, description="relax positions (cell fixed); else unrelaxed")
    gsfe_points: int = Field(default=11, ge=3, description="points of the GSFE path 0..gsfe_max_fraction")
    gsfe_layers: int = Field(default=9, ge=3, multiple_of=3, description="(111) layers in the periodic cell")
    gsfe_max_fraction: float = Field(default=1.0, ge=1.0, description="end of the path in units of b_p")
    gsfe_relax_normal: bool = Field(default=True, description="relax the GSFE cell height (else fixed cell)")
    fmax: float = Field(default=0.01, gt=0, description="eV/Angstrom, relaxation tolerance")
    max_opt_steps: int = Field(default=500, gt=0)
    tolerances: dict[str, float | None] = Field(
        default_factory=lambda: limits_copy(DEFAULT_TOLERANCES),
        description="absolute tolerance per row, in the row's unit; a row left out keeps its default, null: none",
    )
    relative_tolerances: dict[str, float | None] = Field(
        default_factory=lambda: limits_copy(DEFAULT_RELATIVE_TOLERANCES),
        description="tolerance relative to |reference| per row (0.1 = 10 %); the tighter of the two is used; "
        "a row left out keeps its default, null: none",
    )
    sign_zero: dict[str, float | None] = Field(
        default_factory=lambda: limits_copy(DEFAULT_SIGN_ZERO),
        description="rows whose model must have the reference's sign, each with the |reference| (row's unit) "
        "up to which the reference counts as zero (sign not checked); a row left out keeps its default, null: none",
    )

    @field_validator("tolerances", "relative_tolerances", "sign_zero")
    @classmethod
    def _known_rows(cls, v: dict[str, float | None], info: ValidationInfo) -> dict[str, float | None]:
        """Known rows and positive values; the relative tolerances and sign bands given are laid over
        their defaults (the absolute ones are looked up so, to keep earlier campaigns' settings as they were)."""
        check_limits(v, DEFAULT_TOLERANCES)
        defaults = {"relative_tolerances": DEFAULT_RELATIVE_TOLERANCES, "sign_zero": DEFAULT_SIGN_ZERO}
        return {**defaults.get(str(info.field_name), {}), **v}

    def strains(self) -> np.ndarray:
        """The EOS strains (fractions of the lattice constant)."""
        return np.linspace(-self.eos_max_strain, self.eos_max_strain, self.eos_points)

    def limits(self, name: str) -> tuple[float | None, float | None, float | None]:
        """(absolute tolerance, relative tolerance, sign zero band) of row ``name`` (``a0[hcp]`` takes
        ``a0``'s): the given entry, else the default (:mod:`al_flows.validation.tolerances`)."""
        return (
            limit_of(name, self.tolerances, DEFAULT_TOLERANCES),
            limit_of(name, self.relative_tolerances, DEFAULT_RELATIVE_TOLERANCES),
            limit_of(name, self.sign_zero, DEFAULT_SIGN_ZERO),
        )


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
    if s.lattice != "fcc":
        return out
    out["interstitials"] = {
        site: interstitial_formation(element, make_calculator, site, s.interstitial_repeat, s.interstitial_relax, **kw)
        for site in s.interstitial_sites
    }
    out["surfaces"] = {
        m: surface_energy(
            element, make_calculator, m, s.surface_layers, s.surface_vacuum, s.surface_size, s.surface_relax, **kw
        )
        for m in s.surfaces
    }
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
    """(name, unit, value) rows: a0, v0, e0 at the E(a) minimum, B from the EOS fit, structure energies,
    C_ij, vacancy, interstitials (E_int[oct], E_int[tet]), stacking fault, surfaces (E_surf[hkl])."""
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
    rows += [(f"E_int[{site[:3]}]", "eV", r["E_int"]) for site, r in p.get("interstitials", {}).items()]
    if "stacking_fault" in p:
        rows += [(g, "mJ/m^2", p["stacking_fault"][g]) for g in ("gamma_usf", "gamma_isf")]
    rows += [(f"E_surf[{m}]", "J/m^2", r["E_surf"]) for m, r in p.get("surfaces", {}).items()]
    return rows


def autotest_rows(reference: dict, model: dict, settings: AutotestSettings) -> list[dict]:
    """Rows {property, unit, reference, model} of two calculators' properties (:func:`compute_properties`),
    each judged by :func:`al_flows.validation.tolerances.judge_row` with the row's limits."""
    rows = []
    for (name, unit, r), (_, _, m) in zip(_values(reference, settings.lattice), _values(model, settings.lattice)):
        verdict = judge_row(float(r), float(m), *settings.limits(name))
        rows.append({"property": name, "unit": unit, "reference": float(r), "model": float(m), **verdict})
    return rows


def autotest(
    element: str, make_reference: MakeCalc, make_model: MakeCalc, settings: AutotestSettings | None = None
) -> dict:
    """Properties of both calculators and their rows (:func:`autotest_rows`: abs_error, rel_error,
    tolerance, tolerance_kind, sign_ok, failed_by, passed); ``passed`` over all rows."""
    settings = settings or AutotestSettings()
    ref = compute_properties(element, make_reference, settings)
    mod = compute_properties(element, make_model, settings)
    rows = autotest_rows(ref, mod, settings)
    return {
        "element": element,
        "settings": settings.model_dump(mode="json"),
        "reference": ref,
        "model": mod,
        "rows": rows,
        "passed": all(r["passed"] for r in rows),
    }


def autotest_table_markdown(rows: list[dict]) -> str:
    """Markdown table of autotest rows: values, errors, the tolerance used and which bound gave it
    (abs, rel), the sign check (ok, WRONG, - where not checked) and the verdict with what failed."""

    def fmt(x):
        return "-" if x is None else f"{x:.4g}"

    lines = [
        "| property | unit | reference | model | abs error | rel error | tolerance | bound | sign | pass |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sign = {True: "ok", False: "WRONG", None: "-"}[r.get("sign_ok")]
        verdict = "yes" if r.get("passed", True) else f"NO ({', '.join(r.get('failed_by') or ['tolerance'])})"
        lines.append(
            f"| {r['property']} | {r['unit']} | {fmt(r['reference'])} | {fmt(r['model'])} | "
            f"{fmt(r['abs_error'])} | {fmt(r['rel_error'])} | {fmt(r.get('tolerance'))} | "
            f"{r.get('tolerance_kind') or '-'} | {sign} | {verdict} |"
        )
    return "\n".join(lines)
