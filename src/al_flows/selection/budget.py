"""A labelling budget (``labeller.budget``): how many of a round's selected frames may be labelled,
and when the budget of the campaign is spent.

Limits are in labels (frames sent to the labeller, per round and per campaign) and, for VASP, in
core-hours. Only the labels the rounds select count: the initial data and the test set are fixed by
their own settings. A label's cost in core-hours is estimated from the campaign's own VASP runs (the
mean of ``elapsed time x cores`` of every run whose TaskDoc reported its timings, initial labels
included; :func:`al_flows.labelling.vasp_labels.run_core_hours`), or, before any run has been timed,
from the configured guess ``core_hours_per_label``. Core-hours spent are the measured ones plus, for a
run that reported no timings (a crashed job), the estimate.

A round whose allowance (:func:`allowance`) is smaller than its selection labels the frames of
highest priority (the order of :attr:`al_flows.selection.trust_levels.SelectionResult.priority`) and
records the rest as skipped; a round whose allowance is zero stops the campaign (stop reason
``budget``, :class:`al_flows.active_learning.stop_policy.StopPolicy`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import Field, field_validator, model_validator

from al_flows.settings import Settings

# a ratio of core-hours is floored to whole labels with this relative slack, so that a budget that is
# an exact multiple of the cost (0.3 core-hours at 0.1 per label) is not lost to binary rounding
# (~1e-16 relative) -- far below a meaningful fraction of one label
_FLOOR_SLACK = 1e-9


class BudgetError(ValueError):
    """A budget that cannot be applied; the message names the field and the fix."""


class LabelBudget(Settings):
    """Limits on labelling (``labeller.budget``); a limit left out does not apply."""

    labels_per_round: int | None = Field(None, gt=0, description="frames a round may send to the labeller")
    labels_total: int | None = Field(None, gt=0, description="frames the rounds of the campaign may label in all")
    core_hours_per_round: float | None = Field(
        None, gt=0, description="VASP: core-hours a round may spend on labels (estimated per label)"
    )
    core_hours_total: float | None = Field(None, gt=0, description="VASP: core-hours the rounds may spend in all")
    core_hours_per_label: float | None = Field(
        None, gt=0, description="VASP: the cost of one label assumed until a VASP run of the campaign has been timed"
    )

    @model_validator(mode="after")
    def _limits(self):
        if not (self.labels_per_round or self.labels_total or self.limits_core_hours):
            raise ValueError(
                "no limit given; set labels_per_round, labels_total, core_hours_per_round or core_hours_total, or "
                "remove budget"
            )
        if self.core_hours_per_label is not None and not self.limits_core_hours:
            raise ValueError(
                "core_hours_per_label is only used by core-hour limits; set core_hours_per_round or "
                "core_hours_total, or remove core_hours_per_label"
            )
        return self

    @property
    def limits_core_hours(self) -> bool:
        """Whether a core-hour limit is set (they need a VASP labeller)."""
        return self.core_hours_per_round is not None or self.core_hours_total is not None


class BudgetSpent(Settings):
    """What the rounds have spent so far, and the timings the cost estimate comes from."""

    labels: int = Field(0, ge=0, description="frames the rounds sent to the labeller")
    core_hours: float = Field(0.0, ge=0, description="core-hours of those labels (measured, else estimated)")
    timed_runs: int = Field(0, ge=0, description="VASP runs with timings, initial labels included")
    timed_core_hours: float = Field(0.0, ge=0, description="their measured core-hours")

    @field_validator("*", mode="before")
    @classmethod
    def _none_is_nothing(cls, v):
        return 0 if v is None else v  # an ASE label document reports no core-hours


@dataclass(frozen=True)
class Allowance:
    """How many frames a round may label (``n``, None: no limit), the limit that sets it
    (``labeller.budget.<field>``), and a sentence saying why (for skipped frames)."""

    n: int | None
    limit: str = ""
    reason: str = ""
    core_hours_per_label: float | None = None
    estimate_from: str = ""


def cost_per_label(budget: LabelBudget, spent: BudgetSpent) -> tuple[float, str]:
    """Core-hours of one label and where the figure comes from: the mean of the timed VASP runs so
    far, else ``core_hours_per_label``; BudgetError when neither exists."""
    if spent.timed_runs > 0 and spent.timed_core_hours > 0:
        mean = spent.timed_core_hours / spent.timed_runs
        return mean, f"mean of {spent.timed_runs} timed VASP run(s)"
    if budget.core_hours_per_label is not None:
        return budget.core_hours_per_label, "labeller.budget.core_hours_per_label, no VASP run timed yet"
    raise BudgetError(
        "labeller.budget.core_hours_per_label: core-hour limits are set but no VASP run of the campaign has "
        "reported its timings yet (TaskDoc run_stats: elapsed time and cores); set core_hours_per_label to a "
        "guess of one label's core-hours"
    )


def affordable(core_hours: float, per_label: float) -> int:
    """Whole labels of ``per_label`` core-hours that ``core_hours`` pays for (0 when none)."""
    if core_hours <= 0:
        return 0
    return max(0, math.floor(core_hours / per_label * (1 + _FLOOR_SLACK)))


def allowance(budget: LabelBudget | None, spent: BudgetSpent) -> Allowance:
    """The frames a round may label with ``spent`` already spent: the smallest of the limits set
    (per round, and what is left of the campaign's; core-hours divided by the cost of a label)."""
    if budget is None:
        return Allowance(None)
    per_label: float | None = None
    source = ""
    if budget.limits_core_hours or (spent.timed_runs > 0 and spent.timed_core_hours > 0):  # else: to cost crashes
        per_label, source = cost_per_label(budget, spent)
    caps: list[tuple[int, str, str]] = []
    if budget.labels_per_round is not None:
        caps.append((budget.labels_per_round, "labels_per_round", f"{budget.labels_per_round} label(s) per round"))
    if budget.labels_total is not None:
        left = max(budget.labels_total - spent.labels, 0)
        caps.append((left, "labels_total", f"{left} of {budget.labels_total} label(s) left"))
    at = f" at {per_label:.4g} core-hours per label ({source})" if per_label is not None else ""
    if budget.core_hours_per_round is not None and per_label is not None:
        n = affordable(budget.core_hours_per_round, per_label)
        caps.append((n, "core_hours_per_round", f"{budget.core_hours_per_round:g} core-hours per round{at}"))
    if budget.core_hours_total is not None and per_label is not None:
        left_h = max(budget.core_hours_total - spent.core_hours, 0.0)
        n = affordable(left_h, per_label)
        caps.append((n, "core_hours_total", f"{left_h:.4g} of {budget.core_hours_total:g} core-hours left{at}"))
    n, name, text = min(caps, key=lambda c: c[0])  # the first of equal caps
    return Allowance(n, name, f"labeller.budget.{name}: {text}", per_label, source)


def spend(
    spent: BudgetSpent, n_requested: int, measured_core_hours: float | None, n_timed: int, per_label: float | None
) -> BudgetSpent:
    """``spent`` plus one round's labels: ``n_requested`` frames sent to the labeller, of which
    ``n_timed`` VASP runs reported ``measured_core_hours`` in all; the others are counted at
    ``per_label`` (the estimate the round used; nothing when None)."""
    measured = float(measured_core_hours or 0.0)
    untimed = max(n_requested - n_timed, 0)
    cost = measured + (untimed * per_label if per_label is not None else 0.0)
    return BudgetSpent(
        labels=spent.labels + n_requested,
        core_hours=spent.core_hours + cost,
        timed_runs=spent.timed_runs + n_timed,
        timed_core_hours=spent.timed_core_hours + measured,
    )
