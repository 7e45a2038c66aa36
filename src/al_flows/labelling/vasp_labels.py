"""Turn an atomate2/emmet VASP ``TaskDoc`` into a labelled frame.

Units: energy eV (``output.energy``, the final energy), forces eV/Angstrom
(``output.forces``, already minus the gradient), stress: VASP reports kBar with
positive = compressive, ASE uses eV/Angstrom^3 with the opposite sign, so
``stress_ase = -0.1 * GPa * stress_vasp`` (Voigt order xx, yy, zz, yz, xz, xy).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.units import GPa

KBAR = 0.1 * GPa  # eV/Angstrom^3 per kBar


class LabelError(ValueError):
    """A TaskDoc that cannot become a label; the message is the recorded reason."""


def get_path(obj, *path):
    """``obj.path[0].path[1]...`` of a TaskDoc (pydantic model or dict); None where a step is missing."""
    for key in path:
        if obj is None:
            return None
        obj = obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)
    return obj


def vasp_stress_to_ase(stress_kbar) -> np.ndarray:
    """3x3 VASP stress (kBar, positive = compressive) -> ASE Voigt stress (eV/Angstrom^3)."""
    s = -KBAR * np.asarray(stress_kbar, dtype=float).reshape(3, 3)
    return np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])


def failure_reason(task_doc) -> str | None:
    """Why a TaskDoc is not a usable label, or None when it is."""
    state = str(get_path(task_doc, "state") or "")
    state = state.split(".")[-1].lower()
    if state != "successful":
        calc = (get_path(task_doc, "calcs_reversed") or [None])[0]
        has_completed = get_path(calc, "has_vasp_completed")
        completed = str(has_completed).split(".")[-1].lower() if has_completed is not None else ""
        detail = (
            "electronic steps did not converge" if completed not in ("", "successful") else "calculation not successful"
        )
        return f"VASP task state '{state or 'unknown'}': {detail}"
    return None


def run_core_hours(task_doc) -> float | None:
    """Core-hours of the VASP run behind a TaskDoc: elapsed time (s) x cores / 3600 from emmet's
    ``run_stats['overall']`` (elapsed times of the task's calculations summed, the most cores any
    used; parsed from the OUTCAR). None when the TaskDoc has no positive elapsed time and core count
    (no OUTCAR statistics)."""
    stats = get_path(task_doc, "run_stats", "overall")
    elapsed, cores = get_path(stats, "elapsed_time"), get_path(stats, "cores")
    try:
        elapsed, cores = float(elapsed), float(cores)
    except (TypeError, ValueError):
        return None
    if not (np.isfinite(elapsed) and elapsed > 0 and cores > 0):
        return None
    return elapsed * cores / 3600.0


def label_from_taskdoc(
    frame: Atoms, task_doc, task_uuid: str, labeller: str, label_settings: str, max_force: float = 50.0
) -> Atoms:
    """The labelled copy of ``frame`` (its provenance kept) from its VASP TaskDoc.

    Raises LabelError with the reason when the task failed or its output does not match
    the frame (atom count or order).
    """
    reason = failure_reason(task_doc)
    if reason:
        raise LabelError(reason)
    energy = get_path(task_doc, "output", "energy")
    forces = get_path(task_doc, "output", "forces")
    stress = get_path(task_doc, "output", "stress")
    if energy is None or forces is None:
        raise LabelError("TaskDoc has no output energy or forces (unparseable output)")
    forces = np.asarray(forces, dtype=float)
    if forces.shape != (len(frame), 3):
        raise LabelError(f"TaskDoc forces have shape {forces.shape}, the frame has {len(frame)} atoms")
    structure = get_path(task_doc, "output", "structure")
    if structure is not None:
        species = [str(getattr(site, "specie", None) or site["species"][0]["element"]) for site in _sites(structure)]
        if species != frame.get_chemical_symbols():
            raise LabelError("atom order of the VASP output differs from the frame (was the structure sorted?)")
    energy = float(energy)
    if not np.isfinite(energy) or not np.isfinite(forces).all():
        raise LabelError("non-finite energy or forces in the TaskDoc")
    fmax = float(np.linalg.norm(forces, axis=1).max()) if len(forces) else 0.0
    if fmax > max_force:
        raise LabelError(f"max force {fmax:.1f} eV/A above labeller.max_force={max_force}")
    labelled = frame.copy()
    labelled.info = dict(frame.info)
    labelled.info.update(labeller=labeller, label_settings=label_settings, task_uuid=task_uuid)
    results = {"energy": energy, "forces": forces}
    if stress is not None:
        results["stress"] = vasp_stress_to_ase(stress)
    labelled.calc = SinglePointCalculator(labelled, **results)
    return labelled


def _sites(structure):
    if isinstance(structure, dict):
        return structure["sites"]
    return list(structure)
