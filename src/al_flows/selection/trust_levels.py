"""Selection of explored frames: DP-GEN trust levels (Zhang et al.; docs/methods.md).

A frame's model deviation eps (eV/Angstrom, ``info['deviation']``) classifies it:
eps < trust_lo accurate (skip), trust_lo <= eps < trust_hi candidate (label),
eps >= trust_hi or non-finite failed (skip, likely unphysical). Candidates whose
frame_id is already labelled, or repeats within the batch, are skipped; at most
``max_candidates`` of the rest are picked per round.

``strategy`` chooses what is labelled: ``deviation`` (the candidates, as above), ``random``
(the same number of frames drawn uniformly from everything explored, the baseline an
active-learning campaign must beat) or ``all`` (every explored frame up to the cap). The
classes and the accurate ratio, which decide convergence, are the same for every strategy.

Strategy ``deviation`` also follows two per-frame marks an explorer may set (the ANI-Al sampler,
:mod:`al_flows.exploration.md`): ``info['always_label']`` (a trajectory's stop frame) is labelled
whatever its class and outside the cap; ``info['selectable'] = False`` (a snapshot that only
measures) is never picked. ``random`` and ``all`` ignore both: as baselines they draw from every
explored frame.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from ase import Atoms
from pydantic import Field, model_validator

from al_flows.frames.dataset import frame_id
from al_flows.selection.calibration import CalibrationSettings
from al_flows.settings import Settings

ACCURATE, CANDIDATE, FAILED = "accurate", "candidate", "failed"


class SelectionSettings(Settings):
    """Trust window (eV/Angstrom) and the cap on frames labelled per round."""

    trust_lo: float = Field(0.05, ge=0, description="eV/Angstrom; below: accurate")
    trust_hi: float = Field(0.30, gt=0, description="eV/Angstrom; at or above: failed")
    strategy: Literal["deviation", "random", "all"] = Field(
        "deviation",
        description="which explored frames are labelled: deviation (candidates inside the trust window, picked by "
        "'pick' up to max_candidates), random (max_candidates frames drawn uniformly from everything explored: the "
        "baseline active learning must beat), all (every explored frame, up to max_candidates, evenly spread)",
    )
    max_candidates: int = Field(20, gt=0, description="frames labelled per round at most")
    pick: Literal["random", "highest"] = Field("random", description="strategy deviation: how candidates are capped")
    calibrate: CalibrationSettings | None = Field(
        None,
        description="fit deviation -> true error after each round and set the next round's levels from target errors",
    )

    @model_validator(mode="after")
    def _window(self):
        if not self.trust_lo < self.trust_hi:
            raise ValueError(
                f"selection.trust_lo ({self.trust_lo}) must be lower than selection.trust_hi ({self.trust_hi})"
            )
        return self


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
    already labelled or repeated."""

    status: list[str] = field(default_factory=list)
    selected: list[int] = field(default_factory=list)
    priority: list[int] = field(default_factory=list)
    n_accurate: int = 0
    n_candidate: int = 0
    n_failed: int = 0
    n_duplicate: int = 0
    accurate_ratio: float = 0.0

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


def select(
    frames: list[Atoms], settings: SelectionSettings, exclude_ids: Iterable[str] = (), seed: int = 0
) -> SelectionResult:
    """Classify ``frames`` by ``info['deviation']`` and pick the frames to label.

    Eligible frames: the candidates (strategy 'deviation': those not marked ``selectable`` False,
    plus, outside the cap, every frame marked ``always_label``; module doc) or every frame
    ('random', 'all').
    Those whose frame_id (``info['frame_id']`` or computed) is in ``exclude_ids`` or repeats an
    earlier eligible frame are skipped. Of the rest at most ``max_candidates`` are kept:
    strategy 'deviation' with pick 'random' and strategy 'random' draw without replacement with
    ``numpy.random.default_rng(seed)``; pick 'highest' takes the largest deviations (ties: lower
    index first); strategy 'all' keeps evenly spaced frames in exploration order. The classes
    (accurate/candidate/failed) and the accurate ratio do not depend on the strategy.

    ``priority`` ranks the kept frames for a labelling budget (:func:`priority_order`).
    """
    frames = list(frames)
    eps = np.array([_deviation(a) for a in frames], dtype=float)
    status = classify(eps, settings.trust_lo, settings.trust_hi)
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
    if len(pool) > settings.max_candidates:
        if settings.strategy == "all":
            keep = np.unique(np.round(np.linspace(0, len(pool) - 1, settings.max_candidates)).astype(int))
            pool = [pool[j] for j in keep]
        elif settings.strategy == "random" or settings.pick == "random":
            rng = np.random.default_rng(int(seed) & 0xFFFFFFFFFFFFFFFF)
            chosen = rng.choice(len(pool), size=settings.max_candidates, replace=False)
            pool = [pool[j] for j in chosen]
        else:
            order = sorted(pool, key=lambda j: (-eps[j], j))
            pool = order[: settings.max_candidates]
    n = len(frames)
    n_accurate = int((status == ACCURATE).sum())
    return SelectionResult(
        status=[str(s) for s in status],
        selected=sorted(forced + pool),
        priority=forced + priority_order(pool, eps, settings, seed),
        n_accurate=n_accurate,
        n_candidate=int((status == CANDIDATE).sum()),
        n_failed=int((status == FAILED).sum()),
        n_duplicate=n_duplicate,
        accurate_ratio=n_accurate / n if n else 0.0,
    )


def priority_order(pool: list[int], eps: np.ndarray, settings: SelectionSettings, seed: int = 0) -> list[int]:
    """The frames ``pool`` kept by the pick, most valuable first (frames marked ``always_label``
    come before all of them). Strategy 'deviation': highest deviation first (ties: lower index);
    a pick that ranks frames by its own measure gives its order here. Strategies 'random' and
    'all', the baselines: a uniformly random order (its own generator, so the frames kept do not
    change), so that a budget's cut is a uniform sample of what they kept."""
    if settings.strategy == "deviation":
        return sorted(pool, key=lambda j: (-eps[j], j))
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFFFFFFFFFF, 1])
    return [pool[j] for j in rng.permutation(len(pool))]


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

    ``budget_spent``: the labelling budget allows this round no label
    (:func:`al_flows.selection.budget.allowance` is 0); a campaign that has not converged stops,
    reason ``budget`` (before the round limit: raising max_rounds alone would not continue it).
    """
    if properties_only:
        met = bool(properties_met)
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
