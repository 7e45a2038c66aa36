"""How an autotest row is judged (:mod:`al_flows.validation.autotest`): its tolerance, absolute or
relative to the reference, whichever is tighter, and the sign check of energy differences.

Rows are named by their property's base name (``a0[hcp]`` takes ``a0``'s limits, ``dE[hcp-fcc]``
``dE``'s, ``E_surf[111]`` ``E_surf``'s). Per row, with reference r and model m:

- **Tolerance.** t = min(t_abs, t_rel · |r|); ``tolerance_kind`` says which bound gave t (``abs``
  or ``rel``; ``abs`` on a tie). Where r = 0 the relative bound is undefined and t = t_abs; where a
  bound is not set (null) the other alone decides; with neither the row has no tolerance. The row
  is within tolerance when |m − r| <= t.
- **Sign.** For the rows of :data:`DEFAULT_SIGN_ZERO` (energy differences, fault, defect and
  surface energies) the model must have the reference's sign (m · r > 0), unless the reference
  counts as zero, |r| <= z, the row's zero band: then ``sign_ok`` is None (not checked). A wrong
  sign with |r| above the tolerance fails on the tolerance too (|m − r| > |r|); the sign check
  alone decides where the tolerance is wider than the quantity, |r| <= t: a row with its relative
  bound set off (null) or at 1 or more. With the default relative bounds (all below 1) it names
  the reason beside the tolerance.
- ``passed`` when no check failed; ``failed_by`` lists the checks that failed (``tolerance``,
  ``sign``), empty when it passed.

Defaults and their reasons: docs/exploration.md (Autotest).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = [
    "DEFAULT_TOLERANCES",
    "DEFAULT_RELATIVE_TOLERANCES",
    "DEFAULT_SIGN_ZERO",
    "check_limits",
    "limit_of",
    "limits_copy",
    "judge_row",
]

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
    "E_int": 0.2,  # eV, both sites; formation energies of 2-4 eV
    "gamma_usf": 20.0,
    "gamma_isf": 20.0,
    "E_surf": 0.1,  # J/m^2, every surface; surface energies of about 1 J/m^2
}

# relative to |reference| (fractions); e0 has none: it is the calculator's own energy zero, not a
# quantity of the material (EMT about 0, DFT several eV/atom)
DEFAULT_RELATIVE_TOLERANCES = {
    "a0": 0.01,  # the spread between DFT functionals; 0.02 A binds first for a0 > 2 A
    "v0": 0.03,  # V ~ a^3: three times a0's
    "B": 0.10,
    "C11": 0.15,  # finite strains of a few cells: noisier than B's EOS fit
    "C12": 0.15,
    "C44": 0.15,
    "dE": 0.20,  # small differences of large energies: a fifth still fixes their size
    "E_vac": 0.10,
    "E_int": 0.10,
    "gamma_usf": 0.15,
    "gamma_isf": 0.20,  # set by hcp - fcc (ANNNI), as dE
    "E_surf": 0.10,
}

# rows whose sign must be the reference's, with the |reference| (row's unit) up to which the
# reference counts as zero and the sign is not checked: for dE 0.5 meV/atom (below EMT Cu's
# hcp - fcc of -0.9 meV/atom, far above the autotest's own relaxation noise), for the faults the
# same 0.5 meV/atom as 2 dE / A of a (111) layer (about 2.5-3 mJ/m^2 for Cu and Al)
DEFAULT_SIGN_ZERO = {
    "dE": 0.5,
    "gamma_usf": 2.0,
    "gamma_isf": 2.0,
    "E_vac": 0.05,
    "E_int": 0.05,
    "E_surf": 0.05,
}


def check_limits(limits: Mapping[str, float | None], known: Mapping[str, float]) -> None:
    """Raise ValueError (naming the key and the fix) when a key of ``limits`` is no row of ``known``
    or a value is not positive (null allowed: no such limit for that row)."""
    for name, value in limits.items():
        if name not in known:
            raise ValueError(
                f"{name!r} is not an autotest row; use one of {list(known)} (a row's base name: dE for dE[hcp-fcc])"
            )
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name!r} is {value}; give a positive number, or null for none")


def limits_copy(limits: Mapping[str, float]) -> dict[str, float | None]:
    """A copy of default limits, typed as settings hold them (a value may be set off: null)."""
    return dict(limits)


def limit_of(name: str, given: Mapping[str, float | None], default: Mapping[str, float]) -> float | None:
    """The limit of row ``name`` (base name before ``[``): ``given``'s entry (null: none), else
    ``default``'s, else None."""
    base = name.split("[")[0]
    return given[base] if base in given else default.get(base)


def _tolerance(reference: float, abs_tol: float | None, rel_tol: float | None) -> tuple[float | None, str | None]:
    """(tolerance, kind): min(abs_tol, rel_tol · |reference|) and which bound gave it."""
    rel = rel_tol * abs(reference) if rel_tol is not None and reference != 0 else None
    if rel is not None and (abs_tol is None or rel < abs_tol):
        return rel, "rel"
    return (abs_tol, "abs") if abs_tol is not None else (None, None)


def _sign_ok(reference: float, model: float, zero: float | None) -> bool | None:
    """Whether the model has the reference's sign; None when not checked (no zero band, or the
    reference within it)."""
    if zero is None or abs(reference) <= zero:
        return None
    return bool(model * reference > 0)


def judge_row(
    reference: float, model: float, abs_tol: float | None, rel_tol: float | None, sign_zero: float | None
) -> dict:
    """One row's verdict: abs_error, rel_error (None where the reference is 0), tolerance,
    tolerance_kind, sign_ok, failed_by and passed (module docstring)."""
    err = abs(model - reference)
    tol, kind = _tolerance(reference, abs_tol, rel_tol)
    sign_ok = _sign_ok(reference, model, sign_zero)
    failed_by = []
    if tol is not None and not err <= tol:  # a NaN error fails
        failed_by.append("tolerance")
    if sign_ok is False:
        failed_by.append("sign")
    return {
        "abs_error": float(err),
        "rel_error": float(err / abs(reference)) if reference != 0 else None,
        "tolerance": None if tol is None else float(tol),
        "tolerance_kind": kind,
        "sign_ok": sign_ok,
        "failed_by": failed_by,
        "passed": not failed_by,
    }
