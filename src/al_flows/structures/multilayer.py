"""Cu-Ni (001) multilayer supercells with interface vacancies (Sprueill et al.; docs/methods.md).

An FCC conventional cubic cell (4 atoms, lattice constant ``a`` in Angstrom) is
repeated nx x ny x nz. Along [001] the supercell has 2*nz (001) atomic planes
spaced a/2: planes 0..nz-1 are Cu, planes nz..2nz-1 are Ni, so the periodic cell
holds two atomically abrupt interfaces. Planes are named from the interface
between the top Cu plane (index nz-1) and the bottom Ni plane (index nz):
``Nk`` is the k-th Ni plane going up (index nz-1+k), ``Ck`` the k-th Cu plane
going down (index nz-k).
"""

from __future__ import annotations

import re

import numpy as np
from ase import Atoms
from ase.build import bulk

VARIANTS = ("pristine", "VNi(N1)", "VNi(N2)", "VNi(N3)", "VCu(C1)", "VCu(C3)", "2VNi(N1)", "2VCu(C1)")

_VARIANT_RE = re.compile(r"^(?P<n>2?)V(?P<el>Cu|Ni)\((?P<plane>[CN]\d+)\)$")
_PLANE_RE = re.compile(r"^(?P<side>[CN])(?P<k>\d+)$")


def plane_of(name: str, nz: int) -> int:
    """0-based index (from the bottom) of plane ``name`` ('N1', 'C3', or a variant like 'VNi(N1)')
    in a multilayer with ``nz`` cells along [001] (2*nz planes)."""
    m = _VARIANT_RE.match(name)
    label = m.group("plane") if m else name
    p = _PLANE_RE.match(label)
    if p is None:
        raise ValueError(f"name: '{name}' is not a plane label like 'N1'/'C3' or a vacancy variant like 'VNi(N1)'")
    if nz < 1:
        raise ValueError(f"nz: must be >= 1, got {nz}")
    k = int(p.group("k"))
    if not 1 <= k <= nz:
        raise ValueError(f"name: plane {label} needs 1 <= {k} <= nz = {nz}")
    return nz - 1 + k if p.group("side") == "N" else nz - k


def _parse_variant(variant: str) -> tuple[int, str, str]:
    """(number of vacancies, element removed, plane label) of a vacancy variant."""
    m = _VARIANT_RE.match(variant)
    if variant not in VARIANTS or m is None:
        raise ValueError(f"variant: unknown variant '{variant}'; choose from {list(VARIANTS)}")
    side = m.group("plane")[0]
    el = m.group("el")
    if (el == "Ni") != (side == "N"):  # pragma: no cover - VARIANTS are consistent
        raise ValueError(f"variant: '{variant}' removes {el} from a plane of the other element")
    return (2 if m.group("n") else 1), el, m.group("plane")


def cuni_multilayer(size=(5, 5, 5), a: float = 3.58, variant: str = "pristine") -> Atoms:
    """Periodic Cu/Ni (001) multilayer of nx*ny*nz FCC cells (lattice constant ``a``, Angstrom).

    Atoms are ordered by plane (bottom to top), then y, then x. ``arrays['plane']`` holds
    each atom's 0-based plane index; ``info`` holds variant, size and lattice_constant.
    Vacancy variants remove the site of the named plane nearest the plane's in-plane
    centre; di-vacancies also remove a nearest in-plane neighbour (distance a/sqrt(2)).
    """
    try:
        size = tuple(int(n) for n in size)
    except (TypeError, ValueError):
        raise ValueError(f"size: must be three positive integers (nx, ny, nz), got {size!r}") from None
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"size: must be three positive integers (nx, ny, nz), got {size!r}")
    if not (np.isfinite(a) and a > 0):
        raise ValueError(f"a: lattice constant must be a positive number of Angstrom, got {a!r}")
    if variant != "pristine":
        n_vac, element, label = _parse_variant(variant)
        if int(label[1:]) > size[2]:
            raise ValueError(
                f"variant: '{variant}' needs plane {label} but size nz={size[2]} has only {size[2]} {element} planes"
            )
    elif variant not in VARIANTS:  # pragma: no cover
        raise ValueError(f"variant: unknown variant '{variant}'")
    nx, ny, nz = size

    atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat(size)
    plane = np.rint(atoms.positions[:, 2] / (a / 2)).astype(int)
    grid = np.rint(atoms.positions[:, :2] / (a / 2)).astype(int)
    order = np.lexsort((grid[:, 0], grid[:, 1], plane))
    atoms = atoms[order]
    plane = plane[order]
    atoms.symbols[plane >= nz] = "Ni"
    atoms.new_array("plane", plane.astype(int))
    atoms.pbc = True

    if variant != "pristine":
        target = plane_of(label, nz)
        idx = np.flatnonzero(plane == target)
        centre = np.array([nx * a / 2, ny * a / 2])
        d_centre = np.round(np.linalg.norm(atoms.positions[idx, :2] - centre, axis=1), 6)
        first = int(idx[np.argmin(d_centre)])  # ties: lowest index (atoms are ordered)
        remove = [first]
        if n_vac == 2:
            others = idx[idx != first]
            d_nn = atoms.get_distances(first, others, mic=True)
            nn = others[np.isclose(d_nn, a / np.sqrt(2), atol=1e-6)]
            d_nn_centre = np.round(np.linalg.norm(atoms.positions[nn, :2] - centre, axis=1), 6)
            remove.append(int(nn[np.argmin(d_nn_centre)]))
        del atoms[remove]

    atoms.info["variant"] = variant
    atoms.info["size"] = size
    atoms.info["lattice_constant"] = float(a)
    return atoms
