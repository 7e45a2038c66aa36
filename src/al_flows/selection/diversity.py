"""Diverse picking of candidates: farthest-point sampling (FPS) in a learned feature space.

``selection.pick: diverse`` caps the candidates of a round by FPS instead of a random draw: the
first pick is the candidate of highest model deviation (ties: the lower index), and each further
pick is the candidate farthest from everything picked so far (its distance to the nearest picked
candidate is largest; ties: the lower index). Near-duplicates (frames of one trajectory a few
steps apart, shear runs that differ only by their noise) are then picked only after every
distinct candidate, instead of filling the cap by chance. FPS is the greedy selection used to
choose diverse training structures from descriptors (e.g. the CUR/FPS selection of autoplex and
scikit-matter); here the descriptors are the ensemble's own SchNet atom features
(:meth:`al_flows.potential.ensemble.Ensemble.atom_features`).

Two feature spaces (``selection.diverse_features``):

- ``structure``: one vector per frame, the mean of its atom features; distance Euclidean.
- ``atoms``: the set of a frame's atom features; the distance of two frames is the symmetric
  Hausdorff distance of their sets, the largest distance from an atom of either frame to the
  nearest atom of the other (:func:`scipy.spatial.distance.directed_hausdorff`). A local
  environment present in one frame only (a defect, a plastic event in a large cell) makes two
  frames distinct even where the mean over many bulk-like atoms hardly moves.

Scale: features are divided by one number, the RMS spread of the candidates' vectors about
their mean (structure: of the per-frame means; atoms: of all candidate atoms), so the recorded
distances are in units of that spread and comparable between rounds. One number, not one per
feature: dividing each feature by its own spread would blow up features that barely vary (the
noise that tells near-duplicates apart). The order of the picks does not depend on the scale.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from scipy.spatial.distance import cdist, directed_hausdorff

__all__ = ["DiverseFeatures", "farthest_point_sampling", "diverse_pick", "feature_scale", "hausdorff"]

DiverseFeatures = Literal["structure", "atoms"]


def farthest_point_sampling(
    n_points: int, n_pick: int, start: int, distances_from: Callable[[int], np.ndarray]
) -> tuple[list[int], list[float | None]]:
    """Greedy FPS over ``n_points`` points: ``start`` first, then each time the point whose
    distance to the nearest point picked so far is largest (ties: the lower index).

    ``distances_from(i)`` returns the distances of point ``i`` to every point ([n_points]).
    Returns the picks in order and the distance at which each was picked (None for ``start``);
    ``min(n_pick, n_points)`` picks. Exact repeats (distance 0) are picked last, at distance 0."""
    if not 0 <= start < n_points:
        raise ValueError(f"start {start} is not a point index (0 <= start < {n_points})")
    n_pick = min(int(n_pick), n_points)
    picked: list[int] = [start]
    at: list[float | None] = [None]
    nearest = np.asarray(distances_from(start), dtype=float).copy()
    taken = np.zeros(n_points, dtype=bool)
    taken[start] = True
    while len(picked) < n_pick:
        gap = np.where(taken, -np.inf, nearest)
        j = int(np.argmax(gap))  # first maximum: the lower index on ties
        picked.append(j)
        at.append(float(gap[j]))
        taken[j] = True
        nearest = np.minimum(nearest, np.asarray(distances_from(j), dtype=float))
    return picked, at


def feature_scale(vectors: np.ndarray) -> float:
    """RMS distance of the rows of ``vectors`` from their mean (1.0 when they all coincide)."""
    vectors = np.asarray(vectors, dtype=float)
    if len(vectors) == 0:
        return 1.0
    spread = float(np.sqrt(np.mean(np.sum((vectors - vectors.mean(axis=0)) ** 2, axis=1))))
    return spread if spread > 0 and np.isfinite(spread) else 1.0


def hausdorff(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric Hausdorff distance of two point sets (rows): the largest distance from a point of
    either set to the nearest point of the other."""
    return max(directed_hausdorff(a, b, seed=0)[0], directed_hausdorff(b, a, seed=0)[0])


def diverse_pick(
    atom_features: Sequence[np.ndarray],
    deviations: Sequence[float] | np.ndarray,
    n_pick: int,
    features: DiverseFeatures = "structure",
) -> tuple[list[int], list[float | None]]:
    """FPS of ``n_pick`` of the frames whose per-atom features (each [n_atoms, n_features]) are
    given, starting from the highest deviation (ties: the lower index).

    Returns positions into ``atom_features`` in the order picked and the distance at which each
    was picked, in units of the candidates' feature spread (module doc; None for the first)."""
    n = len(atom_features)
    if len(deviations) != n:
        raise ValueError(f"{n} feature sets but {len(deviations)} deviations")
    if n == 0 or n_pick <= 0:
        return [], []
    eps = np.asarray(deviations, dtype=float)
    start = int(np.argmax(np.where(np.isfinite(eps), eps, -np.inf)))  # first maximum: ties by index
    # distances of the unscaled features (the order does not depend on the scale, and equal distances
    # stay equal to the bit, so ties go to the lower index); the recorded distances are divided by it
    if features == "structure":
        means = np.stack([np.asarray(x, dtype=float).mean(axis=0) for x in atom_features])
        scale = feature_scale(means)
        order, at = farthest_point_sampling(n, n_pick, start, lambda i: cdist(means[i : i + 1], means)[0])
    elif features == "atoms":
        sets = [np.asarray(x, dtype=float) for x in atom_features]
        scale = feature_scale(np.concatenate(sets))
        order, at = farthest_point_sampling(n, n_pick, start, lambda i: np.array([hausdorff(sets[i], s) for s in sets]))
    else:
        raise ValueError(f"selection.diverse_features={features!r} is not known; use structure or atoms")
    return order, [None if d is None else d / scale for d in at]
