"""Files of imported DFT data: compression, reading a file's tail, telling its format, finding a
run directory's VASP outputs, and what one file yields (:class:`SourceFrames`).

Compressed files (``.gz``, ``.bz2``, ``.xz``) are read through ASE's ``open_with_compression``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ase import Atoms

__all__ = [
    "FORMATS",
    "VASP_NAMES",
    "COMPRESSION",
    "SourceFrames",
    "IncompleteRunError",
    "strip_compression",
    "has_vasp_outputs",
    "one_line",
    "open_file",
    "file_tail",
    "detect_format",
    "find_vasp_outputs",
]

#: accepted values of ``fmt`` (``"auto"`` guesses from the file name, then the content)
FORMATS: tuple[str, ...] = ("auto", "vasprun", "outcar", "xdatcar", "extxyz")

VASP_NAMES = {"vasprun": "vasprun.xml", "outcar": "OUTCAR", "xdatcar": "XDATCAR"}
COMPRESSION = ("", ".gz", ".bz2", ".xz")


@dataclass
class SourceFrames:
    """Frames read from one file: ``frames[k]`` is ionic step ``k`` of ``path``."""

    path: Path
    kind: str
    frames: list[Atoms]
    labelled: bool
    meta: dict = field(default_factory=dict)
    energy: str | None = None  # energy convention for VASP files
    steps: list[int] | None = None  # step label of each frame when not its position (XDATCAR, NBLOCK > 1)


class IncompleteRunError(ValueError):
    """A file whose complete ionic steps parsed but which the run did not finish."""

    def __init__(self, message: str, source: SourceFrames):
        super().__init__(message)
        self.source = source


def strip_compression(name: str) -> str:
    """``name`` less a .gz/.bz2/.xz suffix."""
    for suffix in COMPRESSION[1:]:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def has_vasp_outputs(directory: Path, filenames) -> bool:
    """Whether ``filenames`` (of ``directory``) include a vasprun.xml, OUTCAR or XDATCAR, plain or compressed."""
    names = {strip_compression(n) for n in filenames}
    return any(name in names for name in VASP_NAMES.values())


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line, at most 200 characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def open_file(path: Path, mode: str = "rb"):
    """``path`` opened (decompressed when compressed) in ``mode``."""
    from ase.io.formats import open_with_compression

    return open_with_compression(str(path), mode)


def file_tail(path: Path, nbytes: int = 16384) -> bytes:
    """The last ``nbytes`` of the (decompressed) file."""
    if strip_compression(path.name) == path.name:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - nbytes))
            return fh.read()
    tail = b""
    with open_file(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            tail = (tail + chunk)[-nbytes:]
    return tail


def detect_format(path: Path) -> str:
    """The format of a file (one of :data:`FORMATS` but auto) from its name, else its first 4 kB."""
    name = strip_compression(path.name)
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
        with open_file(path, "rb") as fh:
            head = fh.read(4096).decode("latin-1")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({one_line(exc)})") from exc
    first_line = head.strip().splitlines()[0] if head.strip() else ""
    if "<modeling>" in head:
        return "vasprun"
    if first_line.startswith("vasp."):
        return "outcar"
    if "Direct configuration=" in head:
        return "xdatcar"
    raise ValueError(f"{path}: cannot tell the format from the name or content; pass fmt= one of {FORMATS[1:]}")


def find_vasp_outputs(directory: str | os.PathLike) -> dict[str, Path]:
    """``{"vasprun"|"outcar"|"xdatcar": path}`` of the VASP outputs in ``directory``
    (plain or .gz/.bz2/.xz). ValueError when one exists both plain and compressed."""
    directory = Path(directory)
    found: dict[str, Path] = {}
    for kind, name in VASP_NAMES.items():
        hits = [directory / (name + suffix) for suffix in COMPRESSION if (directory / (name + suffix)).is_file()]
        if len(hits) > 1:
            raise ValueError(f"{directory}: both {' and '.join(h.name for h in hits)}; keep one of them")
        if hits:
            found[kind] = hits[0]
    return found
