"""The geometry of a shear path (lengths in Angstrom, strain dimensionless): shearing a cell, its shear
strain, the cell every run starts from, and the number of shear steps a run takes to reach gamma_max."""

from __future__ import annotations

import math

import numpy as np
from ase import Atoms

from al_flows.exploration.shear import ShearSettings


def shear_cell(cell: np.ndarray, delta: float) -> np.ndarray:
    """New 3x3 cell (Angstrom) with ``delta`` added to cell[0,1] and cell[0,2]."""
    new = np.array(cell, dtype=float, copy=True).reshape(3, 3)
    new[0, 1] += delta
    new[0, 2] += delta
    return new


def shear_strain(cell) -> float:
    """Shear strain gamma = sqrt(cell[0,1]**2 + cell[0,2]**2) / cell[0,0] (dimensionless)."""
    c = np.asarray(cell, dtype=float).reshape(3, 3)
    return float(math.hypot(c[0, 1], c[0, 2]) / c[0, 0])


def shear_start(atoms: Atoms) -> Atoms:
    """A copy of ``atoms`` with its first cell vector along +x, where every shear run starts: unchanged
    when a1 is already along +x (off-axis part at most 1e-9 of its length), else rotated rigidly into
    ASE's standard form (lower-triangular cell, handedness kept; fractional coordinates unchanged).
    Without it, gamma = |(cell[0,1], cell[0,2])| / cell[0,0] of a cell with a1 along y, say, is
    meaningless: huge, negative or never reaching gamma_max."""
    work = atoms.copy()
    c = work.cell[:]
    if c[0, 0] > 0 and math.hypot(c[0, 1], c[0, 2]) <= 1e-9 * c[0, 0]:
        return work
    rotated, _ = work.cell.standard_form()
    work.set_cell(rotated, scale_atoms=True)
    return work


def steps_to_gamma(cell, shear_step: float, gamma_max: float, limit: int = 100_000) -> int:
    """Shear steps of ``shear_step`` (Angstrom, added to cell[0,1] and cell[0,2]) that bring
    ``cell`` to a shear strain of at least ``gamma_max`` (the tolerance of the run loop, 1e-12,
    included). For a cell with no initial shear: ``ceil(gamma_max * cell[0,0] / (sqrt(2) * shear_step))``."""
    c = np.array(cell, dtype=float).reshape(3, 3)
    for n in range(limit + 1):
        if shear_strain(c) >= gamma_max - 1e-12:
            return n
        c = shear_cell(c, shear_step)
    raise ValueError(f"shear_step {shear_step} Angstrom does not reach gamma {gamma_max} in {limit} steps")


def run_steps(settings: ShearSettings, cell) -> int:
    """Shear steps of a run from ``cell``: what gamma_max needs, capped by ``max_steps`` when set."""
    need = steps_to_gamma(cell, settings.shear_step, settings.gamma_max)
    return need if settings.max_steps is None else min(need, settings.max_steps)


def check_reaches_gamma(settings: ShearSettings, cell, field: str) -> None:
    """ValueError naming ``field`` when ``max_steps`` stops runs from ``cell`` before gamma_max."""
    need = steps_to_gamma(cell, settings.shear_step, settings.gamma_max)
    if settings.max_steps is not None and settings.max_steps < need:
        c = np.array(cell, dtype=float).reshape(3, 3)
        for _ in range(settings.max_steps):
            c = shear_cell(c, settings.shear_step)
        raise ValueError(
            f"{field}.max_steps: {settings.max_steps} steps of {settings.shear_step} Angstrom reach gamma "
            f"{shear_strain(c):.3f} on a cell with cell[0,0] = {float(np.asarray(cell)[0, 0]):.2f} Angstrom, "
            f"but gamma_max {settings.gamma_max} needs {need}; raise {field}.max_steps or {field}.shear_step, "
            "or leave max_steps out"
        )
