"""Labelled frames as extended XYZ text, the store's internal format (``*_blob`` fields of job outputs).

A frame is an :class:`ase.Atoms` whose labels live in a SinglePointCalculator: energy (eV), forces
(eV/Angstrom) and optionally stress (eV/Angstrom^3); positions and cell in Angstrom.

ASE's extxyz writer drops ``None`` and empty strings and re-types strings that look
like numbers, so :func:`frames_to_bytes` also stores the complete ``info`` dict as base64-encoded
JSON under the key ``al_info`` (:func:`al_flows.frames.info.encode_info`);
:func:`frames_from_bytes` restores it exactly (NaN, "", tuples, numpy arrays included).
Files for users are :mod:`al_flows.frames.extxyz_export`.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import cast

from ase import Atoms
from ase.calculators.calculator import all_properties
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

from al_flows.frames.info import B64_PREFIX, INFO_KEY, decode_info, encode_info, plain_info
from al_flows.frames.labels import frame_labels


def frames_to_bytes(frames: Iterable[Atoms]) -> bytes:
    """Extended XYZ text (UTF-8) of ``frames``: positions/cell (Angstrom), arrays,
    calculator results (energy eV, forces eV/Angstrom, stress eV/Angstrom^3), full info."""
    buf = io.StringIO()
    for atoms in frames:
        out = atoms.copy()
        out.info = plain_info(atoms.info)
        out.info[INFO_KEY] = encode_info(atoms.info)
        results = {k: v for k, v in frame_labels(atoms).items() if k in all_properties}
        if results:
            out.calc = SinglePointCalculator(out, **results)
        write(buf, out, format="extxyz")
    return buf.getvalue().encode("utf-8")


def frames_text(frames) -> str:
    """Frames as extxyz text (provenance and labels included) for a ``*_blob`` field of a job
    output: blobs are text so that every store keeps them intact (maggma's GridFSStore
    JSON-encodes what it stores)."""
    return frames_to_bytes(frames).decode("utf-8")


def frames_from_bytes(blob: bytes | str) -> list[Atoms]:
    """Inverse of :func:`frames_to_bytes`; labels come back in a SinglePointCalculator."""
    text = blob.decode("utf-8") if isinstance(blob, (bytes, bytearray)) else str(blob)
    if not text.strip():
        return []
    frames = cast(list[Atoms], read(io.StringIO(text), index=":", format="extxyz"))  # a slice index: a list
    for atoms in frames:
        encoded = atoms.info.get(INFO_KEY)
        if isinstance(encoded, str) and encoded.startswith(B64_PREFIX):
            atoms.info = decode_info(encoded)
        else:
            atoms.info.pop(INFO_KEY, None)
    return frames
