"""Label frames with an ASE calculator (EMT by default; EAM files through matscipy, see
:mod:`al_flows.labelling.eam`), isolating failures per frame.

A label is the calculator's energy (eV), forces (eV/Angstrom) and, for periodic
cells, stress (eV/Angstrom^3), frozen into a SinglePointCalculator. A frame whose
calculation raises, returns non-finite numbers, or forces above ``max_force`` is
reported as failed with its reason instead of stopping the others.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError
from ase.calculators.singlepoint import SinglePointCalculator

from al_flows.frames.ids import frame_id

_SHORT_NAMES = {"emt": "ase.calculators.emt.EMT", "lj": "ase.calculators.lj.LennardJones"}


def calculator_factory(spec: str, kwargs: dict | None = None) -> Callable[[], Calculator]:
    """Return a factory for the calculator named by ``spec`` ('emt', 'lj', 'eam' or 'pkg.module.Class').

    'eam': matscipy's EAM calculator of the file ``kwargs['potential']`` (checked against
    ``kwargs['sha256']`` when given; :func:`al_flows.labelling.eam.eam_factory`); the file is found,
    checked and read once, and every call returns a new calculator."""
    if spec.lower() == "eam":
        from al_flows.labelling.eam import eam_factory

        settings = dict(kwargs or {})
        if "potential" not in settings:
            raise ValueError("labeller.potential: required with calculator eam; name a setfl/funcfl file")
        unknown = sorted(set(settings) - {"potential", "sha256", "kind"})
        if unknown:
            raise ValueError(f"labeller.kwargs: calculator eam takes no {unknown}; remove them")
        return eam_factory(**settings)
    path = _SHORT_NAMES.get(spec.lower(), spec)
    module_name, _, cls_name = path.rpartition(".")
    if not module_name:
        raise ValueError(
            f"labeller.calculator: '{spec}' is not 'emt', 'lj', 'eam' or an import path like 'ase.calculators.emt.EMT'"
        )
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(
            f"labeller.calculator: cannot import '{path}' ({exc}); install the package or fix the path"
        ) from None
    kwargs = dict(kwargs or {})
    return lambda: cls(**kwargs)


@dataclass
class LabelResult:
    """Frames labelled successfully and the ones that failed, with reasons."""

    labelled: list[Atoms] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)


def label_frames(
    frames: Iterable[Atoms],
    make_calculator: Callable[[], Calculator],
    labeller: str = "ase",
    max_force: float = 50.0,
) -> LabelResult:
    """Compute energy/forces/stress for every frame; keep each frame's provenance in ``info``."""
    result = LabelResult()
    for atoms in frames:
        fid = atoms.info.get("frame_id") or frame_id(atoms)
        try:
            work = atoms.copy()
            work.calc = make_calculator()
            energy = float(work.get_potential_energy())
            forces = np.array(work.get_forces(), dtype=float)
            stress = None
            if work.pbc.all():
                try:
                    stress = np.array(work.get_stress(), dtype=float)
                except (PropertyNotImplementedError, NotImplementedError):
                    stress = None
        except Exception as exc:  # noqa: BLE001 - any calculator failure is recorded, not fatal
            result.failed.append({"frame_id": fid, "reason": f"{type(exc).__name__}: {exc}"[:500]})
            continue
        if not np.isfinite(energy) or not np.isfinite(forces).all():
            result.failed.append({"frame_id": fid, "reason": "non-finite energy or forces"})
            continue
        fmax = float(np.linalg.norm(forces, axis=1).max()) if len(forces) else 0.0
        if fmax > max_force:
            result.failed.append(
                {"frame_id": fid, "reason": f"max force {fmax:.1f} eV/A above labeller.max_force={max_force}"}
            )
            continue
        labelled = atoms.copy()
        labelled.info = dict(atoms.info)
        labelled.info.update(frame_id=fid, labeller=labeller)
        results = {"energy": energy, "forces": forces}
        if stress is not None and np.isfinite(stress).all():
            results["stress"] = stress
        labelled.calc = SinglePointCalculator(labelled, **results)
        result.labelled.append(labelled)
    return result
