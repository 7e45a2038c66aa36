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
  :data:`~al_flows.pool_study.vasp_outputs.XDATCAR_TOLERANCE`), otherwise ValueError.
  A directory with only an XDATCAR gives frames WITHOUT labels, and only when
  ``require_labels=False``;
* one file: OUTCAR, vasprun.xml, XDATCAR, ``*.extxyz`` or ``*.xyz`` (labels from the
  file's calculator fields; ``al_info`` provenance written by
  :func:`al_flows.frames.extxyz.frames_to_bytes` is restored);
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
``model_id`` (``""``), ``deviation`` (NaN), ``frame_id`` (:func:`al_flows.frames.ids.frame_id`),
for VASP ``energy_convention`` and ``source_meta`` (INCAR values of the run such as
IBRION, NSW, POTIM, TEBEG, TEEND, SMASS, ISIF, ISMEAR, SIGMA, ENCUT where the file has
them). An extxyz frame keeps all its other ``info``; a ``source_file``/``source_step``/
``source_format`` it already had (from an earlier import) moves to
``origin_source_file``/``origin_source_step``/``origin_source_format``, and an
``explorer``/``round`` other than "import"/-1 to ``origin_explorer``/``origin_round``
(the first origin is kept), so a frame imported from VASP, written with
:func:`al_flows.frames.extxyz.frames_to_bytes` and imported again still names its
OUTCAR/vasprun.xml step.

Frame ids are content hashes of positions rounded to 1e-4 Angstrom; OUTCAR prints
positions to 1e-5 Angstrom, so the OUTCAR and vasprun.xml imports of one run can give
a few different ids (the structures agree to file precision).

Modules: the files (:mod:`al_flows.pool_study.import_files`), the VASP readers
(:mod:`al_flows.pool_study.vasp_outputs`), step selection, label checks and provenance
(:mod:`al_flows.pool_study.imported_frames`); the extxyz reader and the public functions are here.

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
import os
import warnings
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import all_properties
from ase.calculators.singlepoint import SinglePointCalculator

from al_flows.frames.extxyz import frames_from_bytes
from al_flows.pool_study.import_files import (
    FORMATS,
    SourceFrames,
    detect_format,
    has_vasp_outputs,
    one_line,
    open_file,
    strip_compression,
)
from al_flows.pool_study.imported_frames import pool_frames
from al_flows.pool_study.vasp_outputs import read_vasp_dir, read_vasp_file

__all__ = ["ENERGY_CONVENTIONS", "EXTXYZ_PATTERNS", "import_frames", "import_tree"]

#: accepted values of ``energy``
ENERGY_CONVENTIONS: tuple[str, ...] = ("sigma0", "free")
#: default extxyz file patterns of :func:`import_tree` (matched after stripping .gz/.bz2/.xz)
EXTXYZ_PATTERNS: tuple[str, ...] = ("*.extxyz", "*.xyz")


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
            f"{path}: no such file or directory; give a VASP run directory, an OUTCAR, vasprun.xml, XDATCAR or "
            ".extxyz/.xyz file"
        )
    base: Path | None
    if path.is_dir():
        if fmt == "extxyz":
            raise ValueError(f"{path}: fmt='extxyz' needs a file; use import_tree for a directory of extxyz files")
        base = Path(root) if root is not None else path
        source = read_vasp_dir(path, fmt, energy=energy, allow_incomplete=allow_incomplete, check_xdatcar=check_xdatcar)
    else:
        base = Path(root) if root is not None else None
        kind = fmt if fmt != "auto" else detect_format(path)
        source = _read_file(path, kind, energy=energy, allow_incomplete=allow_incomplete)
    return pool_frames(source, base, index, stride, require_labels)


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
            f"{root}: no such directory; import_tree needs the directory above the runs (use import_frames for one "
            "file)"
        )
    items: list[tuple[tuple[str, ...], Path, bool]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        rel = here.relative_to(root).parts
        if has_vasp_outputs(here, filenames):
            items.append((rel, here, True))
        for name in sorted(filenames):
            stem = strip_compression(name)
            if any(fnmatch.fnmatch(stem, p) for p in patterns):
                items.append((rel + (name,), here / name, False))
    if not items:
        raise ValueError(
            f"{root}: no VASP run directory (vasprun.xml, OUTCAR, XDATCAR) and no file matching {list(patterns)} "
            "below it"
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


# --------------------------------------------------------------------------- reading files


def _check_args(fmt: str, stride: int, energy: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, not {fmt!r}")
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride must be an int >= 1, not {stride!r}")
    if energy not in ENERGY_CONVENTIONS:
        raise ValueError(f"energy must be one of {ENERGY_CONVENTIONS}, not {energy!r}")


def _read_file(path: Path, kind: str, *, energy: str, allow_incomplete: bool) -> SourceFrames:
    if kind == "extxyz":
        return _read_extxyz(path, energy)
    return read_vasp_file(path, kind, energy=energy, allow_incomplete=allow_incomplete)


def _read_extxyz(path: Path, energy: str) -> SourceFrames:
    try:
        with open_file(path, "rb") as fh:
            blob = fh.read()
        frames = frames_from_bytes(blob)
    except Exception as exc:  # any parser failure becomes one line naming the file
        raise ValueError(f"{path}: cannot parse as extended XYZ ({type(exc).__name__}: {one_line(exc)})") from exc
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
    return SourceFrames(path, "extxyz", out, labelled=True)
