"""From a file's frames to pool frames: picking steps, checking structures and labels, and the
provenance ``info`` of every imported frame (see :mod:`al_flows.pool_study.pool_import`).

Labels: energy and free_energy (eV), forces (eV/Angstrom), stress (eV/Angstrom^3).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from al_flows.frames.checks import check_periodicity, check_structure
from al_flows.frames.ids import frame_id
from al_flows.pool_study.import_files import SourceFrames

__all__ = ["pool_frames"]


def _validate_labels(results: dict, natoms: int, path: Path, step: int, what: str) -> None:
    """Raise unless the labels of step ``step`` are well formed: forces (natoms, 3) and finite, finite
    energy, free_energy and stress where present."""
    forces = results.get("forces")
    if forces is not None:
        forces = np.asarray(forces)
        if forces.shape != (natoms, 3):
            raise ValueError(
                f"{path}: {what} {step}: forces have shape {forces.shape}, expected ({natoms}, 3); the file is "
                "corrupt: fix or drop it"
            )
        if not np.isfinite(forces).all():
            raise ValueError(
                f"{path}: {what} {step}: non-finite forces; drop this step with index=/stride or fix the file"
            )
    for key in ("energy", "free_energy"):
        value = results.get(key)
        if value is not None and not math.isfinite(float(value)):
            raise ValueError(
                f"{path}: {what} {step}: non-finite {key} ({value}); drop this step with index=/stride or fix the file"
            )
    stress = results.get("stress")
    if stress is not None and not np.isfinite(np.asarray(stress, dtype=float)).all():
        raise ValueError(f"{path}: {what} {step}: non-finite stress; drop this step with index=/stride or fix the file")


def _select(n: int, index, stride: int, path: Path) -> list[int]:
    from ase.io.formats import string2index

    idx = string2index(index) if isinstance(index, str) else index
    steps = list(range(n))
    if isinstance(idx, slice):
        chosen = steps[idx]
    else:
        try:
            chosen = [steps[int(idx)]]
        except IndexError:
            raise ValueError(f"{path}: index {idx} out of range for its {n} steps") from None
    return chosen[::stride]


def _source_name(path: Path, base: Path | None) -> str:
    if base is None:
        return str(path.resolve())
    return Path(os.path.relpath(path.resolve(), Path(base).resolve())).as_posix()


def pool_frames(source: SourceFrames, base: Path | None, index, stride: int, require_labels: bool) -> list[Atoms]:
    """The frames ``index``/``stride`` picks from ``source``, checked (structure, labels, one ``pbc``)
    and carrying their provenance ``info``; ``source_file`` relative to ``base`` (absolute when None)."""
    name = _source_name(source.path, base)
    out = []
    for k in _select(len(source.frames), index, stride, source.path):
        atoms = source.frames[k]
        results = atoms.calc.results if atoms.calc is not None else {}
        what = "frame" if source.kind == "extxyz" else "ionic step"
        check_structure(atoms, f"{source.path}: {what} {k}", fix="fix the file or leave this step out (index=/stride)")
        _validate_labels(results, len(atoms), source.path, k, what)
        has_labels = results.get("energy") is not None and results.get("forces") is not None
        if not has_labels and require_labels:
            _refuse_unlabelled(source, k)
        step = source.steps[k] if source.steps is not None else k
        info = _provenance(dict(atoms.info) if source.kind == "extxyz" else {}, source, name, step, has_labels)
        info["frame_id"] = frame_id(atoms)
        atoms = _copy(atoms)
        atoms.info = info
        out.append(atoms)
    check_periodicity(out, str(source.path))
    return out


def _refuse_unlabelled(source: SourceFrames, k: int) -> None:
    """Raise the error of frame ``k`` of ``source``, which has no energy and forces."""
    if source.kind == "xdatcar":
        raise ValueError(
            f"{source.path} holds positions only; energies and forces come from OUTCAR or vasprun.xml: add "
            "one, or pass require_labels=False"
        )
    raise ValueError(f"{source.path}: frame {k} has no energy and forces; label it first, or pass require_labels=False")


def _provenance(info: dict, source: SourceFrames, name: str, step: int, has_labels: bool) -> dict:
    """``info`` (an extxyz frame's own, else empty) with the import's provenance keys: source_file
    ``name``, source_step ``step``, source_format, explorer "import", round -1 (earlier values kept
    as origin_*), labeller, energy_convention and source_meta (VASP), parent_id, model_id, deviation."""
    new_values = {
        "source_file": name,
        "source_step": step,
        "source_format": source.kind,
        "explorer": "import",
        "round": -1,
    }
    source_keys = ("source_file", "source_step", "source_format")
    if "origin_source_file" not in info and any(
        info.get(key, new_values[key]) != new_values[key] for key in source_keys
    ):
        info.update({f"origin_{key}": info[key] for key in source_keys if key in info})
    for key in ("explorer", "round"):
        old = info.get(key)
        if old is not None and old != new_values[key] and f"origin_{key}" not in info:
            info[f"origin_{key}"] = old
    info.update(new_values)
    if source.kind in ("vasprun", "outcar"):
        info["labeller"] = "vasp"
        info["energy_convention"] = source.energy
        if source.meta:
            info["source_meta"] = dict(source.meta)
    elif source.kind == "extxyz":
        info["labeller"] = str(info.get("labeller") or ("extxyz" if has_labels else ""))
    else:
        info["labeller"] = ""
    info.setdefault("parent_id", "")
    info["model_id"] = info.get("model_id") or ""
    info.setdefault("deviation", float("nan"))
    return info


def _copy(atoms: Atoms) -> Atoms:
    """A copy of ``atoms`` with a copy of its calculator's results."""
    new = atoms.copy()
    if atoms.calc is not None:
        results = {k: (np.array(v) if isinstance(v, np.ndarray) else v) for k, v in atoms.calc.results.items()}
        new.calc = SinglePointCalculator(new, **results)
    return new
