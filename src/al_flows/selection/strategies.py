"""Which explored frames are labelled: the selection strategies and picks over the trust window's
classes (:mod:`al_flows.selection.trust_levels`; docs/methods.md).

Candidates whose frame_id is already labelled, or repeats within the batch, are skipped; at most
``max_candidates`` of the rest are picked per round (``pick``: a seeded random draw, the highest
deviations, or ``diverse``: farthest-point sampling in the ensemble's feature space,
:mod:`al_flows.selection.diversity`).

``strategy`` chooses what is labelled: ``deviation`` (the candidates, as above), ``random``
(the same number of frames drawn uniformly from everything explored, the baseline an
active-learning campaign must beat) or ``all`` (every explored frame up to the cap). The
classes and the accurate ratio, which the stop policy reads, are the same for every strategy.

Strategy ``deviation`` also follows two per-frame marks an explorer may set (the ANI-Al sampler,
:mod:`al_flows.exploration.md`): ``info['always_label']`` (a trajectory's stop frame) is labelled
whatever its class and outside the cap; ``info['selectable'] = False`` (a snapshot that only
measures) is never picked. ``random`` and ``all`` ignore both: as baselines they draw from every
explored frame.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms

from al_flows.frames.ids import frame_id
from al_flows.selection.diversity import diverse_pick
from al_flows.selection.trust_levels import ACCURATE, CANDIDATE, FAILED, SelectionSettings, classify, round_trust_lo


@dataclass
class SelectionResult:
    """Outcome of :func:`select`. ``selected`` indexes the frames to label (ascending);
    ``priority`` holds the same indices, most valuable first (the order a labelling budget takes
    them in, :mod:`al_flows.selection.budget`); ``n_duplicate`` counts candidates skipped as
    already labelled or repeated. ``picks`` (pick diverse only) gives, per selected candidate, why
    it was chosen: ``{"pick": "diverse", "pick_rank": r, "pick_distance": d}`` when farthest-point
    sampling chose it (rank 0, the highest deviation, has distance None), ``{"pick": "below cap"}``
    when every candidate fitted the cap."""

    status: list[str] = field(default_factory=list)
    selected: list[int] = field(default_factory=list)
    priority: list[int] = field(default_factory=list)
    n_accurate: int = 0
    n_candidate: int = 0
    n_failed: int = 0
    n_duplicate: int = 0
    accurate_ratio: float = 0.0
    picks: dict[int, dict] = field(default_factory=dict)
    trust_lo: float = 0.0

    @property
    def n_frames(self) -> int:
        """Number of frames classified."""
        return len(self.status)


def _deviation(atoms: Atoms) -> float:
    value = atoms.info.get("deviation", np.nan)
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


FeatureSource = Callable[[list[int]], list[np.ndarray]]
"""Per-atom features ([n_atoms, n_features] each) of the frames at the given indices."""


def select(
    frames: list[Atoms],
    settings: SelectionSettings,
    exclude_ids: Iterable[str] = (),
    seed: int = 0,
    features: FeatureSource | None = None,
) -> SelectionResult:
    """Classify ``frames`` by ``info['deviation']`` and pick the frames to label.

    Eligible frames: the candidates (strategy 'deviation': those not marked ``selectable`` False,
    plus, outside the cap, every frame marked ``always_label``; module doc) or every frame
    ('random', 'all').
    Those whose frame_id (``info['frame_id']`` or computed) is in ``exclude_ids`` or repeats an
    earlier eligible frame are skipped. Of the rest at most ``max_candidates`` are kept:
    strategy 'deviation' with pick 'random' and strategy 'random' draw without replacement with
    ``numpy.random.default_rng(seed)``; pick 'highest' takes the largest deviations (ties: lower
    index first); pick 'diverse' runs farthest-point sampling from the highest deviation
    (:mod:`al_flows.selection.diversity`) over the atom features ``features(indices)`` returns,
    called once, for those candidates only, and only when they exceed the cap; strategy 'all' keeps
    evenly spaced frames in exploration order. The classes (accurate/candidate/failed) and the
    accurate ratio do not depend on the strategy.

    ``priority`` ranks the kept frames for a labelling budget (:func:`priority_order`).
    """
    frames = list(frames)
    eps = np.array([_deviation(a) for a in frames], dtype=float)
    trust_lo = round_trust_lo(eps, settings)
    status = classify(eps, trust_lo, settings.trust_hi)
    excluded = set(exclude_ids)
    seen: set[str] = set()
    pool: list[int] = []
    n_duplicate = 0
    forced: list[int] = []
    if settings.strategy == "deviation":
        marks = [(bool(a.info.get("always_label", False)), a.info.get("selectable", True) is not False) for a in frames]
        forced_idx = [i for i, (always, _) in enumerate(marks) if always]
        eligible = [int(i) for i in np.flatnonzero(status == CANDIDATE) if marks[i][1] and not marks[i][0]]
    else:
        forced_idx, eligible = [], list(range(len(frames)))
    forced_set = set(forced_idx)
    for i in [*forced_idx, *eligible]:
        atoms = frames[i]
        fid = atoms.info.get("frame_id") or frame_id(atoms)
        if fid in excluded or fid in seen:
            n_duplicate += 1
            continue
        seen.add(fid)
        (forced if i in forced_set else pool).append(int(i))
    picks: dict[int, dict] = {}
    if len(pool) > settings.max_candidates:
        if settings.strategy == "all":
            keep = np.unique(np.round(np.linspace(0, len(pool) - 1, settings.max_candidates)).astype(int))
            pool = [pool[j] for j in keep]
        elif settings.strategy == "random" or settings.pick == "random":
            rng = np.random.default_rng(int(seed) & 0xFFFFFFFFFFFFFFFF)
            chosen = rng.choice(len(pool), size=settings.max_candidates, replace=False)
            pool = [pool[j] for j in chosen]
        elif settings.pick == "diverse":
            pool, picks = _diverse(pool, eps, settings, features)
        else:
            order = sorted(pool, key=lambda j: (-eps[j], j))
            pool = order[: settings.max_candidates]
    elif settings.needs_features:
        picks = {i: {"pick": "below cap"} for i in pool}
    n = len(frames)
    n_accurate = int((status == ACCURATE).sum())
    return SelectionResult(
        status=[str(s) for s in status],
        selected=sorted(forced + pool),
        priority=forced + priority_order(pool, eps, settings, seed, picks),
        n_accurate=n_accurate,
        n_candidate=int((status == CANDIDATE).sum()),
        n_failed=int((status == FAILED).sum()),
        n_duplicate=n_duplicate,
        accurate_ratio=n_accurate / n if n else 0.0,
        picks=picks,
        trust_lo=trust_lo,
    )


def priority_order(
    pool: list[int], eps: np.ndarray, settings: SelectionSettings, seed: int = 0, picks: dict | None = None
) -> list[int]:
    """The frames ``pool`` kept by the pick, most valuable first (frames marked ``always_label``
    come before all of them). Strategy 'deviation': highest deviation first (ties: lower index);
    pick 'diverse' when farthest-point sampling chose (``picks`` with ``pick_rank``): the order it
    chose them in, each the most novel given those before. Strategies 'random' and 'all', the
    baselines: a uniformly random order (its own generator, so the frames kept do not change), so
    that a budget's cut is a uniform sample of what they kept."""
    ranks = {i: p["pick_rank"] for i, p in (picks or {}).items() if "pick_rank" in p}
    if settings.strategy == "deviation" and ranks:
        return sorted(pool, key=lambda j: ranks[j])
    if settings.strategy == "deviation":
        return sorted(pool, key=lambda j: (-eps[j], j))
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFFFFFFFFFF, 1])
    return [pool[j] for j in rng.permutation(len(pool))]


def _diverse(
    pool: list[int], eps: np.ndarray, settings: SelectionSettings, features: FeatureSource | None
) -> tuple[list[int], dict[int, dict]]:
    """The ``max_candidates`` frames of ``pool`` chosen by farthest-point sampling, and why."""
    if features is None:
        raise ValueError(
            "selection.pick: diverse needs the ensemble's atom features: pass select(..., features=...) "
            "(the select job gets them from the round's models)"
        )
    order, distances = diverse_pick(features(pool), eps[pool], settings.max_candidates, settings.diverse_features)
    picks = {
        pool[k]: {"pick": "diverse", "pick_rank": rank, "pick_distance": d}
        for rank, (k, d) in enumerate(zip(order, distances, strict=True))
    }
    return [pool[k] for k in order], picks


def calibration_sample(
    frames: list[Atoms], result: SelectionResult, n: int, exclude_ids: Iterable[str] = (), seed: int = 0
) -> list[int]:
    """``n`` frames drawn uniformly (seeded) from ``frames`` that are neither failed nor selected in
    ``result`` nor already labelled (``exclude_ids``) nor a repeat: the labels a round spends on
    calibrating the error bound on the explored distribution rather than its high-deviation tail
    (``selection.bound.random_sample``; :mod:`al_flows.selection.conformal`). Indices ascending;
    fewer when fewer frames are eligible."""
    if n <= 0:
        return []
    excluded, chosen = set(exclude_ids), set(result.selected)
    taken = {frames[i].info.get("frame_id") or frame_id(frames[i]) for i in chosen}
    eligible, seen = [], set()
    for i, (atoms, status) in enumerate(zip(frames, result.status, strict=True)):
        fid = atoms.info.get("frame_id") or frame_id(atoms)
        if status == FAILED or i in chosen or fid in excluded or fid in taken or fid in seen:
            continue
        seen.add(fid)
        eligible.append(i)
    if len(eligible) <= n:
        return eligible
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFFFFFFFFFF, 2])
    return sorted(int(eligible[j]) for j in rng.choice(len(eligible), size=n, replace=False))
