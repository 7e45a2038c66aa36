"""When an active-learning campaign stops, and which exploration stage its next round explores: the
stop policy, the one owner of these decisions (docs/loop.md).

:class:`StopPolicy` holds every when-to-stop setting of a campaign: the round limit
(``max_rounds``), the convergence targets (accurate ratio, ANI-Al survival time, autotest
properties), the exploration stages and an auto schedule's step-back threshold, and the labelling
budget. After each round it takes the round's measures (:class:`RoundMeasures`) and returns one
:class:`StopDecision`: continue, stop with a reason, or move to the next stage. The select job
records the decision; the job that plans the next round, the campaign runner and the report read
it. None of these settings names a campaign's results (they are left out of its fingerprint), so
raising ``max_rounds`` or the budget, or changing a target, extends a campaign.

Pure code: no jobflow; the stored round summaries are plain dicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import Field

from al_flows.selection.budget import Allowance, BudgetSpent, LabelBudget, allowance
from al_flows.settings import Settings
from al_flows.validation.properties import PropertyConvergence

__all__ = [
    "ErrorBoundTarget",
    "DEFAULT_MAX_ROUNDS",
    "DEFAULT_ACCURATE_RATIO",
    "RoundMeasures",
    "StopDecision",
    "StopPolicy",
    "stop_decision",
]

DEFAULT_MAX_ROUNDS = 5  # rounds trained at most, unless a campaign sets max_rounds
DEFAULT_ACCURATE_RATIO = 0.95  # the share of a round's explored frames that must be accurate


class ErrorBoundTarget(Settings):
    """Converged on the calibrated error bound (``convergence.error_bound``): in ``rounds`` rounds in a
    row, at least ``fraction`` of the explored frames have a bound (:mod:`al_flows.selection.conformal`,
    nominal ``coverage``) below ``target`` (eV/Angstrom)."""

    target: float = Field(gt=0, description="eV/Angstrom; the bound on the largest atomic force error")
    fraction: float = Field(
        0.9, gt=0, le=1, description="share of a round's explored frames whose bound is below target"
    )
    rounds: int = Field(2, ge=1, description="consecutive rounds that must meet it")
    coverage: float | None = Field(
        None, gt=0, lt=1, description="nominal coverage of the bound (None: selection.bound.coverage)"
    )


@dataclass(frozen=True)
class RoundMeasures:
    """What a round measured that the stop policy judges: the accurate ratio and number of its
    explored frames, the median survival time of its ANI-Al trajectories (ps; None: it ran none),
    its convergence-property rows (None: the campaign lists none), failed / explored frames,
    with ``trust_lo: adaptive`` whether the level stopped moving (None otherwise), the share of
    explored frames whose calibrated bound is below ``convergence.error_bound``'s target (None: no
    such target, or no finite bound yet) and the rounds in a row, this one included, that met its
    fraction (``bound_streak``)."""

    accurate_ratio: float
    n_explored: int
    median_survival_ps: float | None = None
    property_rows: list[dict] | None = None
    failed_ratio: float | None = None
    levels_settled: bool | None = None
    bound_share: float | None = None
    bound_streak: int = 0

    @classmethod
    def from_summary(cls, summary: dict) -> RoundMeasures:
        """The measures a stored RoundSummary (as a dict) holds."""
        n = summary["n_explored"]
        return cls(
            accurate_ratio=summary["accurate_ratio"],
            n_explored=n,
            median_survival_ps=summary.get("median_survival_ps"),
            property_rows=summary.get("properties"),
            failed_ratio=summary.get("n_failed", 0) / n if n else None,
            levels_settled=summary.get("levels_settled"),
            bound_share=summary.get("bound_share"),
            bound_streak=summary.get("bound_streak") or 0,
        )


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
    bound_met: bool | None = None,
) -> StopDecision:
    """The stop rule (:meth:`StopPolicy.decide` applies it with a campaign's settings).

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

    ``bound_met``: with ``convergence.error_bound`` (None otherwise) whether the calibrated bound of
    the explored frames met its target for the rounds in a row it asks; one more target to meet.

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
        met = n_explored > 0 and ratio_ok and survival_ok and properties_met is not False and bound_met is not False
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


class StopPolicy(Settings):
    """Every when-to-stop setting of a campaign, and the decision after each round (module doc).

    A campaign file gives them as ``max_rounds``, ``convergence`` and ``labeller.budget``; the
    stages and the step-back threshold are not settings of their own but follow from the
    explorers (:meth:`with_stages`, which :class:`~al_flows.active_learning.flows.ActiveLearningMaker`
    applies)."""

    max_rounds: int = Field(DEFAULT_MAX_ROUNDS, ge=1, description="rounds trained at most")
    accurate_ratio: float | None = Field(
        DEFAULT_ACCURATE_RATIO, gt=0, le=1, description="target share of accurate explored frames; None: no target"
    )
    survival_time_ps: float | None = Field(
        None, gt=0, description="ps; target median survival time of ANI-Al trajectories; None: no target"
    )
    properties: PropertyConvergence | None = Field(
        None, description="autotest properties every member must reproduce (convergence.properties)"
    )
    n_stages: int = Field(1, ge=1, description="exploration stages (DP-GEN); from the explorers")
    step_back_failed_ratio: float | None = Field(
        None, description="an auto schedule's step-back threshold (failed / explored); from the explorers"
    )
    budget: LabelBudget | None = Field(None, description="limits on the labels of the rounds (labeller.budget)")
    error_bound: ErrorBoundTarget | None = Field(
        None,
        description="converged when the explored frames' calibrated bound is below a target (convergence.error_bound)",
    )

    def with_stages(self, n_stages: int, step_back_failed_ratio: float | None) -> StopPolicy:
        """This policy with the exploration stages of the campaign's explorers (and an auto schedule's
        step-back threshold, None without one)."""
        if (self.n_stages, self.step_back_failed_ratio) == (n_stages, step_back_failed_ratio):
            return self
        return self.model_copy(update={"n_stages": n_stages, "step_back_failed_ratio": step_back_failed_ratio})

    def allowance(self, spent: dict | None) -> Allowance:
        """The frames a round may label after the rounds before spent ``spent`` (a BudgetSpent as a
        dict; None: nothing yet); ``n`` None without a budget."""
        if self.budget is None:
            return Allowance(None)
        return allowance(self.budget, BudgetSpent.model_validate(spent or {}))

    def properties_met(self, rows: Sequence[dict] | None) -> bool | None:
        """Whether every listed property is within its tolerance in ``rows`` (None: none listed)."""
        return None if self.properties is None else self.properties.met(list(rows or []))

    def decide(self, measures: RoundMeasures, round_: int, stage: int = 0, spent: dict | None = None) -> StopDecision:
        """Whether the campaign stops after round ``round_`` (0-based; explored in stage ``stage``), and
        the next round's stage (:func:`stop_decision` with this policy's settings). ``spent``: the
        labelling budget the rounds before this one spent (a BudgetSpent dict)."""
        return stop_decision(
            measures.accurate_ratio,
            measures.n_explored,
            round_,
            self.accurate_ratio,
            self.max_rounds,
            measures.median_survival_ps,
            self.survival_time_ps,
            stage,
            self.n_stages,
            properties_met=self.properties_met(measures.property_rows),
            properties_only=self.properties is not None and self.properties.properties_only,
            failed_ratio=measures.failed_ratio,
            step_back_failed_ratio=self.step_back_failed_ratio,
            budget_spent=self.allowance(spent).n == 0,
            levels_settled=measures.levels_settled,
            bound_met=self.bound_met(measures),
        )

    def bound_met(self, measures: RoundMeasures) -> bool | None:
        """Whether the round meets ``error_bound`` (its share for ``rounds`` rounds in a row); None without it."""
        if self.error_bound is None:
            return None
        return measures.bound_share is not None and measures.bound_streak >= self.error_bound.rounds

    def bound_streak(self, share: float | None, previous_streak: int) -> int:
        """The rounds in a row, this one included, whose ``share`` of explored frames with a bound below
        the target reached ``error_bound.fraction`` (``previous_streak``: the round before's); 0 without
        a target or a finite bound."""
        if self.error_bound is None or share is None or share < self.error_bound.fraction:
            return 0
        return previous_streak + 1

    def decide_from_summary(self, summary: dict) -> StopDecision:
        """:meth:`decide` again for a stored RoundSummary (a dict), with this policy's (possibly
        changed) settings: how a later run knows whether a stopped campaign continues."""
        return self.decide(
            RoundMeasures.from_summary(summary),
            summary["round"],
            summary.get("stage") or 0,
            summary.get("spent_before"),
        )
