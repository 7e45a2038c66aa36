"""Crystals cut along a low-index plane into two halves that are pulled apart rigidly along the
plane's normal (the displaced-halves initial structures of DP-GEN, Zhang et al.; docs/methods.md).

- :func:`oriented_cell`: a periodic bulk cell of ``lattice`` whose first two vectors span the
  plane and whose third is along its normal (perpendicular to both), its origin moved along the
  normal onto the layer after the widest gap between layers, repeated so that in-plane edges are
  at least ``min_width`` and at least ``min_layers`` atomic layers lie along the normal.
- :func:`displaced_halves`: that cell, its layers split into two halves at the widest gap between
  layers nearest the middle (so e.g. hcp {10-10} and diamond {111} are cut between, not through,
  their close pairs of layers); the upper half is moved by ``distance`` along the normal and the
  third cell vector grows by the same vector, so the cell stays periodic with exactly one opened
  interface (a gap of ``distance`` plus the layer spacing) and the lower half does not move.

Planes: cubic lattices (fcc, bcc, sc, diamond) "100", "110", "111" of the conventional cube
(normals along [100], [110], [111]); hcp "0001", "10-10", "11-20" (normals along z, and, of
ASE's orthorhombic hcp cell with x along a1, the (01-10) plane normal to y and the (2-1-10)
plane normal to x: members of the {10-10} and {11-20} families). Lengths in Angstrom.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from ase import Atoms
from ase.build import bulk

__all__ = ["A_OVER_NN", "CUBIC_PLANES", "HCP_PLANES", "CubicPlane", "HcpPlane", "oriented_cell", "displaced_halves"]

CubicPlane = Literal["100", "110", "111"]
HcpPlane = Literal["0001", "10-10", "11-20"]
# rows: the new cell vectors in units of the conventional (cubic or orthorhombic hcp) cell vectors
CUBIC_PLANES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "100": ((0, 1, 0), (0, 0, 1), (1, 0, 0)),
    "110": ((0, 0, 1), (1, -1, 0), (1, 1, 0)),
    "111": ((1, -1, 0), (0, 1, -1), (1, 1, 1)),
}
HCP_PLANES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "0001": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "11-20": ((0, 1, 0), (0, 0, 1), (1, 0, 0)),
    "10-10": ((0, 0, 1), (1, 0, 0), (0, 1, 0)),
}
# lattice constant a / nearest-neighbour distance (hcp: ideal c/a = sqrt(8/3))
A_OVER_NN = {"fcc": math.sqrt(2.0), "hcp": 1.0, "bcc": 2.0 / math.sqrt(3.0), "sc": 1.0, "diamond": 4.0 / math.sqrt(3.0)}
_TOL = 1e-6  # Angstrom, atoms closer than this along the normal share a layer


def _conventional(lattice: str, nn_distance: float, symbol: str) -> Atoms:
    a = nn_distance * A_OVER_NN[lattice]
    if lattice == "hcp":
        return bulk(symbol, "hcp", a=a, c=a * math.sqrt(8.0 / 3.0), orthorhombic=True)
    return bulk(symbol, lattice, a=a, cubic=True)


def _layers(heights: np.ndarray, height: float) -> np.ndarray:
    """Distinct layer heights (sorted, in [0, height)) of the atoms' heights along the normal."""
    h = np.sort(np.mod(heights, height))
    keep = np.concatenate([[True], np.diff(h) > _TOL])
    layers = h[keep]
    if len(layers) > 1 and layers[-1] > height - _TOL:  # the last layer is the first one's image
        layers = layers[:-1]
    return layers


def oriented_cell(
    lattice: str, plane: str, nn_distance: float, min_layers: int = 4, min_width: float = 4.5, symbol: str = "Al"
) -> Atoms:
    """Perfect periodic ``lattice`` crystal (nearest-neighbour distance ``nn_distance``) in a cell whose
    third vector is normal to ``plane``, repeated to >= ``min_layers`` layers and in-plane edges
    >= ``min_width`` (Angstrom)."""
    table = HCP_PLANES if lattice == "hcp" else CUBIC_PLANES
    if plane not in table:
        raise ValueError(f"plane {plane!r} of {lattice}: use one of {sorted(table)}")
    conv = _conventional(lattice, nn_distance, symbol)
    m = np.array(table[plane], dtype=float)
    cell = m @ conv.cell[:]
    span = int(np.abs(m).sum(axis=0).max()) + 1  # conventional translations that cover the new cell
    grid = np.array(
        [(i, j, k) for i in range(-span, span + 1) for j in range(-span, span + 1) for k in range(-span, span + 1)]
    )
    pos = (conv.positions[None, :, :] + (grid @ conv.cell[:])[:, None, :]).reshape(-1, 3)
    frac = np.linalg.solve(cell.T, pos.T).T
    inside = np.all((frac > -1e-9) & (frac < 1 - 1e-9), axis=1)
    n_expected = round(abs(np.linalg.det(m))) * len(conv)
    if inside.sum() != n_expected:  # a covering error, not a user error
        raise RuntimeError(f"{lattice} {plane}: {inside.sum()} atoms in the oriented cell, expected {n_expected}")
    atoms = Atoms(symbol * int(inside.sum()), positions=pos[inside], cell=cell, pbc=True)
    height = float(np.linalg.norm(cell[2]))
    normal = cell[2] / height
    layers = _layers(atoms.positions @ normal, height)
    gaps = np.diff(np.concatenate([layers, [layers[0] + height]]))
    origin = layers[(int(np.argmax(gaps.round(6))) + 1) % len(layers)]  # the layer after the widest gap
    atoms.positions = atoms.positions - origin * normal
    atoms.wrap()
    reps = [max(1, math.ceil(min_width / np.linalg.norm(cell[i]) - 1e-9)) for i in range(2)]
    return atoms.repeat((reps[0], reps[1], max(1, math.ceil(min_layers / len(layers)))))


def displaced_halves(base: Atoms, distance: float) -> tuple[Atoms, np.ndarray, np.ndarray]:
    """(displaced atoms, mask of the moved upper half, shift vector): ``base`` (an :func:`oriented_cell`)
    cut at the widest gap between layers nearest its middle, the upper half moved by ``distance``
    (Angstrom) along the normal and the third cell vector grown by the same shift."""
    cell = base.cell[:].copy()
    height = float(np.linalg.norm(cell[2]))
    normal = cell[2] / height
    h = base.positions @ normal
    layers = _layers(h, height)
    if len(layers) < 2:
        raise ValueError("the cell has one layer along the normal; raise min_layers")
    inner = np.diff(layers).round(6)
    cut = min(range(len(inner)), key=lambda i: (-inner[i], abs(i + 1 - len(layers) / 2)))
    top = h > 0.5 * (layers[cut] + layers[cut + 1])
    atoms = base.copy()
    shift = distance * normal
    atoms.positions[top] += shift
    cell[2] += shift
    atoms.set_cell(cell, scale_atoms=False)
    return atoms, top, shift
