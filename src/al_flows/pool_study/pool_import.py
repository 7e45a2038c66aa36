"""Import existing DFT data (VASP runs, extended XYZ files) as labelled frames.

Every ionic step becomes one frame: an :class:`ase.Atoms` (no constraints) whose
SinglePointCalculator holds ``energy`` (eV), ``free_energy`` (eV, VASP's TOTEN) where
the source has it, ``forces`` (eV/Angstrom) and ``stress`` (ASE convention: Voigt
xx yy zz yz xz xy, eV/Angstrom^3, positive = tensile) where the source has it.

Sources
-------
* a VASP run directory holding ``vasprun.xml``, ``OUTCAR`` and/or ``XDATCAR``
  (each optionally compressed: ``.gz``, ``.bz2``, ``.xz``). vasprun.xml is used when it
  is complete and parses, otherwise OUTCAR. When an XDATCAR is there too its
  configurations must be the frames' positions (one per ionic step, or every NBLOCK-th
  step as VASP numbers them; largest minimum-image displacement below
  :data:`XDATCAR_TOLERANCE`), otherwise ValueError.
  A directory with only an XDATCAR gives frames WITHOUT labels, and only when
  ``require_labels=False``;
* one file: OUTCAR, vasprun.xml, XDATCAR, ``*.extxyz`` or ``*.xyz`` (labels from the
  file's calculator fields; ``al_info`` provenance written by
  :func:`al_flows.frames.dataset.frames_to_bytes` is restored);
* a tree (:func:`import_tree`): every directory below the root that holds VASP outputs
  is one run, plus every extxyz file; in sorted path order.

Energy convention
-----------------
``energy="sigma0"`` (default): ``energy`` is VASP's energy(sigma->0) (``e_0_energy``),
which is what ASE's OUTCAR and vasprun.xml readers return as ``energy``, what
pymatgen's ``Vasprun.final_energy`` / ``Outcar.final_energy`` return, and therefore what
this project's own VASP labeller stores (emmet TaskDoc ``output.energy``, see
:mod:`al_flows.labelling.vasp_labels`). Imported frames and frames labelled during a campaign
are thus on one energy scale. ``energy="free"`` uses the free energy TOTEN
(``e_fr_energy``), the energy whose derivatives VASP's forces are; with a small SIGMA
the two differ by a near-constant few meV per cell. Both paths (OUTCAR, vasprun.xml)
give the same number for the same run; ``free_energy`` is kept as well and
``info['energy_convention']`` records the choice. For extxyz files ``energy`` is taken
as stored (``energy="free"`` uses the stored ``free_energy`` instead).

Provenance (``atoms.info``)
---------------------------
``source_file`` (path relative to the ``root`` given: the run directory for
:func:`import_frames` of a directory, the tree root for :func:`import_tree`; the
absolute path when a single file is given), ``source_step`` (0-based ionic step, or
frame index, in that file, counted before ``index``/``stride``; for an XDATCAR VASP's
configuration number - 1, which differs from the position in the file when NBLOCK > 1), ``source_format``
(``"vasprun"``, ``"outcar"``, ``"xdatcar"``, ``"extxyz"``), ``explorer="import"``,
``round=-1``, ``labeller`` (``"vasp"`` for VASP files, an extxyz frame's own
``labeller`` or ``"extxyz"``; ``""`` for unlabelled frames), ``parent_id``,
``model_id`` (``""``), ``deviation`` (NaN), ``frame_id`` (:func:`al_flows.frames.dataset.frame_id`),
for VASP ``energy_convention`` and ``source_meta`` (INCAR values of the run such as
IBRION, NSW, POTIM, TEBEG, TEEND, SMASS, ISIF, ISMEAR, SIGMA, ENCUT where the file has
them). An extxyz frame keeps all its other ``info``; a ``source_file``/``source_step``/
``source_format`` it already had (from an earlier import) moves to
``origin_source_file``/``origin_source_step``/``origin_source_format``, and an
``explorer``/``round`` other than "import"/-1 to ``origin_explorer``/``origin_round``
(the first origin is kept), so a frame imported from VASP, written with
:func:`al_flows.frames.dataset.frames_to_bytes` and imported again still names its
OUTCAR/vasprun.xml step.

Frame ids are content hashes of positions rounded to 1e-4 Angstrom; OUTCAR prints
positions to 1e-5 Angstrom, so the OUTCAR and vasprun.xml imports of one run can give
a few different ids (the structures agree to file precision).

Errors are one-line exceptions naming the file and what to do: FileNotFoundError for a
missing path, ValueError otherwise (unparsable or incomplete file, forces of the wrong
shape, non-finite labels, XDATCAR disagreeing with the labelled file, missing labels).
Every frame's structure is checked too (:func:`al_flows.frames.checks.check_structure`:
atoms present, finite positions and cell, no periodic cell thinner than 0.5 A, no atoms
closer than half the sum of their covalent radii, periodic images included), and the frames
of one file must share one ``pbc``; these raise :class:`~al_flows.frames.checks.StructureError`
(a ValueError).
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import all_properties
from ase.calculators.singlepoint import SinglePointCalculator

from al_flows.frames.checks import check_periodicity, check_structure
from al_flows.frames.dataset import frame_id, frames_from_bytes

__all__ = [
    "ENERGY_CONVENTIONS",
    "FORMATS",
    "XDATCAR_TOLERANCE",
    "find_vasp_outputs",
    "import_frames",
    "import_tree",
]

#: accepted values of ``fmt`` (``"auto"`` guesses from the file name, then the content)
FORMATS: tuple[str, ...] = ("auto", "vasprun", "outcar", "xdatcar", "extxyz")
#: accepted values of ``energy``
ENERGY_CONVENTIONS: tuple[str, ...] = ("sigma0", "free")
#: largest allowed minimum-image displacement (Angstrom) between XDATCAR and the labelled frames
XDATCAR_TOLERANCE = 1e-3
#: default extxyz file patterns of :func:`import_tree` (matched after stripping .gz/.bz2/.xz)
EXTXYZ_PATTERNS: tuple[str, ...] = ("*.extxyz", "*.xyz")

_VASP_NAMES = {"vasprun": "vasprun.xml", "outcar": "OUTCAR", "xdatcar": "XDATCAR"}
_COMPRESSION = ("", ".gz", ".bz2", ".xz")
_ASE_FORMAT = {"vasprun": "vasp-xml", "outcar": "vasp-out", "xdatcar": "vasp-xdatcar"}
_OUTCAR_FOOTER = "General timing and accounting informations for this job"
_META_INT = ("IBRION", "NSW", "ISIF", "ISMEAR", "NBLOCK")
_META_FLOAT = ("POTIM", "TEBEG", "TEEND", "SMASS", "SIGMA", "ENCUT")


# --------------------------------------------------------------------------- public API


def import_frames(
    path: str | os.PathLike,
    fmt: str = "auto",
    index: int | str | slice = ":",
    stride: int = 1,
    *,
    require_labels: bool = True,
    energy: str = "sigma0",
    allow_incomplete: bool = False,
    check_xdatcar: bool = True,
    root: str | os.PathLike | None = None,
) -> list[Atoms]:
    """Frames of every ionic step in ``path`` (a VASP run directory or one file), see the module doc.

    ``fmt``: one of :data:`FORMATS`; for a directory ``"vasprun"``/``"outcar"``/``"xdatcar"``
    reads that file of the run only. ``index`` (int, slice or ASE string such as ``"10:"``)
    picks steps of the file, then ``stride`` keeps every ``stride``-th of those.
    ``require_labels``: raise when the frames have no energy and forces (XDATCAR, unlabelled
    extxyz); with False such frames come back without (or with partial) labels and
    ``labeller=""``. ``allow_incomplete``: import the complete ionic steps of an OUTCAR
    without VASP's closing timing block or a vasprun.xml without ``</modeling>`` (a killed
    run) instead of raising. ``check_xdatcar``: compare a run directory's XDATCAR with the
    labelled frames. ``root``: what ``source_file`` is relative to (default: ``path`` for a
    directory, none - absolute - for a file).
    """
    path = Path(path)
    _check_args(fmt, stride, energy)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such file or directory; give a VASP run directory, an OUTCAR, vasprun.xml, XDATCAR or .extxyz/.xyz file"
        )
    if path.is_dir():
        if fmt == "extxyz":
            raise ValueError(f"{path}: fmt='extxyz' needs a file; use import_tree for a directory of extxyz files")
        base = Path(root) if root is not None else path
        source = _read_vasp_dir(
            path, fmt, energy=energy, allow_incomplete=allow_incomplete, check_xdatcar=check_xdatcar
        )
    else:
        base = Path(root) if root is not None else None
        kind = fmt if fmt != "auto" else _detect_format(path)
        source = _read_file(path, kind, energy=energy, allow_incomplete=allow_incomplete)
    return _finish(source, base, index, stride, require_labels)


def import_tree(
    root: str | os.PathLike,
    patterns: tuple[str, ...] | list[str] = EXTXYZ_PATTERNS,
    *,
    index: int | str | slice = ":",
    stride: int = 1,
    require_labels: bool = True,
    energy: str = "sigma0",
    allow_incomplete: bool = False,
    check_xdatcar: bool = True,
    on_error: str = "raise",
) -> list[Atoms]:
    """Frames of every VASP run directory and extxyz file below ``root`` (``root`` included).

    A directory holding ``vasprun.xml``, ``OUTCAR`` or ``XDATCAR`` (optionally compressed) is
    one run, imported with :func:`import_frames`; every file whose name (less a .gz/.bz2/.xz
    suffix) matches one of ``patterns`` is imported as extxyz. Hidden directories are
    skipped. Order: sorted by path below ``root``, a run directory before the files and
    subdirectories inside it, so the result is deterministic. ``source_file`` is relative to
    ``root``. ``on_error="warn"`` skips a run or file that fails with a warning instead of
    raising. Other arguments as in :func:`import_frames`.
    """
    root = Path(root)
    _check_args("auto", stride, energy)
    if on_error not in ("raise", "warn"):
        raise ValueError(f"on_error must be 'raise' or 'warn', not {on_error!r}")
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root}: no such directory; import_tree needs the directory above the runs (use import_frames for one file)"
        )
    items: list[tuple[tuple[str, ...], Path, bool]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        rel = here.relative_to(root).parts
        if _vasp_candidates(here, filenames):
            items.append((rel, here, True))
        for name in sorted(filenames):
            stem = _strip_compression(name)
            if any(fnmatch.fnmatch(stem, p) for p in patterns):
                items.append((rel + (name,), here / name, False))
    if not items:
        raise ValueError(
            f"{root}: no VASP run directory (vasprun.xml, OUTCAR, XDATCAR) and no file matching {list(patterns)} below it"
        )
    frames: list[Atoms] = []
    for _, path, is_run in sorted(items, key=lambda item: item[0]):
        try:
            frames += import_frames(
                path,
                fmt="auto" if is_run else "extxyz",
                index=index,
                stride=stride,
                require_labels=require_labels,
                energy=energy,
                allow_incomplete=allow_incomplete,
                check_xdatcar=check_xdatcar,
                root=root,
            )
        except (ValueError, FileNotFoundError) as exc:
            if on_error == "raise":
                raise
            warnings.warn(f"skipped: {exc}", stacklevel=2)
    return frames


def find_vasp_outputs(directory: str | os.PathLike) -> dict[str, Path]:
    """``{"vasprun"|"outcar"|"xdatcar": path}`` of the VASP outputs in ``directory``
    (plain or .gz/.bz2/.xz). ValueError when one exists both plain and compressed."""
    directory = Path(directory)
    found: dict[str, Path] = {}
    for kind, name in _VASP_NAMES.items():
        hits = [directory / (name + suffix) for suffix in _COMPRESSION if (directory / (name + suffix)).is_file()]
        if len(hits) > 1:
            raise ValueError(f"{directory}: both {' and '.join(h.name for h in hits)}; keep one of them")
        if hits:
            found[kind] = hits[0]
    return found


# --------------------------------------------------------------------------- reading


@dataclass
class _Source:
    """Frames read from one file: ``frames[k]`` is ionic step ``k`` of ``path``."""

    path: Path
    kind: str
    frames: list[Atoms]
    labelled: bool
    meta: dict = field(default_factory=dict)
    energy: str | None = None  # energy convention for VASP files
    steps: list[int] | None = None  # step label of each frame when not its position (XDATCAR, NBLOCK > 1)


def _check_args(fmt: str, stride: int, energy: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, not {fmt!r}")
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride must be an int >= 1, not {stride!r}")
    if energy not in ENERGY_CONVENTIONS:
        raise ValueError(f"energy must be one of {ENERGY_CONVENTIONS}, not {energy!r}")


def _strip_compression(name: str) -> str:
    for suffix in _COMPRESSION[1:]:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _vasp_candidates(directory: Path, filenames) -> bool:
    names = {_strip_compression(n) for n in filenames}
    return any(name in names for name in _VASP_NAMES.values())


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _open(path: Path, mode: str = "rb"):
    from ase.io.formats import open_with_compression

    return open_with_compression(str(path), mode)


def _tail(path: Path, nbytes: int = 16384) -> bytes:
    """The last ``nbytes`` of the (decompressed) file."""
    if _strip_compression(path.name) == path.name:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - nbytes))
            return fh.read()
    tail = b""
    with _open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            tail = (tail + chunk)[-nbytes:]
    return tail


def _detect_format(path: Path) -> str:
    name = _strip_compression(path.name)
    low = name.lower()
    if name.startswith("OUTCAR") or low.endswith(".outcar"):
        return "outcar"
    if name.startswith("XDATCAR"):
        return "xdatcar"
    if low.startswith("vasprun") and ".xml" in low:
        return "vasprun"
    if low.endswith((".extxyz", ".xyz")):
        return "extxyz"
    try:
        with _open(path, "rb") as fh:
            head = fh.read(4096).decode("latin-1")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({_one_line(exc)})") from exc
    first_line = head.strip().splitlines()[0] if head.strip() else ""
    if "<modeling>" in head:
        return "vasprun"
    if first_line.startswith("vasp."):
        return "outcar"
    if "Direct configuration=" in head:
        return "xdatcar"
    raise ValueError(f"{path}: cannot tell the format from the name or content; pass fmt= one of {FORMATS[1:]}")


def _read_file(path: Path, kind: str, *, energy: str, allow_incomplete: bool) -> _Source:
    if kind == "vasprun":
        return _read_vasprun(path, energy, allow_incomplete)
    if kind == "outcar":
        return _read_outcar(path, energy, allow_incomplete)
    if kind == "xdatcar":
        return _read_xdatcar(path)
    return _read_extxyz(path, energy)


def _read_vasp_dir(directory: Path, fmt: str, *, energy: str, allow_incomplete: bool, check_xdatcar: bool) -> _Source:
    files = find_vasp_outputs(directory)
    if fmt != "auto":
        if fmt not in files:
            raise FileNotFoundError(
                f"{directory}: no {_VASP_NAMES[fmt]} (plain or .gz/.bz2/.xz) for fmt={fmt!r}; use fmt='auto' or give the file"
            )
        source = _read_file(files[fmt], fmt, energy=energy, allow_incomplete=allow_incomplete)
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


def _read_labelled_dir(files: dict[str, Path], energy: str, allow_incomplete: bool) -> _Source:
    """vasprun.xml when complete and parsable, else OUTCAR; with ``allow_incomplete`` and both
    incomplete, the one with more ionic steps."""
    errors: list[str] = []
    partial: list[_Source] = []
    for kind in ("vasprun", "outcar"):
        if kind not in files:
            continue
        try:
            source = _read_file(files[kind], kind, energy=energy, allow_incomplete=False)
            if errors:
                warnings.warn(f"{errors[0]}; imported {files[kind]} instead", stacklevel=4)
            return source
        except _Incomplete as exc:
            errors.append(str(exc))
            if allow_incomplete:
                partial.append(exc.source)
        except ValueError as exc:
            errors.append(str(exc))
    if partial:
        return max(partial, key=lambda s: len(s.frames))  # ties: vasprun (first)
    raise ValueError(" | ".join(errors))


class _Incomplete(ValueError):
    """A file whose complete ionic steps parsed but which the run did not finish."""

    def __init__(self, message: str, source: _Source):
        super().__init__(message)
        self.source = source


def _read_ase(path: Path, kind: str) -> list[Atoms]:
    from ase.io import read

    try:
        frames = read(str(path), index=":", format=_ASE_FORMAT[kind])
    except Exception as exc:  # any parser failure becomes one line naming the file
        raise ValueError(
            f"{path}: cannot parse as {_VASP_NAMES[kind]} ({type(exc).__name__}: {_one_line(exc)}); is the file complete and from VASP?"
        ) from exc
    return list(frames) if isinstance(frames, list) else [frames]


def _read_vasprun(path: Path, energy: str, allow_incomplete: bool) -> _Source:
    complete = _tail(path, 4096).rstrip().endswith(b"</modeling>")
    frames = _read_ase(path, "vasprun")  # of a truncated file: its complete <calculation> blocks
    if frames:
        _check_vasprun_rows(path, len(frames[0]))
    meta = _vasprun_meta(frames[0]) if frames else {}
    frames = _with_forces(frames, path)
    if not frames:
        raise ValueError(
            f"{path}: no ionic step with forces (truncated before the first step, or not a run that computes forces)"
        )
    source = _Source(path, "vasprun", [_labelled(f, path, k, energy) for k, f in enumerate(frames)], True, meta, energy)
    if not complete:
        msg = (
            f"{path}: incomplete vasprun.xml (no closing </modeling>: the run was killed or the file is truncated); "
            f"pass allow_incomplete=True to import its {len(frames)} complete ionic steps"
        )
        if not allow_incomplete:
            raise _Incomplete(msg, source)
    return source


def _check_vasprun_rows(path: Path, natoms: int) -> None:
    """ASE fills missing force rows with zeros; count the rows of each step's arrays."""
    import xml.etree.ElementTree as ET

    step = 0
    with _open(path, "rb") as fh:
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


def _read_outcar(path: Path, energy: str, allow_incomplete: bool) -> _Source:
    complete = _OUTCAR_FOOTER.encode() in _tail(path)
    frames = _with_forces(_read_ase(path, "outcar"), path)
    if not frames:
        raise ValueError(f"{path}: no complete ionic step (truncated or not an OUTCAR of a run that computes forces)")
    source = _Source(
        path, "outcar", [_labelled(f, path, k, energy) for k, f in enumerate(frames)], True, _outcar_meta(path), energy
    )
    if not complete:
        msg = (
            f"{path}: incomplete OUTCAR (no '{_OUTCAR_FOOTER}' block: the run was killed or the file is truncated); "
            f"pass allow_incomplete=True to import its {len(frames)} complete ionic steps"
        )
        if not allow_incomplete:
            raise _Incomplete(msg, source)
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


def _read_xdatcar(path: Path) -> _Source:
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
    return _Source(path, "xdatcar", out, False, steps=steps)


def _read_extxyz(path: Path, energy: str) -> _Source:
    try:
        with _open(path, "rb") as fh:
            blob = fh.read()
        frames = frames_from_bytes(blob)
    except Exception as exc:  # any parser failure becomes one line naming the file
        raise ValueError(f"{path}: cannot parse as extended XYZ ({type(exc).__name__}: {_one_line(exc)})") from exc
    if not frames:
        raise ValueError(f"{path}: no frames in the file")
    out = []
    for k, atoms in enumerate(frames):
        results = dict(atoms.calc.results) if atoms.calc is not None else {}
        results = {key: value for key, value in results.items() if key in all_properties and value is not None}
        if energy == "free" and "energy" in results:
            if "free_energy" not in results:
                raise ValueError(
                    f"{path}: frame {k} has no free_energy for energy='free'; use energy='sigma0' (the stored energy)"
                )
            results["energy"] = results["free_energy"]
        new = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        new.info = dict(atoms.info)
        for key, value in atoms.arrays.items():
            if key not in ("numbers", "positions"):
                new.arrays[key] = np.array(value)
        if results:
            new.calc = SinglePointCalculator(new, **results)
        out.append(new)
    return _Source(path, "extxyz", out, labelled=True)


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


def _validate(results: dict, natoms: int, path: Path, step: int, what: str) -> None:
    forces = results.get("forces")
    if forces is not None:
        forces = np.asarray(forces)
        if forces.shape != (natoms, 3):
            raise ValueError(
                f"{path}: {what} {step}: forces have shape {forces.shape}, expected ({natoms}, 3); the file is corrupt: fix or drop it"
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
    with _open(path, "rt") as fh:
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


def _check_xdatcar(xdatcar: Path, source: _Source, allow_extra: bool) -> None:
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
                f"{xdatcar}: species of configuration {k} differ from {source.path.name}; remove the XDATCAR or pass check_xdatcar=False"
            )
        _, lengths = find_mic(conf.positions - frame.positions, frame.cell, pbc=True)
        worst = float(np.max(lengths)) if len(lengths) else 0.0
        if worst >= XDATCAR_TOLERANCE:
            raise ValueError(
                f"{xdatcar}: configuration {k} (0-based step) differs from ionic step {k} of {source.path.name} by {worst:.3g} A "
                f"(tolerance {XDATCAR_TOLERANCE} A); the XDATCAR belongs to another run: remove it or pass check_xdatcar=False"
            )


def _xdatcar_numbers(path: Path) -> list[int]:
    pattern = re.compile(r"^\s*Direct configuration=\s*(\d+)")
    numbers = []
    with _open(path, "rt") as fh:
        for line in fh:
            if m := pattern.match(line):
                numbers.append(int(m.group(1)))
    return numbers


# --------------------------------------------------------------------------- selection and provenance


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


def _finish(source: _Source, base: Path | None, index, stride: int, require_labels: bool) -> list[Atoms]:
    name = _source_name(source.path, base)
    out = []
    for k in _select(len(source.frames), index, stride, source.path):
        atoms = source.frames[k]
        results = atoms.calc.results if atoms.calc is not None else {}
        what = "frame" if source.kind == "extxyz" else "ionic step"
        check_structure(atoms, f"{source.path}: {what} {k}", fix="fix the file or leave this step out (index=/stride)")
        _validate(results, len(atoms), source.path, k, what)
        has_labels = results.get("energy") is not None and results.get("forces") is not None
        if not has_labels and require_labels:
            if source.kind == "xdatcar":
                raise ValueError(
                    f"{source.path} holds positions only; energies and forces come from OUTCAR or vasprun.xml: add one, or pass require_labels=False"
                )
            raise ValueError(
                f"{source.path}: frame {k} has no energy and forces; label it first, or pass require_labels=False"
            )
        info = dict(atoms.info) if source.kind == "extxyz" else {}
        step = source.steps[k] if source.steps is not None else k
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
        info["frame_id"] = frame_id(atoms)
        atoms = _copy(atoms)
        atoms.info = info
        out.append(atoms)
    check_periodicity(out, str(source.path))
    return out


def _copy(atoms: Atoms) -> Atoms:
    new = atoms.copy()
    if atoms.calc is not None:
        results = {k: (np.array(v) if isinstance(v, np.ndarray) else v) for k, v in atoms.calc.results.items()}
        new.calc = SinglePointCalculator(new, **results)
    return new
