"""The autotest properties a campaign may converge on (``convergence.properties``): their names,
units and default tolerances (those of the autotest's rows, :mod:`al_flows.validation.autotest`),
computing only the listed ones with the autotest's own functions, and judging an ensemble's values
against the reference.

Names are the autotest's row names for the ground-state ``lattice`` L of the settings:
``a0``, ``v0``, ``e0`` (the E(a) minimum), ``B`` (EOS fit), ``dE[X-L]`` and ``a0[X]`` for every
other lattice X of ``lattices`` (and fcc), ``C11``, ``C12``, ``C44``, ``E_vac``; for an fcc ground
state also ``E_int[oct]``, ``E_int[tet]`` (the listed ``interstitial_sites``), ``gamma_usf``,
``gamma_isf`` and ``E_surf[hkl]`` (the listed ``surfaces``). A value computed here equals the
autotest's row of the same name and settings (same functions, same arguments); a property that
shares a calculation with another (C11, C12, C44; the two stacking faults) is computed once.

Convergence of one property (``judge``): the ensemble's members each give a value; with mean m,
spread s (population standard deviation over the members, ddof 0) and reference r, the property
is within tolerance t when |m - r| <= t and s <= t.

Units: Angstrom, eV, GPa, meV/atom (dE), mJ/m^2 (stacking faults), J/m^2 (surfaces).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from al_flows.settings import Settings
from al_flows.validation.autotest import DEFAULT_TOLERANCES, AutotestSettings
from al_flows.validation.defects import interstitial_formation, stacking_fault, vacancy_formation
from al_flows.validation.elastic import elastic_constants
from al_flows.validation.lattices import MakeCalc, equation_of_state, relax_lattice
from al_flows.validation.surfaces import surface_energy
from al_flows.validation.tolerances import judge_row

__all__ = [
    "PropertyTarget",
    "PropertyConvergence",
    "available_properties",
    "default_tolerance",
    "property_values",
    "property_result",
    "judge",
    "VASP_REFERENCE_PROPERTIES",
    "VASP_REFERENCE_LATTICES",
    "check_vasp_properties",
]

_SITES = {"oct": "octahedral", "tet": "tetrahedral"}


class PropertyTarget(Settings):
    """One property a campaign converges on: an autotest row name, the element it is computed for
    and the tolerance (in the row's unit) that both the ensemble mean's error and its spread must meet."""

    name: str = Field(description="autotest row name: a0, B, C11, dE[hcp-fcc], E_vac, E_surf[111], ...")
    element: str | None = Field(None, description="element (default: the campaign's, when it has one)")
    tolerance: float | None = Field(
        None,
        gt=0,
        description="in the row's unit, absolute; default: the autotest's (absolute or relative, whichever is tighter)",
    )

    @property
    def key(self) -> str:
        """``'<element> <property>'``, the name of the property in documents and reports."""
        return f"{self.element} {self.name}"


class PropertyConvergence(Settings):
    """The properties a campaign converges on, resolved (every target with its element and tolerance),
    the autotest settings that compute them and whether they alone decide (``mode: properties``)."""

    targets: list[PropertyTarget] = Field(min_length=1)
    mode: Literal["all", "properties"] = "all"
    settings: AutotestSettings = Field(default_factory=AutotestSettings)

    @model_validator(mode="after")
    def _resolved(self):
        known = available_properties(self.settings)
        for i, t in enumerate(self.targets):
            if t.element is None:
                raise ValueError(f"convergence.properties[{i}].element: not set; name the element of {t.name!r}")
            if t.name not in known:
                raise ValueError(
                    f"convergence.properties[{i}].name: {t.name!r} is not an autotest property with these autotest "
                    f"settings; use one of {list(known)}"
                )
        keys = [t.key for t in self.targets]
        if len(set(keys)) != len(keys):
            raise ValueError(f"convergence.properties: listed twice: {sorted({k for k in keys if keys.count(k) > 1})}")
        return self

    @property
    def properties_only(self) -> bool:
        """Whether the properties alone decide convergence (``mode: properties``)."""
        return self.mode == "properties"

    def names_by_element(self) -> dict[str, list[str]]:
        """The listed property names per element, in the autotest's order."""
        order = list(available_properties(self.settings))
        out: dict[str, list[str]] = {}
        for t in self.targets:
            out.setdefault(str(t.element), []).append(t.name)
        return {el: sorted(names, key=order.index) for el, names in out.items()}

    def reference_key(self) -> str:
        """12 hex chars naming what the reference computes: the listed (element, name) pairs and the
        autotest settings (tolerances and sign checks left out: they do not change a value)."""
        what = {
            "properties": sorted([str(t.element), t.name] for t in self.targets),
            "settings": self.settings.model_dump(
                mode="json", exclude={"tolerances", "relative_tolerances", "sign_zero"}
            ),
        }
        return hashlib.sha1(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]

    def met(self, results: Sequence[dict] | None) -> bool:
        """Whether every target is within its tolerance in a round's ``results`` (:func:`judge`)."""
        return judge(results, self.targets, self.settings)


def available_properties(settings: AutotestSettings) -> dict[str, str]:
    """Every property name the autotest reports with ``settings``, with its unit, in the autotest's order."""
    s = settings
    out = {"a0": "Angstrom", "v0": "Angstrom^3/atom", "e0": "eV/atom", "B": "GPa"}
    for lat in dict.fromkeys(("fcc", s.lattice, *s.lattices)):
        if lat != s.lattice:
            out[f"dE[{lat}-{s.lattice}]"] = "meV/atom"
            out[f"a0[{lat}]"] = "Angstrom"
    out |= {"C11": "GPa", "C12": "GPa", "C44": "GPa", "E_vac": "eV"}
    if s.lattice == "fcc":
        out |= {f"E_int[{site[:3]}]": "eV" for site in s.interstitial_sites}
        out |= {"gamma_usf": "mJ/m^2", "gamma_isf": "mJ/m^2"}
        out |= {f"E_surf[{m}]": "J/m^2" for m in s.surfaces}
    return out


def default_tolerance(name: str, tolerances: Mapping[str, float | None] | None = None) -> float:
    """The autotest's tolerance of row ``name`` (``tolerances``, e.g. a campaign's
    ``autotest.tolerances``, else (absent or null there) :data:`DEFAULT_TOLERANCES`; ``a0[hcp]`` takes ``a0``'s)."""
    base = name.split("[")[0]
    value = (tolerances or {}).get(base)
    return float(value if value is not None else DEFAULT_TOLERANCES[base])


class _Calculations:
    """The autotest's calculations of one element and calculator, each run at most once."""

    def __init__(self, element: str, make_calculator: MakeCalc, settings: AutotestSettings):
        self.element, self.make, self.s = element, make_calculator, settings
        self.calc = make_calculator()  # shared by the lattice minima, as structure_energies shares one
        self.done: dict[str, dict] = {}

    def once(self, key: str, compute: Callable[[], dict]) -> dict:
        if key not in self.done:
            self.done[key] = compute()
        return self.done[key]

    def minimum(self, lattice: str) -> dict:
        s = self.s
        return self.once(
            f"min {lattice}", lambda: relax_lattice(self.element, self.make, lattice, s.relax_hcp_ca, calc=self.calc)
        )

    def value(self, name: str) -> float:
        """The row ``name`` (one of :func:`available_properties`)."""
        s = self.s
        base, _, arg = name.partition("[")
        arg = arg.rstrip("]")
        if base in ("a0", "v0", "e0"):
            return self.minimum(arg or s.lattice)[base]
        if base == "dE":
            return 1000 * (self.minimum(arg.split("-")[0])["e0"] - self.minimum(s.lattice)["e0"])
        part, key = {
            "B": ("eos", "B"),
            "C11": ("elastic", "C11"),
            "C12": ("elastic", "C12"),
            "C44": ("elastic", "C44"),
            "E_vac": ("vacancy", "E_vac"),
            "E_int": (f"interstitial {arg}", "E_int"),
            "gamma_usf": ("gsfe", "gamma_usf"),
            "gamma_isf": ("gsfe", "gamma_isf"),
            "E_surf": (f"surface {arg}", "E_surf"),
        }[base]
        return self.once(part, lambda: self.compute(part))[key]

    def compute(self, part: str) -> dict:
        """One of the autotest's calculations (``eos``, ``elastic``, ``vacancy``, ``gsfe``,
        ``interstitial <oct|tet>``, ``surface <hkl>``) at the ground state's a0."""
        s, el, make = self.s, self.element, self.make
        kind, _, arg = part.partition(" ")
        kw = {"a0": self.minimum(s.lattice)["a0"], "fmax": s.fmax, "max_opt_steps": s.max_opt_steps}
        if kind == "eos":
            return equation_of_state(el, make, s.lattice, kw["a0"], s.strains())
        if kind == "elastic":
            return elastic_constants(el, make, s.lattice, s.elastic_delta, **kw)
        if kind == "vacancy":
            return vacancy_formation(el, make, s.vacancy_repeat, s.vacancy_relax, s.lattice, **kw)
        if kind == "interstitial":
            return interstitial_formation(el, make, _SITES[arg], s.interstitial_repeat, s.interstitial_relax, **kw)
        if kind == "gsfe":
            return stacking_fault(
                el, make, s.gsfe_points, s.gsfe_layers, s.gsfe_max_fraction, relax_normal=s.gsfe_relax_normal, **kw
            )
        return surface_energy(el, make, arg, s.surface_layers, s.surface_vacuum, s.surface_size, s.surface_relax, **kw)


def property_values(
    element: str, make_calculator: MakeCalc, settings: AutotestSettings, names: Sequence[str]
) -> dict[str, float]:
    """The autotest properties ``names`` of ``element`` with the calculators ``make_calculator`` makes,
    computed with the autotest's functions and ``settings`` (only what the names need)."""
    known = available_properties(settings)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"properties {unknown}: the autotest with these settings reports {list(known)}")
    calcs = _Calculations(element, make_calculator, settings)
    return {n: float(calcs.value(n)) for n in names}


def verdict(
    target: PropertyTarget, mean: float, spread: float, reference: float, settings: AutotestSettings | None = None
) -> dict:
    """How a convergence property is judged, as the autotest judges its row
    (:func:`al_flows.validation.tolerances.judge_row`): a ``target.tolerance`` given is absolute;
    without one the tighter of the autotest's absolute and relative tolerance of the row
    (``settings``, default :class:`AutotestSettings`); energy differences and fault, defect and surface
    energies also on their sign. The members' ``spread`` must be within the tolerance too. Returns
    tolerance, tolerance_kind, sign_ok, failed_by (``tolerance``, ``sign``, ``spread``) and within."""
    abs_tol, rel_tol, zero = (settings or AutotestSettings()).limits(target.name)
    if target.tolerance is not None:
        abs_tol, rel_tol = float(target.tolerance), None
    row = judge_row(float(reference), float(mean), abs_tol, rel_tol, zero)
    failed = list(row["failed_by"])
    if not np.isfinite(mean) and "tolerance" not in failed:
        failed.append("tolerance")
    tol = row["tolerance"]
    if not np.isfinite(spread) or (tol is not None and spread > tol):
        failed.append("spread")
    return {
        "tolerance": tol,
        "tolerance_kind": row["tolerance_kind"],
        "sign_ok": row["sign_ok"],
        "failed_by": failed,
        "within": not failed,
    }


def property_result(
    target: PropertyTarget,
    unit: str,
    member_values: Sequence[float],
    reference: float,
    settings: AutotestSettings | None = None,
) -> dict[str, object]:
    """One property of one round: members' values, their mean and spread (population standard
    deviation), the reference, |mean - reference| and whether it is within its tolerance
    (:func:`verdict`; ``settings``: the autotest's, whose tolerances apply when the target gives none)."""
    values = np.asarray(member_values, dtype=float)
    mean, spread = float(values.mean()), float(values.std())
    v = verdict(target, mean, spread, float(reference), settings)
    return {
        "property": target.key,
        "element": target.element,
        "name": target.name,
        "unit": unit,
        "members": [float(v) for v in values],
        "mean": mean,
        "spread": spread,
        "reference": float(reference),
        "error": abs(mean - float(reference)),
        **v,
    }


def judge(
    results: Sequence[dict] | None, targets: Sequence[PropertyTarget], settings: AutotestSettings | None = None
) -> bool:
    """Whether every target's property is within its (current) tolerance in ``results`` (a round's
    :func:`property_result` rows), judged again with the targets and ``settings`` of now
    (:func:`verdict`). A target without a result (not computed in that round) is not met."""
    by_key = {r["property"]: r for r in results or []}
    for t in targets:
        r = by_key.get(t.key)
        if r is None or r.get("mean") is None or r.get("spread") is None:
            return False
        if not verdict(t, float(r["mean"]), float(r["spread"]), float(r["reference"]), settings)["within"]:
            return False
    return True


#: the properties atomate2's EOS and elastic flows give
VASP_REFERENCE_PROPERTIES = ("a0", "v0", "e0", "B", "C11", "C12", "C44")
#: ground-state lattices whose one-atom cell and cubic constants the reference handles
VASP_REFERENCE_LATTICES = ("fcc", "bcc")


def check_vasp_properties(names: list[str], lattice: str, where: str = "convergence.properties") -> None:
    """ValueError (one line, naming ``where``) unless every name has a VASP reference for ``lattice``."""
    if lattice not in VASP_REFERENCE_LATTICES:
        raise ValueError(
            f"{where}: the VASP reference is computed for cubic ground states ({', '.join(VASP_REFERENCE_LATTICES)}), "
            f"and autotest.lattice is {lattice}; set autotest.lattice or label with an ASE calculator"
        )
    for i, name in enumerate(names):
        if name not in VASP_REFERENCE_PROPERTIES:
            raise ValueError(
                f"{where}[{i}].name: {name!r} has no VASP reference (atomate2's EOS and elastic flows give "
                f"{', '.join(VASP_REFERENCE_PROPERTIES)}); drop it or label with an ASE calculator"
            )
