"""Selection of explored frames: DP-GEN trust levels (Zhang et al.; docs/methods.md).

A frame's model deviation eps (eV/Angstrom, ``info['deviation']``) classifies it:
eps < trust_lo accurate (skip), trust_lo <= eps < trust_hi candidate (label),
eps >= trust_hi or non-finite failed (skip, likely unphysical). Candidates whose
frame_id is already labelled, or repeats within the batch, are skipped; at most
``max_candidates`` of the rest are picked per round (``pick``: a seeded random draw, the highest
deviations, or ``diverse``: farthest-point sampling in the ensemble's feature space,
:mod:`al_flows.selection.diversity`).

``strategy`` chooses what is labelled: ``deviation`` (the candidates, as above), ``random``
(the same number of frames drawn uniformly from everything explored, the baseline an
active-learning campaign must beat) or ``all`` (every explored frame up to the cap). The
classes and the accurate ratio, which decide convergence, are the same for every strategy.

``trust_lo: adaptive`` sets the lower level each round from the round's own deviations, so that a
set number or fraction of the highest-deviation frames below trust_hi are candidates
(:mod:`al_flows.selection.adaptive`, dpgen2's adaptive lower level).

Strategy ``deviation`` also follows two per-frame marks an explorer may set (the ANI-Al sampler,
:mod:`al_flows.exploration.md`): ``info['always_label']`` (a trajectory's stop frame) is labelled
whatever its class and outside the cap; ``info['selectable'] = False`` (a snapshot that only
measures) is never picked. ``random`` and ``all`` ignore both: as baselines they draw from every
explored frame.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np
from ase import Atoms
from pydantic import Field, model_validator

from al_flows.frames.ids import frame_id
from al_flows.selection.adaptive import AdaptiveLevelSettings, adaptive_trust_lo
from al_flows.selection.calibration import CalibrationSettings
from al_flows.selection.diversity import DiverseFeatures, diverse_pick
from al_flows.settings import Settings

ACCURATE, CANDIDATE, FAILED = "accurate", "candidate", "failed"


class SelectionSettings(Settings):
    """Trust window (eV/Angstrom) and the cap on frames labelled per round."""

    trust_lo: Annotated[float, Field(ge=0)] | Literal["adaptive"] = Field(
        0.05,
        description="eV/Angstrom; below: accurate. 'adaptive': set each round so that the highest-deviation frames "
        "below trust_hi become candidates (selection.adaptive; al_flows.selection.adaptive)",
    )
    trust_hi: float = Field(0.30, gt=0, description="eV/Angstrom; at or above: failed")
    strategy: Literal["deviation", "random", "all"] = Field(
        "deviation",
        description="which explored frames are labelled: deviation (candidates inside the trust window, picked by "
        "'pick' up to max_candidates), random (max_candidates frames drawn uniformly from everything explored: the "
        "baseline active learning must beat), all (every explored frame, up to max_candidates, evenly spread)",
    )
    max_candidates: int = Field(20, gt=0, description="frames labelled per round at most")
    pick: Literal["random", "highest", "diverse"] = Field(
        "random",
        description="strategy deviation: how candidates are capped: random (seeded draw), highest (largest "
        "deviations), diverse (farthest-point sampling in the ensemble's SchNet feature space, from the highest "
        "deviation; al_flows.selection.diversity)",
    )
    diverse_features: DiverseFeatures = Field(
        "structure",
        description="pick diverse: structure (per frame the mean of its atom features, Euclidean distance) or atoms "
        "(the frames' sets of atom features, symmetric Hausdorff distance: for large cells)",
    )
    calibrate: CalibrationSettings | None = Field(
        None,
        description="fit deviation -> true error after each round and set the next round's levels from target errors",
    )
    adaptive: AdaptiveLevelSettings | None = Field(
        None, description="trust_lo: adaptive: how many frames become candidates, floor, ceiling, convergence"
    )

    @model_validator(mode="after")
    def _window(self):
        if self.trust_lo == "adaptive":
            self._check_adaptive()
        elif self.adaptive is not None:
            raise ValueError(
                f"selection.adaptive applies to trust_lo: adaptive only (trust_lo is {self.trust_lo}); "
                "set trust_lo: adaptive or remove selection.adaptive"
            )
        elif not self.trust_lo < self.trust_hi:
            raise ValueError(
                f"selection.trust_lo ({self.trust_lo}) must be lower than selection.trust_hi ({self.trust_hi})"
            )
        if self.diverse_features != "structure" and self.pick != "diverse":
            raise ValueError(
                f"selection.diverse_features={self.diverse_features!r} applies to pick: diverse only "
                f"(pick is {self.pick!r}); set pick: diverse or remove diverse_features"
            )
        return self

    def _check_adaptive(self) -> None:
        if self.calibrate is not None:
            raise ValueError(
                "selection.trust_lo: adaptive and selection.calibrate both set the lower trust level; keep one"
            )
        ceiling = self.adaptive_settings.ceiling
        if ceiling is not None and ceiling > self.trust_hi:
            raise ValueError(
                f"selection.adaptive.ceiling ({ceiling}) is above selection.trust_hi ({self.trust_hi}); "
                "lower the ceiling or remove it (trust_hi is the ceiling then)"
            )

    @property
    def is_adaptive(self) -> bool:
        """Whether each round sets its own trust_lo from its deviations (trust_lo: adaptive)."""
        return self.trust_lo == "adaptive"

    @property
    def adaptive_settings(self) -> AdaptiveLevelSettings:
        """The adaptive level's settings (``selection.adaptive``, else their defaults)."""
        return self.adaptive if self.adaptive is not None else AdaptiveLevelSettings()

    @property
    def needs_features(self) -> bool:
        """Whether selecting needs the ensemble's features (strategy deviation with pick diverse)."""
        return self.strategy == "deviation" and self.pick == "diverse"


def classify(deviations, trust_lo: float, trust_hi: float) -> np.ndarray:
    """Status per deviation (eV/Angstrom): 'accurate' (< lo), 'candidate' (lo <= eps < hi),
    'failed' (>= hi or non-finite). Returns a numpy array of str."""
    eps = np.asarray(deviations, dtype=float).reshape(-1)
    status = np.full(eps.shape, FAILED, dtype="<U9")
    finite = np.isfinite(eps)
    status[finite & (eps < trust_lo)] = ACCURATE
    status[finite & (eps >= trust_lo) & (eps < trust_hi)] = CANDIDATE
    return status


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


def round_trust_lo(deviations: np.ndarray, settings: SelectionSettings) -> float:
    """The lower trust level (eV/Angstrom) a round classifies with: the configured (or calibrated)
    number, or with ``trust_lo: adaptive`` the level set from this round's ``deviations``
    (:func:`al_flows.selection.adaptive.adaptive_trust_lo`)."""
    if settings.trust_lo == "adaptive":
        return adaptive_trust_lo(deviations, settings.trust_hi, settings.adaptive_settings)
    return float(settings.trust_lo)


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


@dataclass(frozen=True)
class StopDecision:
    """Whether a campaign stops after a round, and why (``converged``, ``budget``, ``round limit``
    or '')."""

    converged: bool
    stop: bool
    reason: str
    next_stage: int = 0


def stop_decision(
    accurate_ratio: float,
    n_explored: int,
    round_: int,
    target_accurate_ratio: float | None,
    max_rounds: int,
    median_survival_ps: float | None = None,
    target_survival_ps: float | None = None,
    stage: int = 0,
    n_stages: int = 1,
    properties_met: bool | None = None,
    properties_only: bool = False,
    failed_ratio: float | None = None,
    step_back_failed_ratio: float | None = None,
    budget_spent: bool = False,
    levels_settled: bool | None = None,
) -> StopDecision:
    """The one place that decides when a campaign stops.

    After round ``round_`` (0-based) the campaign has converged when the round explored
    something and every target that is set is met: the accurate ratio reached
    ``target_accurate_ratio``, the median survival time of the ANI-Al trajectories
    (ps; None when the round ran none) reached ``target_survival_ps``, and, when the campaign
    lists properties (``properties_met`` not None), every listed property is within its
    tolerance (``convergence.properties``). With ``properties_only`` (``convergence.mode:
    properties``) the properties alone decide. It stops when it converged or when
    ``round_ + 1`` rounds (the limit, ``max_rounds``) have trained. A campaign that converges
    in its last allowed round has converged.

    Staged exploration (DP-GEN; ``n_stages`` > 1, this round in ``stage``, 0-based): meeting the
    targets in a stage before the last moves the next round to the next stage (``next_stage``)
    instead of converging; the campaign converges when the last stage meets them. An auto schedule
    (``step_back_failed_ratio`` set; :mod:`al_flows.exploration.auto_schedule`) also steps back: a
    round that did not meet the targets and whose ``failed_ratio`` (failed / explored frames)
    exceeds ``step_back_failed_ratio`` moves the next round one stage down (not below 0).

    ``levels_settled``: with an adaptive lower trust level (``trust_lo: adaptive``; None otherwise)
    whether it stopped moving (:func:`al_flows.selection.adaptive.levels_settled`). It takes the
    place of the accurate-ratio target, which the adaptive level makes meaningless (it fixes the
    candidate share), as dpgen2 does.

    ``budget_spent``: the labelling budget allows this round no label
    (:func:`al_flows.selection.budget.allowance` is 0); a campaign that has not converged stops,
    reason ``budget`` (before the round limit: raising max_rounds alone would not continue it).
    """
    if properties_only:
        met = bool(properties_met)
    else:
        if levels_settled is not None:
            ratio_ok = levels_settled
        else:
            ratio_ok = target_accurate_ratio is None or accurate_ratio >= target_accurate_ratio
        survival_ok = target_survival_ps is None or (
            median_survival_ps is not None and median_survival_ps >= target_survival_ps
        )
        met = n_explored > 0 and ratio_ok and survival_ok and properties_met is not False
    if met and stage >= n_stages - 1:
        return StopDecision(True, True, "converged", stage)
    following = stage + 1 if met else stage
    lost = step_back_failed_ratio is not None and failed_ratio is not None and failed_ratio > step_back_failed_ratio
    if not met and lost:
        following = max(stage - 1, 0)
    if budget_spent:
        return StopDecision(False, True, "budget", following)
    if round_ + 1 >= max_rounds:
        return StopDecision(False, True, "round limit", following)
    return StopDecision(False, False, "", following)
