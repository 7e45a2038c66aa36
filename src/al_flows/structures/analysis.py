"""Local structure analysis of Cu-Ni configurations: common neighbour analysis (CNA),
Cu-Ni intermixing (excess unlike bonds; intermixed fraction) and vacancy detection with each
vacancy cluster's chemical neighbourhood. All lengths are in Angstrom.

Neighbours come from ``matscipy.neighbours.neighbour_list`` with every periodic image,
so small and triclinic (sheared) periodic cells are handled; CNA works on neighbour
*vectors*, hence a neighbour seen through several images counts once per image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from matscipy.neighbours import neighbour_list

LABELS = ("fcc", "hcp", "bcc", "other")
_CHUNK = 256  # atoms per vectorised CNA block (memory ~ chunk * n**4 floats)


def _nn_cutoff(atoms: Atoms) -> float:
    """Default CNA cutoff (Angstrom): halfway between the 1st and 2nd FCC shells,
    0.5*(1 + 1/sqrt(2)) * a_est with a_est = sqrt(2) * median nearest-neighbour distance."""
    n = len(atoms)
    vol = abs(atoms.cell.volume) if atoms.cell.rank == 3 else np.prod(np.ptp(atoms.positions, axis=0) + 1.0)
    search = 2.0 * (vol / n) ** (1.0 / 3.0)
    for _ in range(6):
        i, d = neighbour_list("id", atoms, search)
        if len(i):
            nearest = np.full(n, np.inf)
            np.minimum.at(nearest, i, d)
            nearest = nearest[np.isfinite(nearest)]
            if len(nearest) >= max(1, n // 2):
                break
        search *= 2.0
    else:
        raise ValueError("atoms: could not find nearest neighbours to estimate a CNA cutoff")
    return 0.5 * (1.0 + 1.0 / np.sqrt(2.0)) * np.sqrt(2.0) * float(np.median(nearest))


def _cna_triplets(vectors: np.ndarray, cutoff: float) -> np.ndarray:
    """CNA indices for atoms sharing coordination n: ``vectors`` (m, n, 3) neighbour vectors
    (Angstrom). Returns (m, n, 3) ints: common neighbours, bonds among them, and the largest
    number of bonds in one connected cluster of that bond graph (OVITO's 'longest chain')."""
    n = vectors.shape[1]
    diff = vectors[:, :, None, :] - vectors[:, None, :, :]
    adj = (np.einsum("mabk,mabk->mab", diff, diff) < cutoff**2) & ~np.eye(n, dtype=bool)
    adjf = adj.astype(np.float32)
    n_cn = adj.sum(-1)
    # bonds[m, a, b, c]: b, c both common neighbours of the pair (centre, a) and bonded
    bonds = adjf[:, :, :, None] * adjf[:, :, None, :] * adjf[:, None, :, :]
    n_bonds = np.rint(bonds.sum((-1, -2)) / 2).astype(int)
    reach = np.minimum(bonds + np.eye(n, dtype=np.float32), 1.0)
    for _ in range(int(np.ceil(np.log2(max(n, 2))))):  # transitive closure by squaring
        reach = np.minimum(reach @ reach, 1.0)
    degree = bonds.sum(-1)  # (m, a, b)
    cluster_bonds = np.einsum("mabc,mac->mab", reach, degree) / 2
    chain = np.rint(cluster_bonds.max(-1)).astype(int)
    return np.stack([n_cn, n_bonds, chain], axis=-1)


def _classify(trip: np.ndarray) -> np.ndarray:
    """Labels for (m, n, 3) CNA triplets of m atoms with n neighbours each."""
    n = trip.shape[1]
    labels = np.full(len(trip), "other", dtype=object)

    def count(sig):
        return np.all(trip == np.array(sig), axis=-1).sum(-1)

    if n == 12:
        c421, c422 = count((4, 2, 1)), count((4, 2, 2))
        labels[c421 == 12] = "fcc"
        labels[(c421 == 6) & (c422 == 6)] = "hcp"
    elif n == 14:
        labels[(count((6, 6, 6)) == 8) & (count((4, 4, 4)) == 6)] = "bcc"
    return labels


def common_neighbour_analysis(atoms: Atoms, cutoff: float | None = None) -> np.ndarray:
    """Fixed-cutoff common neighbour analysis: one label per atom, 'fcc', 'hcp', 'bcc' or 'other'.

    FCC: 12 neighbours, all (4,2,1); HCP: 12 neighbours, 6x(4,2,1) + 6x(4,2,2);
    BCC: 14 neighbours (1st + 2nd shell), 8x(6,6,6) + 6x(4,4,4). ``cutoff`` (Angstrom)
    defaults to halfway between the 1st and 2nd FCC shells (see ``_nn_cutoff``); for BCC
    this lies only ~4.5 % above the 2nd shell, so pass an explicit cutoff for noisy BCC.
    """
    n_atoms = len(atoms)
    labels = np.full(n_atoms, "other", dtype=object)
    if n_atoms == 0:
        return labels.astype(str)
    cutoff = _nn_cutoff(atoms) if cutoff is None else float(cutoff)
    i, vec = neighbour_list("iD", atoms, cutoff)
    order = np.argsort(i, kind="stable")
    i, vec = i[order], vec[order]
    coordination = np.bincount(i, minlength=n_atoms)
    start = np.concatenate([[0], np.cumsum(coordination)[:-1]])
    for n in (12, 14):
        centres = np.flatnonzero(coordination == n)
        for k in range(0, len(centres), _CHUNK):
            block = centres[k : k + _CHUNK]
            vectors = vec[start[block][:, None] + np.arange(n)]
            labels[block] = _classify(_cna_triplets(vectors, cutoff))
    return labels.astype(str)


def structure_fractions(atoms: Atoms, cutoff: float | None = None) -> dict[str, float]:
    """Fractions of atoms labelled fcc/hcp/bcc/other by ``common_neighbour_analysis`` (sum 1)."""
    labels = common_neighbour_analysis(atoms, cutoff)
    n = max(len(labels), 1)
    return {lab: float(np.count_nonzero(labels == lab)) / n for lab in LABELS}


def unlike_bonds(atoms: Atoms, cutoff: float = 3.1, elements=("Cu", "Ni")) -> dict:
    """First-shell bonds (pairs closer than ``cutoff`` Angstrom, each unordered pair and
    periodic image once) between ``elements[0]`` and ``elements[1]``.

    Returns {'unlike': int, 'total': int, 'fraction': unlike/total (0.0 without bonds)}.
    """
    el_a, el_b = elements
    i, j = neighbour_list("ij", atoms, cutoff)
    sym = np.asarray(atoms.get_chemical_symbols())
    si, sj = sym[i], sym[j]
    unlike = int(np.count_nonzero(((si == el_a) & (sj == el_b)) | ((si == el_b) & (sj == el_a)))) // 2
    total = len(i) // 2
    return {
        "unlike": unlike,
        "total": total,
        "fraction": unlike / total if total else 0.0,
    }


def intermixed_fraction(atoms: Atoms, cutoff: float = 3.1, min_unlike: int = 5, elements=("Cu", "Ni")) -> float:
    """Fraction of atoms in intermixed regions: atoms with at least ``min_unlike`` first-shell
    neighbours (closer than ``cutoff`` Angstrom, every periodic image) of the other element.

    With the default 5, an abrupt (001) Cu/Ni interface gives 0 (its atoms have 4 unlike
    neighbours); an atom swapped deep into the other layer counts (12), its neighbours do not (1).
    Atoms of other elements never count. The volume fraction of Sprueill et al. taken as a
    fraction of atoms (Cu and Ni atomic volumes differ by ~8 %)."""
    if len(atoms) == 0:
        raise ValueError("atoms: empty structure")
    if min_unlike < 1:
        raise ValueError(f"min_unlike: must be >= 1 neighbour, got {min_unlike}")
    el_a, el_b = elements
    i, j = neighbour_list("ij", atoms, cutoff)
    sym = np.asarray(atoms.get_chemical_symbols())
    unlike = ((sym[i] == el_a) & (sym[j] == el_b)) | ((sym[i] == el_b) & (sym[j] == el_a))
    counts = np.bincount(i[unlike], minlength=len(atoms))
    return float(np.count_nonzero(counts >= min_unlike)) / len(atoms)


def intermixing(atoms: Atoms, reference: Atoms, cutoff: float = 3.1) -> float:
    """Cu-Ni intermixing of ``atoms`` relative to ``reference`` (e.g. the unsheared abrupt
    multilayer): excess unlike (Cu-Ni) first-shell bonds per atom,
    (unlike(atoms) - unlike(reference)) / len(atoms). 0 for the reference itself; each
    Cu<->Ni swap deep inside the layers adds 24/len(atoms)."""
    if len(atoms) == 0:
        raise ValueError("atoms: empty structure")
    excess = unlike_bonds(atoms, cutoff)["unlike"] - unlike_bonds(reference, cutoff)["unlike"]
    return excess / len(atoms)


@dataclass(frozen=True)
class Vacancy:
    """A vacancy cluster: one connected component of under-coordinated atoms.

    ``atoms``: indices of its atoms; ``missing_bonds``: sum of (coordination - n_i);
    ``n_vacancies``: max(1, round(missing_bonds / 11)) (single vacancy 12, nearest-neighbour
    di-vacancy 22); ``position``: centroid (Angstrom, wrapped into the cell);
    ``fractional_z``: its fractional coordinate along the third cell vector;
    ``elements``: element counts of its atoms (its chemical neighbourhood: the vertices of the
    vacancy graph of Sprueill et al., e.g. 12 Ni and 6 Cu for a di-vacancy in the Ni plane at
    the interface).
    """

    atoms: tuple[int, ...]
    missing_bonds: int
    n_vacancies: int
    position: tuple[float, float, float]
    fractional_z: float
    elements: dict[str, int] = field(default_factory=dict)


def find_vacancies(atoms: Atoms, cutoff: float = 3.1, coordination: int = 12) -> list[Vacancy]:
    """Vacancy clusters: atoms with fewer than ``coordination`` neighbours within ``cutoff``
    (Angstrom) are linked when closer than ``cutoff``; each connected component is one
    cluster. The centroid is taken after unwrapping the component along its own bonds
    (minimum-image positions relative to its first atom), so clusters that cross a periodic
    boundary get the right position. Clusters are ordered by their smallest atom index."""
    n_atoms = len(atoms)
    i, j, vec = neighbour_list("ijD", atoms, cutoff)
    n_neigh = np.bincount(i, minlength=n_atoms)
    under = n_neigh < coordination
    keep = under[i] & under[j]
    i, j, vec = i[keep], j[keep], vec[keep]
    adjacency: dict[int, list[tuple[int, np.ndarray]]] = {int(a): [] for a in np.flatnonzero(under)}
    for a, b, v in zip(i.tolist(), j.tolist(), vec):
        adjacency[a].append((b, v))
    seen: set[int] = set()
    cell = atoms.cell
    symbols = np.asarray(atoms.get_chemical_symbols())
    vacancies = []
    for root in sorted(adjacency):
        if root in seen:
            continue
        unwrapped = {root: atoms.positions[root].copy()}
        queue = [root]
        seen.add(root)
        while queue:  # breadth-first search, unwrapping positions along the bonds
            a = queue.pop(0)
            for b, v in adjacency[a]:
                if b not in seen:
                    seen.add(b)
                    unwrapped[b] = unwrapped[a] + v
                    queue.append(b)
        members = sorted(unwrapped)
        centre = np.mean([unwrapped[m] for m in members], axis=0)
        frac = cell.scaled_positions(centre[None])[0] if cell.rank == 3 else np.zeros(3)
        if cell.rank == 3:
            frac = np.where(atoms.pbc, frac % 1.0, frac)
            frac = np.where(atoms.pbc & np.isclose(frac, 1.0, rtol=0, atol=1e-12), 0.0, frac)
            centre = cell.cartesian_positions(frac[None])[0]
        missing = int(sum(coordination - n_neigh[m] for m in members))
        vacancies.append(
            Vacancy(
                atoms=tuple(members),
                missing_bonds=missing,
                n_vacancies=max(1, round(missing / (coordination - 1))),
                position=(float(centre[0]), float(centre[1]), float(centre[2])),
                fractional_z=float(frac[2]),
                elements=_element_counts(symbols[members]),
            )
        )
    return vacancies


def _element_counts(symbols: np.ndarray) -> dict[str, int]:
    """{element: count}, elements in alphabetical order."""
    names, counts = np.unique(symbols, return_counts=True)
    return {str(n): int(c) for n, c in zip(names, counts, strict=True)}
