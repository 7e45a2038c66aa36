"""Blow-up checks of exploration replicas (shear runs, MD trajectories).

A replica is dropped (its run ends, the others go on) when, at some step,

- its evaluation raises (any exception except out-of-memory errors, which are not a replica's
  fault and still fail the job),
- its energy, forces, stress (NPT) or positions are not finite,
- its largest atomic force exceeds ``max_force`` (eV/Angstrom),
- an atom moved more than ``max_displacement`` (Angstrom) in one MD step (not checked in
  relaxations, whose optimisers cap every step themselves), or
- two atoms are closer than ``min_distance`` (Angstrom; periodic images included).

Frames recorded before the blow-up passed these checks and are kept; nothing after it is
recorded. Each drop is described by a dict (:func:`dropped`): ``replica`` (index of the replica in
the explorer's call), ``step`` (shear step or MD step, 1-based; 0 = the starting structure),
``reason`` (one line), plus the explorer's own keys (``parent_id``, ``run``, ...). The explore
jobs store these in ``ExplorationDocument.dropped``.

The bounds (:class:`ReplicaLimits`) are far outside anything physical: no two atoms of any
element are closer than 0.5 Angstrom (H2: 0.74), forces in metals stay well under 100 eV/Angstrom
even in hot MD, and at 1-2 fs an atom moves a few hundredths of an Angstrom per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms

from al_flows.frames.neighbours import neighbour_list

__all__ = [
    "ReplicaLimits",
    "LIMITS",
    "is_replica_error",
    "describe_error",
    "min_distance",
    "geometry_problem",
    "evaluation_problem",
    "predict_isolating",
    "dropped",
]


@dataclass(frozen=True)
class ReplicaLimits:
    """Bounds beyond which a replica has blown up (Angstrom, eV/Angstrom)."""

    min_distance: float = 0.5
    max_force: float = 100.0
    max_displacement: float = 1.0


LIMITS = ReplicaLimits()


def is_replica_error(err: BaseException) -> bool:
    """Whether an exception raised while evaluating one replica should drop that replica (True)
    rather than fail the job: every ``Exception`` except out-of-memory errors."""
    if not isinstance(err, Exception) or isinstance(err, MemoryError):
        return False
    return "OutOfMemoryError" not in type(err).__name__


def describe_error(err: BaseException) -> str:
    """``"calculator raised Type: message"`` on one line (message cut at 200 characters)."""
    msg = " ".join(str(err).split())
    return f"calculator raised {type(err).__name__}" + (f": {msg[:200]}" if msg else "")


def min_distance(atoms: Atoms, cutoff: float) -> tuple[float, int, int]:
    """(distance, i, j) of the closest pair of atoms closer than ``cutoff`` (Angstrom, periodic images
    included), or (inf, -1, -1) when none is."""
    if len(atoms) == 0 or cutoff <= 0:
        return float("inf"), -1, -1
    i, j, d = neighbour_list("ijd", atoms, float(cutoff))
    if not len(d):
        return float("inf"), -1, -1
    k = int(np.argmin(d))
    return float(d[k]), int(i[k]), int(j[k])


def geometry_problem(
    atoms: Atoms, limits: ReplicaLimits = LIMITS, displacement: np.ndarray | None = None
) -> str | None:
    """Why the geometry of ``atoms`` has blown up (non-finite positions or cell, an atom that moved
    more than ``limits.max_displacement`` by ``displacement`` [N, 3], two atoms closer than
    ``limits.min_distance``), or None."""
    if not (np.isfinite(atoms.positions).all() and np.isfinite(atoms.cell.array).all()):
        return "non-finite positions"
    if displacement is not None and len(displacement):
        moved = np.sqrt((np.asarray(displacement, dtype=float) ** 2).sum(axis=1))
        k = int(np.argmax(moved))
        if not moved[k] <= limits.max_displacement:
            return f"atom {k} moved {moved[k]:.3g} A in one step (limit {limits.max_displacement:g} A)"
    d, i, j = min_distance(atoms, limits.min_distance)
    if d < limits.min_distance:
        return f"atoms {i} and {j} are {d:.3g} A apart (limit {limits.min_distance:g} A)"
    return None


def evaluation_problem(energy, forces, limits: ReplicaLimits = LIMITS, stress=None) -> str | None:
    """Why an evaluation (energy eV, forces [N, 3] eV/A, optional stress) shows a blow-up
    (non-finite values, a force above ``limits.max_force``), or None."""
    forces = np.asarray(forces, dtype=float)
    if not np.isfinite(energy):
        return "non-finite energy"
    if not np.isfinite(forces).all():
        return "non-finite forces"
    if stress is not None and not np.isfinite(np.asarray(stress, dtype=float)).all():
        return "non-finite stress"
    if len(forces):
        norms = np.sqrt((forces**2).sum(axis=1))
        k = int(np.argmax(norms))
        if norms[k] > limits.max_force:
            return f"force {norms[k]:.3g} eV/A on atom {k} (limit {limits.max_force:g} eV/A)"
    return None


def dropped(replica: int, step: int, reason: str, **extra) -> dict:
    """The record of a dropped replica: replica, step, reason and ``extra`` (plain values)."""
    return {"replica": int(replica), "step": int(step), "reason": str(reason), **extra}


def predict_isolating(predict, frames: list[Atoms]):
    """``(prediction, ok, errors)``: ``predict(frames)`` when it succeeds (``ok`` = all indices,
    ``errors`` empty); when it raises, the frames whose own ``predict([frame])`` raises are set aside
    (``errors[j]``: :func:`describe_error`) and the others are predicted together again
    (``prediction`` of ``[frames[j] for j in ok]``, None when none is left). A batch that raises
    while no single frame does, or an out-of-memory error, is raised."""
    try:
        return predict(frames), list(range(len(frames))), {}
    except Exception as err:
        if not is_replica_error(err):
            raise
        if len(frames) == 1:
            return None, [], {0: describe_error(err)}
        batch_error = err
    errors: dict[int, str] = {}
    for j, frame in enumerate(frames):
        try:
            predict([frame])
        except Exception as err:
            if not is_replica_error(err):
                raise
            errors[j] = describe_error(err)
    if not errors:
        raise batch_error
    ok = [j for j in range(len(frames)) if j not in errors]
    return (predict([frames[j] for j in ok]) if ok else None), ok, errors
