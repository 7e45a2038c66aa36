"""Analysis of stochastic shear runs (Sprueill et al.; docs/methods.md): per-step structure, merged pathways.

Per relaxed step: energy (eV), shear strain gamma, FCC/HCP/other fractions by common-neighbour
analysis, Cu-Ni intermixing (excess unlike bonds per atom relative to the unsheared start; the
intermixed fraction: atoms with at least 5 unlike first-shell neighbours) and vacancy clusters
(atoms with fewer than 12 neighbours within 3.1 Angstrom), each with its size and the element
counts of its atoms (its chemical neighbourhood, the vacancy graph of Sprueill et al.), listed
per step in the order of :func:`al_flows.structures.analysis.find_vacancies`.

Pathways: two runs of one system follow the same pathway when they have the same number of
steps and their energies differ by at most ``tol`` (1e-3 eV) at every step; runs are merged
transitively (single linkage), so a pathway is a connected group of such pairs.

Energy scale (the paper's Figs. 4, 5 and 7: Delta E = 0 is the NNP-relaxed structure before
shear): every run of a system starts from the same structure, which
:func:`unsheared_reference` relaxes at its own (unsheared) cell with the run's calculator and
optimiser settings; :func:`relative_to_reference` gives each step's energy relative to it.

Pathway tree (the paper's Fig. 5, where plastic events split the paths): runs share a branch
while their energies coincide (single linkage within ``tol`` at each step) from the first step
on; at the first step where they part (or some of them end), the branch ends and each group of
runs that still coincide there starts a child branch. Every branch keeps its runs, so its
count; the leaves are the merged pathways (up to single-linkage chains that differ).

Pathway types, from the drop of the FCC fraction below the first step's along the
representative run (atoms leaving FCC become HCP stacking faults or 'other' defect atoms;
the first step already counts a vacancy's neighbours as 'other'):
``FCC`` - the drop never reaches ``defect_threshold`` (slip keeps FCC, Cu-Ni intermix);
``defect/HCP`` - it reaches it and still holds it at the last step;
``defect/HCP->FCC`` - it reaches it and the last step is back below it.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from al_flows.frames.labels import recorded_energy
from al_flows.structures.analysis import find_vacancies, intermixed_fraction, intermixing, structure_fractions

__all__ = [
    "step_record",
    "unsheared_reference",
    "relative_to_reference",
    "merge_pathways",
    "pathway_tree",
    "tree_branches",
    "classify_pathway",
    "pathways",
    "PATHWAY_TYPES",
]

PATHWAY_TYPES = ("FCC", "defect/HCP", "defect/HCP->FCC")


def step_record(frame: Atoms, reference: Atoms, vacancy_cutoff: float = 3.1) -> dict:
    """Analysis of one relaxed shear step; ``reference`` is the run's unsheared start."""
    fractions = structure_fractions(frame)
    vacancies = find_vacancies(frame, cutoff=vacancy_cutoff)
    info = frame.info
    return {
        "run": int(info.get("run", 0)),
        "step": int(info.get("step", 0)),
        "gamma": float(info.get("gamma", np.nan)),
        "energy": recorded_energy(frame),
        "fcc": fractions["fcc"],
        "hcp": fractions["hcp"],
        "other": fractions["other"] + fractions.get("bcc", 0.0),
        "intermixing": float(intermixing(frame, reference, cutoff=vacancy_cutoff)),
        "n_vacancies": int(sum(v.n_vacancies for v in vacancies)),
        "vacancy_positions": [list(map(float, v.position)) for v in vacancies],
        "vacancy_fractional_z": [float(v.fractional_z) for v in vacancies],
        "vacancy_sizes": [int(v.n_vacancies) for v in vacancies],
        "vacancy_elements": [dict(v.elements) for v in vacancies],
        "intermixed_fraction": intermixed_fraction(frame, cutoff=vacancy_cutoff),
        "converged": bool(info.get("converged", True)),
        "frame_id": str(info.get("frame_id", "")),
    }


def unsheared_reference(structure: Atoms, calculator, fmax: float, max_steps: int, optimizer: str = "BFGS") -> dict:
    """``structure`` relaxed at its own cell (positions only) with ``calculator`` and ``optimizer``
    to ``fmax`` (eV/Angstrom) in at most ``max_steps``: ``gamma`` (its shear strain, 0 for an
    unsheared cell), ``energy`` (eV), ``n_atoms``, ``converged``, ``n_opt_steps``, ``fmax``, ``optimizer``."""
    from al_flows.exploration.shear_geometry import shear_strain
    from al_flows.exploration.shear_sequential import OPTIMIZERS

    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer: unknown optimiser '{optimizer}'; choose from {sorted(OPTIMIZERS)}")
    work = structure.copy()
    work.calc = calculator
    opt = OPTIMIZERS[optimizer](work, logfile=None, trajectory=None)
    converged = bool(opt.run(fmax=fmax, steps=max_steps))
    return {
        "gamma": float(shear_strain(work.cell[:])),
        "energy": float(work.get_potential_energy()),
        "n_atoms": len(work),
        "converged": converged,
        "n_opt_steps": int(opt.nsteps),
        "fmax": float(fmax),
        "optimizer": optimizer,
    }


def relative_to_reference(records: list[dict], reference: dict) -> list[dict]:
    """Copies of step ``records`` with ``delta_energy`` = E - E_ref (eV) and ``de_per_atom`` =
    (E - E_ref) / N (eV/atom) relative to ``reference`` (:func:`unsheared_reference`)."""
    e_ref, n = float(reference["energy"]), int(reference["n_atoms"])
    return [{**r, "delta_energy": r["energy"] - e_ref, "de_per_atom": (r["energy"] - e_ref) / n} for r in records]


def merge_pathways(profiles: list, tol: float = 1e-3) -> list[list[int]]:
    """Groups of run positions whose energy profiles (eV per step) agree within ``tol`` at every
    step (equal lengths required), merged transitively; groups ordered by their first run."""
    arrays = [np.asarray(p, dtype=float) for p in profiles]
    parent = list(range(len(arrays)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(arrays)):
        for j in range(i + 1, len(arrays)):
            a, b = arrays[i], arrays[j]
            if len(a) == len(b) and len(a) and np.all(np.abs(a - b) <= tol):
                parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(arrays)):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])


def _clusters(values: np.ndarray, tol: float) -> list[list[int]]:
    """Single-linkage groups (positions, ascending; groups ordered by their first) of ``values``
    whose neighbours in sorted order differ by at most ``tol``."""
    order = np.argsort(values, kind="stable")
    groups, current = [], [int(order[0])]
    for a, b in zip(order[:-1], order[1:], strict=True):
        if values[b] - values[a] <= tol:
            current.append(int(b))
        else:
            groups.append(sorted(current))
            current = [int(b)]
    groups.append(sorted(current))
    return sorted(groups, key=lambda g: g[0])


def pathway_tree(profiles: list, tol: float = 1e-3) -> list[dict]:
    """Branches of the pathway tree (module docstring) of energy ``profiles`` (eV per step).

    Each branch: ``branch`` (its position in the list), ``parent`` (the branch it splits from,
    None for a root), ``first_step`` and ``last_step`` (0-based step positions, inclusive),
    ``runs`` (profile positions, ascending) and ``n_runs``. Branches are listed parents first,
    siblings by their first run."""
    arrays = [np.asarray(p, dtype=float) for p in profiles]
    branches: list[dict] = []
    # (runs that coincide at step `first`, first step, parent branch)
    todo: list[tuple[list[int], int, int | None]] = [
        (g, 0, None) for g in _groups([i for i, a in enumerate(arrays) if len(a)], arrays, 0, tol)
    ]
    while todo:
        runs, first, parent = todo.pop(0)
        step = first
        while True:
            alive = [r for r in runs if len(arrays[r]) > step + 1]
            groups = _groups(alive, arrays, step + 1, tol) if alive else []
            if len(groups) != 1 or len(alive) != len(runs):
                break
            step += 1
        index = len(branches)
        branches.append(
            {
                "branch": index,
                "parent": parent,
                "first_step": first,
                "last_step": step,
                "runs": runs,
                "n_runs": len(runs),
            }
        )
        todo += [(g, step + 1, index) for g in groups]
    return branches


def _groups(runs: list[int], arrays: list[np.ndarray], step: int, tol: float) -> list[list[int]]:
    """The runs (profile positions) that coincide at ``step``, grouped by single linkage."""
    if not runs:
        return []
    return [[runs[k] for k in g] for g in _clusters(np.array([arrays[r][step] for r in runs]), tol)]


def classify_pathway(fcc_fractions, defect_threshold: float = 0.1) -> str:
    """Pathway type (see module docstring) from the FCC fraction of each step."""
    f = np.asarray(fcc_fractions, dtype=float)
    drop = f[0] - f if len(f) else f
    if not len(f) or drop.max() < defect_threshold:
        return "FCC"
    return "defect/HCP" if drop[-1] >= defect_threshold else "defect/HCP->FCC"


def pathways(records: list[dict], tol: float = 1e-3, defect_threshold: float = 0.1) -> list[dict]:
    """Merged pathways of one system's step records (from :func:`step_record`, any order).

    Each pathway: runs (sorted), n_runs, representative (lowest run number), type, final_energy
    (eV), final_gamma, max_hcp, min_fcc, final_fcc, final_intermixing, final_frame_id, profile (list of
    (gamma, energy, fcc) of the representative); final_delta_energy (eV, relative to the relaxed
    unsheared start) when the records have it (:func:`relative_to_reference`)."""
    by_run: dict[int, list[dict]] = {}
    for r in records:
        by_run.setdefault(int(r["run"]), []).append(r)
    runs = sorted(by_run)
    steps = [sorted(by_run[r], key=lambda x: x["step"]) for r in runs]
    groups = merge_pathways([[s["energy"] for s in st] for st in steps], tol)
    out = []
    for group in groups:
        rep = steps[group[0]]
        hcp = [s["hcp"] for s in rep]
        last = rep[-1]
        out.append(
            {
                "runs": [runs[k] for k in group],
                "n_runs": len(group),
                "representative": runs[group[0]],
                "type": classify_pathway([s["fcc"] for s in rep], defect_threshold),
                "final_energy": float(last["energy"]),
                "final_gamma": float(last["gamma"]),
                "max_hcp": float(max(hcp)),
                "min_fcc": float(min(s["fcc"] for s in rep)),
                "final_fcc": float(last["fcc"]),
                "final_intermixing": float(last["intermixing"]),
                "final_frame_id": last["frame_id"],
                **({"final_delta_energy": float(last["delta_energy"])} if "delta_energy" in last else {}),
                "profile": [[float(s["gamma"]), float(s["energy"]), float(s["fcc"])] for s in rep],
            }
        )
    return out


def tree_branches(records: list[dict], tol: float = 1e-3) -> list[dict]:
    """The pathway tree (:func:`pathway_tree`) of one system's step records (any order), with run
    numbers: each branch's ``runs``, ``n_runs``, ``parent``, ``first_step`` and ``last_step``
    (the records' step numbers), ``representative`` (lowest run) and ``profile`` (its (gamma,
    energy, fcc) from first_step to last_step; the plot joins it to the parent's last point)."""
    by_run: dict[int, list[dict]] = {}
    for r in records:
        by_run.setdefault(int(r["run"]), []).append(r)
    runs = sorted(by_run)
    steps = [sorted(by_run[r], key=lambda x: x["step"]) for r in runs]
    out = []
    for b in pathway_tree([[s["energy"] for s in st] for st in steps], tol):
        rep = steps[b["runs"][0]][b["first_step"] : b["last_step"] + 1]
        out.append(
            {
                "branch": b["branch"],
                "parent": b["parent"],
                "first_step": int(rep[0]["step"]),
                "last_step": int(rep[-1]["step"]),
                "runs": [runs[k] for k in b["runs"]],
                "n_runs": b["n_runs"],
                "representative": runs[b["runs"][0]],
                "profile": [[float(s["gamma"]), float(s["energy"]), float(s["fcc"])] for s in rep],
            }
        )
    return out
