"""Reading VASP outputs as labelled frames: vasprun.xml, OUTCAR, XDATCAR and run directories.

A run directory's vasprun.xml is read when it is complete and parses, otherwise its OUTCAR; an
XDATCAR next to them must hold the frames' positions (:data:`XDATCAR_TOLERANCE`). Labels: energy
(eV, energy(sigma->0) or the free energy TOTEN, see :mod:`al_flows.pool_study.pool_import`),
free_energy (eV), forces (eV/Angstrom), stress (ASE convention, eV/Angstrom^3) where VASP wrote it.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from al_flows.pool_study.import_files import (
    VASP_NAMES,
    IncompleteRunError,
    SourceFrames,
    file_tail,
    find_vasp_outputs,
    one_line,
    open_file,
)

__all__ = ["XDATCAR_TOLERANCE", "read_vasp_file", "read_vasp_dir"]

#: largest allowed minimum-image displacement (Angstrom) between XDATCAR and the labelled frames
XDATCAR_TOLERANCE = 1e-3

_ASE_FORMAT = {"vasprun": "vasp-xml", "outcar": "vasp-out", "xdatcar": "vasp-xdatcar"}
_OUTCAR_FOOTER = "General timing and accounting informations for this job"
_META_INT = ("IBRION", "NSW", "ISIF", "ISMEAR", "NBLOCK")
_META_FLOAT = ("POTIM", "TEBEG", "TEEND", "SMASS", "SIGMA", "ENCUT")


def read_vasp_file(path: Path, kind: str, *, energy: str, allow_incomplete: bool) -> SourceFrames:
    """The frames of one VASP output of ``kind`` vasprun, outcar or xdatcar."""
    if kind == "vasprun":
        return _read_vasprun(path, energy, allow_incomplete)
    if kind == "outcar":
        return _read_outcar(path, energy, allow_incomplete)
    return _read_xdatcar(path)


def read_vasp_dir(
    directory: Path, fmt: str, *, energy: str, allow_incomplete: bool, check_xdatcar: bool
) -> SourceFrames:
    """The frames of a VASP run directory: of its ``fmt`` file, or (``fmt="auto"``) of its vasprun.xml
    or OUTCAR (an XDATCAR alone gives unlabelled frames); with ``check_xdatcar`` an XDATCAR next to
    the labelled file must hold their positions."""
    files = find_vasp_outputs(directory)
    if fmt != "auto":
        if fmt not in files:
            raise FileNotFoundError(
                f"{directory}: no {VASP_NAMES[fmt]} (plain or .gz/.bz2/.xz) for fmt={fmt!r}; use fmt='auto' or give "
                "the file"
            )
        source = read_vasp_file(files[fmt], fmt, energy=energy, allow_incomplete=allow_incomplete)
    elif "vasprun" in files or "outcar" in files:
        source = _read_labelled_dir(files, energy, allow_incomplete)
    elif "xdatcar" in files:
        return _read_xdatcar(files["xdatcar"])
    else:
        raise FileNotFoundError(
            f"{directory}: no vasprun.xml, OUTCAR or XDATCAR (plain or .gz/.bz2/.xz); is this a VASP run directory?"
        )
    if check_xdatcar and source.labelled and "xdatcar" in files:
        _check_xdatcar(files["xdatcar"], source, allow_extra=allow_incomplete)
    return source


def _read_labelled_dir(files: dict[str, Path], energy: str, allow_incomplete: bool) -> SourceFrames:
    """vasprun.xml when complete and parsable, else OUTCAR; with ``allow_incomplete`` and both
    incomplete, the one with more ionic steps."""
    errors: list[str] = []
    partial: list[SourceFrames] = []
    for kind in ("vasprun", "outcar"):
        if kind not in files:
            continue
        try:
            source = read_vasp_file(files[kind], kind, energy=energy, allow_incomplete=False)
            if errors:
                warnings.warn(f"{errors[0]}; imported {files[kind]} instead", stacklevel=4)
            return source
        except IncompleteRunError as exc:
            errors.append(str(exc))
            if allow_incomplete:
                partial.append(exc.source)
        except ValueError as exc:
            errors.append(str(exc))
    if partial:
        return max(partial, key=lambda s: len(s.frames))  # ties: vasprun (first)
    raise ValueError(" | ".join(errors))


def _read_ase(path: Path, kind: str) -> list[Atoms]:
    from ase.io import read

    try:
        frames = read(str(path), index=":", format=_ASE_FORMAT[kind])
    except Exception as exc:  # any parser failure becomes one line naming the file
        raise ValueError(
            f"{path}: cannot parse as {VASP_NAMES[kind]} ({type(exc).__name__}: {one_line(exc)}); is the file "
            "complete and from VASP?"
        ) from exc
    return list(frames) if isinstance(frames, list) else [frames]


def _read_vasprun(path: Path, energy: str, allow_incomplete: bool) -> SourceFrames:
    complete = file_tail(path, 4096).rstrip().endswith(b"</modeling>")
    frames = _read_ase(path, "vasprun")  # of a truncated file: its complete <calculation> blocks
    if frames:
        _check_vasprun_rows(path, len(frames[0]))
    meta = _vasprun_meta(frames[0]) if frames else {}
    frames = _with_forces(frames, path)
    if not frames:
        raise ValueError(
            f"{path}: no ionic step with forces (truncated before the first step, or not a run that computes forces)"
        )
    source = SourceFrames(
        path, "vasprun", [_labelled(f, path, k, energy) for k, f in enumerate(frames)], True, meta, energy
    )
    if not complete:
        msg = (
            f"{path}: incomplete vasprun.xml (no closing </modeling>: the run was killed or the file is truncated); "
            f"pass allow_incomplete=True to import its {len(frames)} complete ionic steps"
        )
        if not allow_incomplete:
            raise IncompleteRunError(msg, source)
    return source


def _check_vasprun_rows(path: Path, natoms: int) -> None:
    """ASE fills missing force rows with zeros; count the rows of each step's arrays."""
    import xml.etree.ElementTree as ET

    step = 0
    with open_file(path, "rb") as fh:
        try:
            for _, elem in ET.iterparse(fh, events=("end",)):
                if elem.tag != "calculation":
                    continue
                for name, where in (
                    ("forces", "varray[@name='forces']"),
                    ("positions", "structure/varray[@name='positions']"),
                ):
                    arr = elem.find(where)
                    if arr is None:
                        continue
                    rows = arr.findall("v")
                    widths = {len((v.text or "").split()) for v in rows}
                    if len(rows) != natoms or widths - {3}:
                        shape = f"({len(rows)}, {'/'.join(map(str, sorted(widths))) or 0})"
                        raise ValueError(
                            f"{path}: ionic step {step}: {name} have shape {shape}, expected ({natoms}, 3); "
                            "the file is corrupt: re-run or drop this run"
                        )
                step += 1
                elem.clear()
        except ET.ParseError:
            pass  # a truncated file: ASE already kept its complete steps only


def _read_outcar(path: Path, energy: str, allow_incomplete: bool) -> SourceFrames:
    complete = _OUTCAR_FOOTER.encode() in file_tail(path)
    frames = _with_forces(_read_ase(path, "outcar"), path)
    if not frames:
        raise ValueError(f"{path}: no complete ionic step (truncated or not an OUTCAR of a run that computes forces)")
    source = SourceFrames(
        path, "outcar", [_labelled(f, path, k, energy) for k, f in enumerate(frames)], True, _outcar_meta(path), energy
    )
    if not complete:
        msg = (
            f"{path}: incomplete OUTCAR (no '{_OUTCAR_FOOTER}' block: the run was killed or the file is truncated); "
            f"pass allow_incomplete=True to import its {len(frames)} complete ionic steps"
        )
        if not allow_incomplete:
            raise IncompleteRunError(msg, source)
    return source


def _with_forces(frames: list[Atoms], path: Path) -> list[Atoms]:
    """The leading ionic steps that have forces (a step without them may only end the file)."""
    has = [f.calc is not None and f.calc.results.get("forces") is not None for f in frames]
    n = has.index(False) if False in has else len(has)
    if any(has[n:]):
        raise ValueError(
            f"{path}: ionic step {n} has no forces but later steps do; the file is corrupt: fix it or drop this run"
        )
    return frames[:n]


def _read_xdatcar(path: Path) -> SourceFrames:
    frames = _read_ase(path, "xdatcar")
    out = []
    for atoms in frames:
        new = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True)
        out.append(new)
    if not out:
        raise ValueError(f"{path}: no configuration in the XDATCAR")
    numbers = _xdatcar_numbers(path)
    steps = (
        [k - 1 for k in numbers]
        if len(numbers) == len(out) and numbers == sorted(set(numbers)) and numbers[0] >= 1
        else None
    )
    return SourceFrames(path, "xdatcar", out, False, steps=steps)


def _labelled(atoms: Atoms, path: Path, step: int, energy: str) -> Atoms:
    """A clean frame (no constraints, labels: energy in the chosen convention, free_energy,
    forces, stress) from an ASE-read VASP step."""
    res = atoms.calc.results
    e0 = res.get("energy")
    free = res.get("free_energy")
    results: dict = {}
    if energy == "free":
        if free is None:
            raise ValueError(f"{path}: ionic step {step} has no free energy (TOTEN); use energy='sigma0'")
        results["energy"] = float(free)
    else:
        if e0 is None:
            raise ValueError(f"{path}: ionic step {step} has no energy(sigma->0); use energy='free'")
        results["energy"] = float(e0)
    if free is not None:
        results["free_energy"] = float(free)
    results["forces"] = np.array(res["forces"], dtype=float)
    if res.get("stress") is not None:
        results["stress"] = np.array(res["stress"], dtype=float)
    new = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    new.calc = SinglePointCalculator(new, **results)
    return new


def _vasprun_meta(atoms: Atoms) -> dict:
    params = getattr(atoms.calc, "parameters", None) or {}
    meta = {}
    for key in _META_INT + _META_FLOAT:
        value = params.get("enmax" if key == "ENCUT" else key.lower())
        if value is None or isinstance(value, (list, tuple)):
            continue
        try:
            meta[key] = int(value) if key in _META_INT else float(value)
        except (TypeError, ValueError):
            continue
    return meta


def _outcar_meta(path: Path) -> dict:
    """INCAR values printed in the OUTCAR header (before the first electronic iteration)."""
    meta: dict = {}
    patterns = {
        key: re.compile(rf"(?<![A-Z_]){key}\s*=\s*(-?[\d.]+(?:[Ee][-+]?\d+)?)") for key in _META_INT + _META_FLOAT
    }
    with open_file(path, "rt") as fh:
        for line in fh:
            if "Iteration" in line:
                break
            for key, pattern in patterns.items():
                if key not in meta and (m := pattern.search(line)):
                    try:
                        meta[key] = int(float(m.group(1))) if key in _META_INT else float(m.group(1))
                    except ValueError:
                        pass
    return meta


def _check_xdatcar(xdatcar: Path, source: SourceFrames, allow_extra: bool) -> None:
    """Raise unless XDATCAR's configurations are the frames' positions.

    VASP writes a configuration every NBLOCK ionic steps, numbered by the step
    ("Direct configuration=  NSTEP", 1-based) with the positions of that step; NBLOCK comes
    from the run's INCAR values (1 when unknown). With ``allow_extra`` (a killed run) the
    XDATCAR may go on past the last complete labelled step.
    """
    from ase.geometry import find_mic

    configs = _read_xdatcar(xdatcar).frames
    numbers = _xdatcar_numbers(xdatcar)
    if len(numbers) != len(configs):
        numbers = list(range(1, len(configs) + 1))
    n = len(source.frames)
    nblock = max(1, int(source.meta.get("NBLOCK", 1) or 1))
    expected = [k for k in range(1, n + 1) if k % nblock == 0]
    if numbers != expected and not (allow_extra and numbers[: len(expected)] == expected):
        which = f"numbered {numbers[0]}..{numbers[-1]}" if numbers else "none"
        raise ValueError(
            f"{xdatcar}: {len(numbers)} configurations ({which}) but {source.path.name} has {n} ionic steps "
            f"(NBLOCK={nblock}); the XDATCAR belongs to another run: remove it or pass check_xdatcar=False"
        )
    for number, conf in zip(numbers, configs):
        k = number - 1
        if k >= n:
            break
        frame = source.frames[k]
        if list(frame.numbers) != list(conf.numbers):
            raise ValueError(
                f"{xdatcar}: species of configuration {k} differ from {source.path.name}; remove the XDATCAR or pass "
                "check_xdatcar=False"
            )
        _, lengths = find_mic(conf.positions - frame.positions, frame.cell, pbc=True)
        worst = float(np.max(lengths)) if len(lengths) else 0.0
        if worst >= XDATCAR_TOLERANCE:
            raise ValueError(
                f"{xdatcar}: configuration {k} (0-based step) differs from ionic step {k} of {source.path.name} by "
                f"{worst:.3g} A (tolerance {XDATCAR_TOLERANCE} A); the XDATCAR belongs to another run: remove it "
                "or pass check_xdatcar=False"
            )


def _xdatcar_numbers(path: Path) -> list[int]:
    pattern = re.compile(r"^\s*Direct configuration=\s*(\d+)")
    numbers = []
    with open_file(path, "rt") as fh:
        for line in fh:
            if m := pattern.match(line):
                numbers.append(int(m.group(1)))
    return numbers
