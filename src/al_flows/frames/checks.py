"""Checks of structures and labelled frames before they are used (no workflow code).

Every check raises :class:`StructureError` (a ValueError) with ONE line: which structure or
frame (``name``, e.g. ``initial.structures[0] (structure 'POSCAR-0')`` or
``data/pool.extxyz: frame 12``), what is wrong, and what to do about it.

What is checked, and the thresholds (Angstrom):

- **finite numbers**: positions and cell must be finite (no NaN/inf);
- **cell** (:func:`check_cell`): along every periodic direction the cell vector must be non-zero
  and the cell's perpendicular height ``h_i = V / |a_j x a_k|`` at least :data:`MIN_CELL_HEIGHT`
  (0.5 A). Heights are NOT compared with the model cutoff: the model
  (:func:`al_flows.potential.inputs.frame_inputs`) and the structure analysis use a full periodic
  neighbour list (matscipy) that counts every image within the cutoff, so a cell thinner than
  the cutoff, or than twice the cutoff, sheared or not, is handled exactly (tests/
  test_input_validation.py compares it with an explicit supercell). A height below 0.5 A is
  no crystal in Angstrom (wrong units, a collapsed cell, or a badly non-reduced basis, which
  makes every neighbour list search thousands of images), hence an error. A partly periodic
  frame (slab, wire) must still have three independent cell vectors, since matscipy needs
  them; a fully non-periodic frame may have no cell;
- **overlapping atoms** (:func:`check_overlaps`): no two atoms, including an atom and its own
  periodic image, closer than :data:`MIN_DISTANCE_FRACTION` (0.5) times the sum of their
  covalent radii (``ase.data.covalent_radii``): 1.32 A for Cu-Cu, 1.21 A for Al-Al,
  0.31 A for H-H. Real structures, high-temperature MD frames and DP-GEN's compressed
  cells stay well above this (Cu-Cu nearest neighbours are 2.55 A); duplicated atoms,
  fractional coordinates read as Cartesian or a cell in the wrong unit fall below it.
  Pairs come from a real neighbour list with every periodic image, not from a
  minimum-image convention, which is wrong in sheared (triclinic) cells;
- **elements** (:func:`check_elements`): every element of a frame must be in the campaign's
  ``elements`` (the model's element list); :func:`labeller_elements` gives the elements a
  labeller covers where that is known (EMT: the elements of ``ase.calculators.emt.parameters``);
- **labels** (:func:`check_labels`): energy and forces present, forces of shape (N, 3), energy,
  forces and stress finite;
- **datasets** (:func:`check_training_frames`): at least one frame, every frame labelled and
  finite, elements covered, and one periodicity (``pbc``) for all frames.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols, covalent_radii

from al_flows.frames.neighbours import neighbour_list

__all__ = [
    "MIN_CELL_HEIGHT",
    "MIN_DISTANCE_FRACTION",
    "StructureError",
    "cell_heights",
    "check_cell",
    "check_elements",
    "check_finite",
    "check_labels",
    "check_overlaps",
    "check_periodicity",
    "check_structure",
    "check_training_frames",
    "close_pairs",
    "describe",
    "labeller_elements",
    "uncovered_elements",
]

#: smallest allowed perpendicular height (Angstrom) of a cell along a periodic direction
MIN_CELL_HEIGHT = 0.5
#: two atoms closer than this fraction of the sum of their covalent radii overlap
MIN_DISTANCE_FRACTION = 0.5
_AXES = "abc"


class StructureError(ValueError):
    """A structure or frame that cannot be used; the one-line message names it and the fix."""


# --------------------------------------------------------------------------- naming


def describe(atoms: Atoms, index: int | None = None) -> str:
    """A short name of a frame: its position ``index`` (if given) and what ``info`` says about it
    (structure_id, source_file/source_step, frame_id)."""
    info = atoms.info
    parts = []
    if info.get("structure_id"):
        parts.append(f"structure '{info['structure_id']}'")
    if info.get("source_file"):
        step = info.get("source_step")
        parts.append(f"{info['source_file']}" + (f" step {step}" if step is not None else ""))
    if info.get("frame_id") and not parts:
        parts.append(f"frame_id {info['frame_id']}")
    head = f"frame {index}" if index is not None else "structure"
    return f"{head} ({', '.join(parts)})" if parts else head


def _symbols(numbers) -> list[str]:
    return [chemical_symbols[int(z)] for z in numbers]


# --------------------------------------------------------------------------- geometry


def cell_heights(cell) -> np.ndarray:
    """Perpendicular heights (Angstrom) of a cell: ``h_i = |V| / |a_j x a_k|``, the distance
    between the lattice planes spanned by the other two vectors; 0 where those two are parallel
    or zero. A periodic neighbour search within ``r`` must look ``ceil(r / h_i)`` images along i."""
    cell = np.asarray(cell, dtype=float).reshape(3, 3)
    volume = abs(float(np.linalg.det(cell)))
    heights = np.zeros(3)
    for i in range(3):
        area = float(np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])))
        heights[i] = volume / area if area > 0 else 0.0
    return heights


def check_finite(atoms: Atoms, name: str) -> None:
    """Positions and cell must be finite numbers."""
    pos = np.asarray(atoms.positions, dtype=float)
    bad = np.flatnonzero(~np.isfinite(pos).all(axis=1))
    if len(bad):
        raise StructureError(
            f"{name}: non-finite position(s) (NaN or inf) of atom(s) "
            f"{bad[:5].tolist()}{' ...' if len(bad) > 5 else ''}; "
            "fix the coordinates or drop the structure"
        )
    if not np.isfinite(np.asarray(atoms.cell.array, dtype=float)).all():
        raise StructureError(f"{name}: non-finite cell (NaN or inf); fix the cell or drop the structure")


def check_cell(atoms: Atoms, name: str, min_height: float = MIN_CELL_HEIGHT) -> None:
    """Along every periodic direction a non-zero cell vector and a height >= ``min_height``
    (Angstrom); a partly periodic frame needs three independent cell vectors. See the module doc."""
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if not pbc.any():
        return
    cell = np.asarray(atoms.cell.array, dtype=float)
    lengths = np.linalg.norm(cell, axis=1)
    zero = [_AXES[i] for i in range(3) if pbc[i] and lengths[i] == 0]
    if zero:
        raise StructureError(
            f"{name}: periodic along {'/'.join(zero)} but the cell vector {'/'.join(zero)} is zero "
            f"(pbc {pbc.tolist()}); "
            "give the full cell (extxyz: Lattice=\"...\"; POSCAR: lattice vectors) or make that direction non-periodic"
        )
    heights = cell_heights(cell)
    if heights.min() <= 0:
        if pbc.all():
            raise StructureError(
                f"{name}: the cell has zero volume (cell vectors {np.round(cell, 4).tolist()} are linearly dependent); "
                "give three independent cell vectors"
            )
        free = [_AXES[i] for i in range(3) if not pbc[i]]
        raise StructureError(
            f"{name}: partly periodic (pbc {pbc.tolist()}) with a degenerate cell (zero volume); the neighbour list "
            f"needs a cell vector along the non-periodic direction {'/'.join(free)}: add vacuum there, e.g. "
            "atoms.center(vacuum=10, axis=...)"
        )
    thin = [i for i in range(3) if pbc[i] and heights[i] < min_height]
    if thin:
        i = thin[0]
        raise StructureError(
            f"{name}: the cell is only {heights[i]:.3g} A high along periodic direction {_AXES[i]} "
            f"(minimum {min_height} A; heights {np.round(heights, 3).tolist()} A): wrong length unit, a collapsed "
            "cell, or a badly skewed basis: fix the cell or Niggli-reduce it (ase.build.niggli_reduce)"
        )


def _pair_threshold(zi, zj, fraction: float) -> np.ndarray:
    return fraction * (covalent_radii[zi] + covalent_radii[zj])


def close_pairs(
    atoms: Atoms, fraction: float = MIN_DISTANCE_FRACTION
) -> list[tuple[int, int, float, float, tuple[int, int, int]]]:
    """Pairs closer than ``fraction`` x (sum of covalent radii), every periodic image included:
    ``(i, j, distance, threshold, shift)`` with i <= j (Angstrom; ``shift`` the image of j in
    cell vectors, non-zero for i == j: an atom and its own image), closest relative to the
    threshold first. Uses a full neighbour list (:func:`al_flows.frames.neighbours.neighbour_list`),
    which is exact in any cell shape; call :func:`check_cell` first."""
    n = len(atoms)
    if n == 0:
        return []
    numbers = np.asarray(atoms.numbers)
    cutoff = float(2 * fraction * covalent_radii[np.unique(numbers)].max())
    if cutoff <= 0:
        return []
    i, j, d, shift = neighbour_list("ijdS", atoms, cutoff)
    i, j, d, shift = (
        np.asarray(i, dtype=int),
        np.asarray(j, dtype=int),
        np.asarray(d, dtype=float),
        np.asarray(shift, dtype=int),
    )
    keep = (d < _pair_threshold(numbers[i], numbers[j], fraction)) & ((i < j) | ((i == j) & _positive(shift)))
    i, j, d, shift = i[keep], j[keep], d[keep], shift[keep]
    thr = _pair_threshold(numbers[i], numbers[j], fraction)
    order = np.argsort(d / thr, kind="stable")
    return [
        (int(i[k]), int(j[k]), float(d[k]), float(thr[k]), (int(shift[k, 0]), int(shift[k, 1]), int(shift[k, 2])))
        for k in order
    ]


def _positive(shift: np.ndarray) -> np.ndarray:
    """One of each +/- pair of self-image shifts: the first non-zero component positive."""
    first = np.where(shift[:, 0] != 0, shift[:, 0], np.where(shift[:, 1] != 0, shift[:, 1], shift[:, 2]))
    return first > 0


def check_overlaps(atoms: Atoms, name: str, fraction: float = MIN_DISTANCE_FRACTION, fix: str | None = None) -> None:
    """No two atoms (an atom and its own periodic image included) closer than ``fraction`` x
    the sum of their covalent radii; the error names the closest such pair. ``fix``: what to
    do, defaults to fixing the coordinates or dropping the structure."""
    pairs = close_pairs(atoms, fraction)
    if not pairs:
        return
    i, j, d, thr, shift = pairs[0]
    sym = atoms.get_chemical_symbols()
    more = f" ({len(pairs)} such pairs)" if len(pairs) > 1 else ""
    limit = f"closer than {thr:.3g} A ({fraction:g} x the sum of their covalent radii){more}"
    fix = (
        fix
        or "fix the coordinates (duplicated atom? fractional coordinates read as Cartesian? cell in another unit?) or "
        "drop the structure"
    )
    if i == j:
        raise StructureError(
            f"{name}: atom {i} ({sym[i]}) is {d:.3g} A from its own periodic image {list(shift)}, {limit}; {fix}"
        )
    across = f" across the periodic boundary (image {list(shift)})" if any(shift) else ""
    raise StructureError(f"{name}: atoms {i} ({sym[i]}) and {j} ({sym[j]}) are {d:.3g} A apart{across}, {limit}; {fix}")


# --------------------------------------------------------------------------- elements


def labeller_elements(calculator: str) -> frozenset[str] | None:
    """Elements an ASE labeller covers, where al_flows knows them: EMT (``'emt'`` or
    ``'ase.calculators.emt.EMT'``) has parameters for the elements of
    ``ase.calculators.emt.parameters`` (Al, Cu, Ag, Au, Ni, Pd, Pt, H, C, N, O). None: unknown
    (any other calculator; it is not checked)."""
    if calculator.lower() in ("emt", "ase.calculators.emt.emt"):
        from ase.calculators.emt import parameters

        return frozenset(parameters)
    return None


def uncovered_elements(calculator: str, elements: Iterable[str]) -> list[str]:
    """The ``elements`` the labeller ``calculator`` has no parameters for ([] when unknown)."""
    covered = labeller_elements(calculator)
    if covered is None:
        return []
    return [e for e in elements if e not in covered]


def check_elements(atoms: Atoms, elements: Sequence[str], name: str, fix: str | None = None) -> None:
    """Every element of ``atoms`` must be in ``elements`` (the campaign's / model's list)."""
    allowed = {atomic_numbers[e] if isinstance(e, str) else int(e) for e in elements}
    extra = sorted({int(z) for z in np.unique(atoms.numbers)} - allowed)
    if extra:
        names = _symbols(extra)
        listed = [e if isinstance(e, str) else chemical_symbols[int(e)] for e in elements]
        fix = (
            fix
            or f"add {', '.join(names)} to elements: in the campaign file (and use a labeller that covers it) or drop "
            "the structure"
        )
        raise StructureError(f"{name}: contains {', '.join(names)}, not in elements {listed}; {fix}")


# --------------------------------------------------------------------------- labels


def _results(atoms: Atoms) -> dict:
    calc = atoms.calc
    return dict(getattr(calc, "results", {}) or {}) if calc is not None else {}


def check_labels(atoms: Atoms, name: str) -> None:
    """Energy and forces present, forces of shape (N, 3); energy, forces (and stress) finite."""
    results = _results(atoms)
    missing = [k for k in ("energy", "forces") if results.get(k) is None]
    if missing:
        raise StructureError(
            f"{name}: missing label(s) {missing}; label it (energy and forces) before training on it or adding it to a "
            "dataset"
        )
    forces = np.asarray(results["forces"])
    if forces.shape != (len(atoms), 3):
        raise StructureError(
            f"{name}: forces have shape {forces.shape}, expected ({len(atoms)}, 3) for its {len(atoms)} atoms; relabel "
            "it or drop it"
        )
    try:
        energy = float(np.asarray(results["energy"]).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        raise StructureError(f"{name}: energy {results['energy']!r} is not a number; relabel it or drop it") from None
    if not math.isfinite(energy):
        raise StructureError(f"{name}: non-finite energy ({energy}); relabel it or drop it")
    if not np.isfinite(forces.astype(float)).all():
        bad = np.flatnonzero(~np.isfinite(forces.astype(float)).all(axis=1))
        raise StructureError(
            f"{name}: non-finite forces on atom(s) {bad[:5].tolist()}{' ...' if len(bad) > 5 else ''}; relabel it or "
            "drop it"
        )
    stress = results.get("stress")
    if stress is not None and not np.isfinite(np.asarray(stress, dtype=float)).all():
        raise StructureError(f"{name}: non-finite stress; relabel it or drop it")


# --------------------------------------------------------------------------- whole structures and datasets


def check_structure(
    atoms: Atoms,
    name: str,
    elements: Sequence[str] | None = None,
    fraction: float = MIN_DISTANCE_FRACTION,
    fix: str | None = None,
) -> None:
    """All geometric checks of one structure: no atoms, finite numbers, cell, overlapping atoms,
    and (given ``elements``) its elements. ``fix`` replaces the generic advice on overlaps."""
    if len(atoms) == 0:
        raise StructureError(f"{name}: no atoms; drop the empty structure")
    check_finite(atoms, name)
    check_cell(atoms, name)
    if elements is not None:
        check_elements(atoms, elements, name)
    check_overlaps(atoms, name, fraction, fix)


def check_periodicity(frames: Sequence[Atoms], where: str) -> None:
    """All frames share one ``pbc``: a potential trained on periodic and non-periodic frames
    together mixes bulk and cluster energies, and a frame that lost its cell (extxyz without
    ``Lattice=``, a plain xyz file) is the usual cause."""
    if not frames:
        return
    first = tuple(bool(p) for p in frames[0].pbc)
    for k, atoms in enumerate(frames):
        pbc = tuple(bool(p) for p in atoms.pbc)
        if pbc != first:
            raise StructureError(
                f"{where}: {describe(atoms, k)} has pbc {list(pbc)} but {describe(frames[0], 0)} has {list(first)}; "
                "mixed periodicity: give every frame its cell and pbc (extxyz: Lattice=\"...\" pbc=\"T T T\") or drop "
                "the odd frames"
            )


def check_training_frames(
    frames: Sequence[Atoms], elements: Sequence[str] | None = None, where: str = "training frames"
) -> None:
    """What training needs of its frames: at least one, each with finite positions and labels of
    the right shape, elements in ``elements`` (when given) and one periodicity for all. Cheap
    (no neighbour list), so it runs for every Trainer."""
    if not frames:
        raise StructureError(
            f"{where}: no frames to train on; label structures first (initial: n_rattled / label_structures) "
            "or check that the pool sources hold labelled frames"
        )
    for k, atoms in enumerate(frames):
        name = f"{where}: {describe(atoms, k)}"
        if len(atoms) == 0:
            raise StructureError(f"{name}: no atoms; drop the empty frame")
        check_finite(atoms, name)
        check_labels(atoms, name)
        if elements:
            check_elements(atoms, elements, name, fix="add it to elements: in the campaign file or drop those frames")
    check_periodicity(frames, where)
