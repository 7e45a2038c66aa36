"""Labelled pools and application test sets for replayed active learning (:mod:`al_flows.pool_study.replay`).

Two systems, every frame labelled by the labeller itself (``make_calculator``, e.g. an EAM file):

- **Cu-Ni shear** (Cu/Ni (001) multilayers, pristine and with a vacancy in a Ni or a Cu plane):
  the pool is every optimiser step of perturbed labeller shear paths plus labeller MD from each
  relaxed shear step (:func:`al_flows.pool_study.shear_pool.labeller_shear_pool`). The test set is
  what such a potential is for: labeller-relaxed shear paths of other noise, scored as energy
  profiles relative to the relaxed unsheared start (per-path RMSE and barrier error); the
  generalised stacking-fault energy of pure Cu and pure Ni along <112>{111} on labeller-relaxed
  geometries (intrinsic fault and its maximum); and labeller MD snapshots of the unsheared
  multilayers at the pool's temperatures (forces and energies).
- **Aluminium**: the pool is labeller MD from random disordered cells and from strained fcc
  crystals at several temperatures. The test set: MD from fresh random cells and from fcc, the
  relaxed vacancy (formation energy) and relaxed (100) and (111) slabs (surface energies).

Energy properties are scored on the labeller's relaxed geometries (the potential's energies of the
same structures), specs for :func:`al_flows.validation.label_efficiency.energy_differences`.
Every builder returns frames with ``info['frame_id']``; :func:`check_disjoint` refuses a test set
sharing a frame with the pool.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from ase import Atoms
from ase.build import bulk, fcc100, fcc111
from ase.constraints import FixCartesian

from al_flows.exploration.labeller_md import nvt_pool
from al_flows.exploration.shear import ShearSettings
from al_flows.frames.ids import frame_id
from al_flows.pool_study.shear_pool import labelled_copy, labeller_shear_pool, labeller_shear_trajectories
from al_flows.structures.generators import random_cells
from al_flows.structures.initial_data import RandomCellSource
from al_flows.structures.multilayer import cuni_multilayer
from al_flows.validation.defects import MJ_PER_M2, gsfe_cell
from al_flows.validation.heldout import md_snapshots, tag
from al_flows.validation.lattices import lattice_minimum, relax_positions

__all__ = [
    "cuni_starts",
    "cuni_pool",
    "cuni_test_set",
    "gsfe_frames",
    "al_random_cells",
    "al_pool",
    "al_test_set",
    "check_disjoint",
]

MakeCalc = Callable[[], object]
CUNI_VARIANTS = ("pristine", "VNi(N1)", "VCu(C1)")
AL_CELLS = RandomCellSource(n_cells=1, edge_min=8.0, edge_max=10.0, density_min=1.8, density_max=3.0, min_distance=1.9)


def _labelled(atoms: Atoms, calc, info: dict) -> Atoms:
    """A copy of ``atoms`` carrying ``calc``'s energy and forces and ``info`` (with frame_id)."""
    work = atoms.copy()
    work.set_constraint()
    work.calc = calc
    return labelled_copy(work, info)


def cuni_starts(size=(2, 2, 2), a: float = 3.58) -> list[Atoms]:
    """The three multilayers (pristine, VNi(N1), VCu(C1)), ``info['structure_id']`` their variant."""
    starts = []
    for v in CUNI_VARIANTS:
        atoms = cuni_multilayer(size, a=a, variant=v)
        atoms.info["structure_id"] = v
        starts.append(atoms)
    return starts


def cuni_pool(
    make_calculator: MakeCalc, seed: int, n_runs: int, temperatures_K=(300.0, 600.0), md_steps: int = 100
) -> list[Atoms]:
    """Labeller shear paths (every optimiser step, ``n_runs`` per multilayer) and labeller MD
    (every 10th of ``md_steps`` 2 fs steps at each temperature) from every relaxed shear step."""
    shear = ShearSettings(
        n_runs=n_runs, sigma=0.05, shear_step=0.5, gamma_max=0.33, fmax=0.05, max_opt_steps=100, batched=False
    )
    return labeller_shear_pool(
        cuni_starts(), make_calculator, shear, seed, "ase:eam", list(temperatures_K), md_steps, 2.0, 10
    )


def gsfe_frames(element: str, make_calculator: MakeCalc, fractions, group: str) -> tuple[list[Atoms], list[dict]]:
    """Labeller-relaxed (atoms along the fault normal only, cell fixed) (111) stacks of ``element``
    with the upper half shifted by each fraction of b_p, and the GSFE specs (mJ/m^2) against fraction 0."""
    calc = make_calculator()
    a0 = lattice_minimum(element, "fcc", calc)[0]
    base, upper, bp = gsfe_cell(element, a0, 9, (2, 2))
    area = float(np.linalg.norm(np.cross(base.cell[0], base.cell[1])))
    frames = []
    for f in fractions:
        atoms = base.copy()
        atoms.positions[upper] += f * bp
        cell = atoms.cell[:].copy()
        cell[2] += f * bp
        atoms.set_cell(cell, scale_atoms=False)
        atoms.set_constraint(FixCartesian(range(len(atoms)), mask=(True, True, False)))
        atoms.calc = calc
        relax_positions(atoms, 0.01, 300)
        frames.append(_labelled(atoms, calc, {"test_kind": "gsfe", "element": element, "fraction": float(f)}))
    specs = [
        {
            "name": f"gsfe_{element}_{f:.2f}",
            "group": group,
            "terms": [(k, 1.0), (0, -1.0)],
            "scale": MJ_PER_M2 / area,
            "fraction": float(f),
        }
        for k, f in enumerate(fractions)
        if k
    ]
    return frames, specs


def _offset(specs: list[dict], n: int) -> list[dict]:
    return [dict(s, terms=[(i + n, c) for i, c in s["terms"]]) for s in specs]


def cuni_test_set(make_calculator: MakeCalc, seed: int, temperatures_K=(300.0, 600.0)) -> dict:
    """``{frames, force_frames, specs, paths}``: all test frames; the positions of the frames whose
    forces are scored (MD snapshots and relaxed shear steps); energy-difference specs (GSFE of Cu
    and Ni, mJ/m^2, group ``gsfe``); and the shear paths, each a list of frame positions from the
    relaxed unsheared start (gamma = 0) on."""
    starts = cuni_starts()
    frames: list[Atoms] = []
    paths: list[list[int]] = []
    calc = make_calculator()
    zero = []
    for atoms in starts:
        work = atoms.copy()
        work.calc = calc
        relax_positions(work, 0.01, 300)
        zero.append(_labelled(work, calc, {"test_kind": "shear_relaxed", "gamma": 0.0, **atoms.info}))
    shear = ShearSettings(n_runs=2, sigma=0.03, shear_step=0.25, gamma_max=0.33, fmax=0.01, max_opt_steps=300)
    _, relaxed = labeller_shear_trajectories(starts, make_calculator, shear, seed, "ase:eam")
    frames.extend(tag(zero, "relaxed", "shear_relaxed"))
    for i, start in enumerate(starts):
        for r in range(shear.n_runs):
            steps = [a for a in relaxed if a.info["parent_id"] == start.info["structure_id"] and a.info["run"] == r]
            first = len(frames)
            frames.extend(tag(steps, "relaxed", "shear_relaxed"))
            paths.append([i, *range(first, len(frames))])
    md = md_snapshots(starts, make_calculator, list(temperatures_K), 200, 2.0, 20, seed + 1, "ase:eam")
    force_frames = list(range(len(frames), len(frames) + len(md))) + list(range(len(starts), len(frames)))
    frames.extend(md)
    specs: list[dict] = []
    for element in ("Cu", "Ni"):
        gsfe, gspecs = gsfe_frames(element, make_calculator, np.linspace(0.0, 1.0, 6), "gsfe")
        specs += _offset(gspecs, len(frames))
        frames.extend(gsfe)
    return {"frames": frames, "force_frames": sorted(force_frames), "specs": specs, "paths": paths}


def al_random_cells(n: int, seed: int) -> list[Atoms]:
    """``n`` random disordered Al cells (edges 8-10 Angstrom, 1.8-3.0 g/cm^3, atoms at least 1.9 Angstrom apart)."""
    cells = random_cells(AL_CELLS.model_copy(update={"n_cells": n}), ["Al"], seed)
    for i, c in enumerate(cells):
        c.info["structure_id"] = f"random{seed}_{i}"
    return cells


def _fcc_al(a0: float, strain: float = 0.0) -> Atoms:
    atoms = bulk("Al", "fcc", a=a0 * (1 + strain), cubic=True).repeat((2, 2, 2))
    atoms.info["structure_id"] = f"fcc_{strain:+.3f}"
    return atoms


def al_pool(
    make_calculator: MakeCalc, seed: int, n_cells: int, temperatures_K=(300.0, 900.0, 1500.0), md_steps: int = 100
) -> list[Atoms]:
    """Labeller MD (every 10th of ``md_steps`` 2 fs steps) from ``n_cells`` random cells and from 2x2x2
    fcc at strains -2, 0, +2 % at every temperature."""
    a0 = lattice_minimum("Al", "fcc", make_calculator())[0]
    starts = al_random_cells(n_cells, seed) + [_fcc_al(a0, s) for s in (-0.02, 0.0, 0.02)]
    frames = nvt_pool(starts, make_calculator, list(temperatures_K), md_steps, 2.0, 10, seed + 3, "ase:eam")
    return frames


def al_test_set(make_calculator: MakeCalc, seed: int) -> dict:
    """``{frames, force_frames, specs, paths}``: MD snapshots of 4 fresh random cells (600 K) and of
    2x2x2 fcc (300, 900 K); the relaxed vacancy (formation energy, eV, group ``vacancy``); relaxed 2x2
    (100) and (111) slabs of 5 layers (surface energies, J/m^2, group ``surface``); no paths."""
    calc = make_calculator()
    a0 = lattice_minimum("Al", "fcc", calc)[0]
    md = md_snapshots(al_random_cells(4, seed), make_calculator, [600.0], 200, 2.0, 20, seed + 1, "ase:eam")
    md += md_snapshots([_fcc_al(a0)], make_calculator, [300.0, 900.0], 200, 2.0, 20, seed + 2, "ase:eam")
    frames = list(md)
    force_frames = list(range(len(md)))
    specs = []
    perfect = bulk("Al", "fcc", a=a0, cubic=True).repeat((3, 3, 3))
    n = len(perfect)
    vac = perfect.copy()
    del vac[0]
    vac.calc = calc
    relax_positions(vac, 0.01, 300)
    i = len(frames)
    frames += [_labelled(perfect, calc, {"test_kind": "bulk"}), _labelled(vac, calc, {"test_kind": "vacancy"})]
    specs.append({"name": "vacancy", "group": "vacancy", "terms": [(i + 1, 1.0), (i, -(n - 1) / n)], "scale": 1.0})
    for miller, build in (("100", fcc100), ("111", fcc111)):
        slab = build("Al", size=(2, 2, 5), a=a0, vacuum=6.0)
        slab.pbc = True
        slab.calc = calc
        relax_positions(slab, 0.01, 300)
        area = float(np.linalg.norm(np.cross(slab.cell[0], slab.cell[1])))
        j = len(frames)
        frames.append(_labelled(slab, calc, {"test_kind": f"surface{miller}"}))
        specs.append(
            {
                "name": f"surface_{miller}",
                "group": "surface",
                "terms": [(j, 1.0), (i, -len(slab) / n)],
                "scale": MJ_PER_M2 / 1000 / (2 * area),
            }
        )
    return {"frames": frames, "force_frames": force_frames, "specs": specs, "paths": []}


def check_disjoint(pool: list[Atoms], test_frames: list[Atoms]) -> None:
    """Raise ValueError when a test frame is also a pool frame (same frame_id)."""
    ids = {a.info.get("frame_id") or frame_id(a) for a in pool}
    shared = [a.info.get("frame_id") for a in test_frames if (a.info.get("frame_id") or frame_id(a)) in ids]
    if shared:
        raise ValueError(f"{len(shared)} test frames are pool frames too (e.g. {shared[0]}): rebuild with another seed")
