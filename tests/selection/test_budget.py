"""The labelling budget (labeller.budget) at unit level: which of a round's selected frames are
labelled and which are recorded as skipped, the stop for a spent budget, the core-hour arithmetic
from hand-made timings, and one-line errors for bad budget values."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from ase import Atoms

from al_flows.active_learning.jobs.selection import SelectMaker, selected_words
from al_flows.active_learning.stop_policy import StopDecision, StopPolicy
from al_flows.frames.extxyz import frames_from_bytes, frames_text
from al_flows.selection.budget import (
    BudgetError,
    BudgetSpent,
    LabelBudget,
    affordable,
    allowance,
    cost_per_label,
    spend,
)
from al_flows.selection.strategies import select
from al_flows.selection.trust_levels import SelectionSettings
from helpers import TINY, frames_with_deviations

# f0 accurate, f4 failed; candidates (0.05 <= eps < 0.3): f1 0.08, f2 0.15, f3 0.25, f5 0.12, f6 0.20
DEVIATIONS = [0.01, 0.08, 0.15, 0.25, 0.5, 0.12, 0.20]
BY_PRIORITY = ["f3", "f6", "f2", "f5", "f1"]  # highest deviation first


def run_select(budget=None, spent=None, pick="highest", strategy="deviation", max_candidates=10, **targets):
    maker = SelectMaker(
        settings=SelectionSettings(
            trust_lo=0.05, trust_hi=0.3, max_candidates=max_candidates, pick=pick, strategy=strategy
        ),
    )
    policy = StopPolicy(accurate_ratio=targets.get("target", 0.95), max_rounds=10, budget=budget)
    explored = [{"frames_blob": frames_text(frames_with_deviations(DEVIATIONS)), "ensemble_id": "e"}]
    return SelectMaker.make.original(maker, explored, [], "c", 3, seed=0, spent=spent, policy=policy)


def labelled_ids(doc) -> list[str]:
    return [a.info["frame_id"] for a in frames_from_bytes(doc.selected_blob)]


@pytest.mark.parametrize("pick", ["highest", "random"])
def test_labels_per_round_labels_the_highest_priority_and_records_the_rest(pick):
    """A budget of 2 labels per round: the two candidates of highest deviation (f3 0.25, f6 0.20)
    are labelled; f2, f5, f1 are recorded as skipped with their deviations, priorities and reason."""
    doc = run_select(LabelBudget(labels_per_round=2), pick=pick)
    assert labelled_ids(doc) == ["f3", "f6"]  # exploration order, as without a budget
    assert doc.n_selected == 2 and not doc.stop and doc.stop_reason == ""
    assert [(s["frame_id"], s["deviation"], s["priority"]) for s in doc.budget_skipped] == [
        ("f2", 0.15, 2),
        ("f5", 0.12, 3),
        ("f1", 0.08, 4),
    ]
    reason = "labeller.budget.labels_per_round: 2 label(s) per round; 2 frame(s) of higher priority labelled"
    assert {s["reason"] for s in doc.budget_skipped} == {reason}
    assert {r["frame_id"] for r in doc.records if r["selected"]} == {"f3", "f6"}
    assert doc.budget["allowed"] == 2 and doc.budget["limit"] == "labels_per_round"
    assert doc.budget["spent_before"] == BudgetSpent().model_dump()


def test_without_a_budget_the_selection_is_as_before():
    doc = run_select()
    assert labelled_ids(doc) == ["f1", "f2", "f3", "f5", "f6"]
    assert doc.budget is None and doc.budget_skipped == [] and doc.n_selected == 5
    frames = frames_with_deviations(DEVIATIONS)
    result = select(frames, SelectionSettings(trust_lo=0.05, trust_hi=0.3, max_candidates=10, pick="highest"))
    assert result.selected == [1, 2, 3, 5, 6]
    assert [frames[i].info["frame_id"] for i in result.priority] == BY_PRIORITY


def test_priority_puts_always_label_frames_first_and_keeps_random_baselines_uniform():
    frames = frames_with_deviations(DEVIATIONS)
    frames[4].info["always_label"] = True  # a failed stop frame: labelled whatever its class
    result = select(frames, SelectionSettings(trust_lo=0.05, trust_hi=0.3, max_candidates=10))
    assert [frames[i].info["frame_id"] for i in result.priority] == ["f4", *BY_PRIORITY]
    baseline = select(
        frames_with_deviations(DEVIATIONS), SelectionSettings(strategy="random", max_candidates=4), seed=5
    )
    assert sorted(baseline.priority) == baseline.selected  # the same frames, in a random order
    again = select(frames_with_deviations(DEVIATIONS), SelectionSettings(strategy="random", max_candidates=4), seed=5)
    assert again.priority == baseline.priority  # seeded


def test_labels_total_allows_what_is_left_and_a_spent_budget_stops_the_campaign():
    budget = LabelBudget(labels_total=10)
    doc = run_select(budget, spent={"labels": 9})
    assert labelled_ids(doc) == ["f3"] and [s["frame_id"] for s in doc.budget_skipped] == ["f6", "f2", "f5", "f1"]
    assert doc.budget_skipped[0]["reason"].startswith("labeller.budget.labels_total: 1 of 10 label(s) left")
    spent = run_select(budget, spent={"labels": 10})
    assert (spent.stop, spent.converged, spent.stop_reason) == (True, False, "budget")
    assert spent.budget["allowed"] == 0 and spent.budget_skipped == []  # a stopping round labels nothing
    # convergence wins over a spent budget: every frame accurate with target 0.1
    assert run_select(budget, spent={"labels": 10}, target=0.1).stop_reason == "converged"


def test_the_tighter_limit_applies():
    budget = LabelBudget(labels_per_round=4, labels_total=20)
    assert allowance(budget, BudgetSpent(labels=17)).n == 3
    assert allowance(budget, BudgetSpent(labels=17)).limit == "labels_total"
    assert allowance(budget, BudgetSpent(labels=5)).n == 4
    assert allowance(None, BudgetSpent(labels=10**6)).n is None
    # label limits only: no cost needed (none refused), but a measured one is kept to cost crashed runs
    assert allowance(budget, BudgetSpent()).core_hours_per_label is None
    timed = allowance(budget, BudgetSpent(timed_runs=2, timed_core_hours=3.0))
    assert (timed.n, timed.core_hours_per_label) == (4, 1.5)


# -- core-hours from hand-made timings -----------------------------------------------------------


def test_core_hours_of_a_run_from_its_taskdoc_run_stats():
    from emmet.core.vasp.calculation import RunStatistics

    from al_flows.labelling.vasp_labels import run_core_hours

    # 1800 s on 16 cores = 8 core-hours; emmet's model or its JSON form
    assert run_core_hours({"run_stats": {"overall": {"elapsed_time": 1800.0, "cores": 16}}}) == 8.0
    assert run_core_hours({"run_stats": {"overall": RunStatistics(elapsed_time=900.0, cores=32)}}) == 8.0
    assert run_core_hours({"run_stats": {"overall": {"elapsed_time": 1800.0, "cores": 0}}}) is None
    assert run_core_hours({"run_stats": None}) is None and run_core_hours({}) is None


def test_collect_records_the_core_hours_of_the_timed_runs():
    """Two TaskDocs with timings (one failed label: its run still cost), one crashed job (None)."""
    from al_flows.active_learning.jobs.vasp_labelling import collect_vasp_labels

    frames = []
    for i in range(3):
        a = Atoms("Cu", positions=[[0, 0, 0]], cell=[3, 3, 3], pbc=True)
        a.info["frame_id"] = f"f{i}"
        frames.append(a)
    ok = {
        "state": "successful",
        "output": {"energy": -3.5, "forces": [[0.0, 0.0, 0.0]], "stress": None, "structure": None},
        "run_stats": {"overall": {"elapsed_time": 3600.0, "cores": 4}},  # 4 core-hours
    }
    failed = {"state": "failed", "run_stats": {"overall": {"elapsed_time": 1800.0, "cores": 4}}}  # 2
    doc = collect_vasp_labels.original(
        {"selected_blob": frames_text(frames)}, [ok, failed, None], ["u0", "u1", "u2"], "c", 0, "vasp:x", "s", 50.0, 0.0
    )
    assert (doc.n_labelled, doc.n_failed, doc.n_timed) == (1, 2, 2)
    assert doc.core_hours == 6.0


def test_core_hour_allowance_and_spending_by_hand():
    budget = LabelBudget(core_hours_per_round=7.0, core_hours_total=20.0)
    # 3 timed runs of 6 core-hours in all: 2 core-hours per label
    spent = BudgetSpent(labels=4, core_hours=15.0, timed_runs=3, timed_core_hours=6.0)
    assert cost_per_label(budget, spent) == (2.0, "mean of 3 timed VASP run(s)")
    got = allowance(budget, spent)  # per round 7 / 2 -> 3; left 20 - 15 = 5 -> 2
    assert (got.n, got.limit, got.core_hours_per_label) == (2, "core_hours_total", 2.0)
    assert got.reason == (
        "labeller.budget.core_hours_total: 5 of 20 core-hours left at 2 core-hours per label "
        "(mean of 3 timed VASP run(s))"
    )
    assert allowance(budget, spent.model_copy(update={"core_hours": 1.0})).n == 3  # the per-round limit
    # a round of 3 labels: 2 timed runs took 5 core-hours, the untimed one is counted at 2
    after = spend(spent, 3, 5.0, 2, 2.0)
    assert after == BudgetSpent(labels=7, core_hours=22.0, timed_runs=5, timed_core_hours=11.0)
    assert allowance(budget, after).n == 0  # the total is spent
    # an exact multiple is not lost to binary rounding: 0.3 core-hours at 0.1 per label
    assert 0.3 / 0.1 < 3 and affordable(0.3, 0.1) == 3
    assert affordable(0.0, 0.1) == 0 and affordable(-1.0, 0.1) == 0


def test_a_guess_before_any_timing_and_a_clear_refusal_without_one():
    guessed = LabelBudget(core_hours_per_round=10.0, core_hours_per_label=4.0)
    got = allowance(guessed, BudgetSpent())
    assert (got.n, got.core_hours_per_label) == (2, 4.0)
    assert "core_hours_per_label, no VASP run timed yet" in got.estimate_from
    measured = allowance(guessed, BudgetSpent(timed_runs=2, timed_core_hours=5.0))  # 2.5 each: measured wins
    assert (measured.n, measured.core_hours_per_label) == (4, 2.5)
    with pytest.raises(BudgetError, match=r"^labeller\.budget\.core_hours_per_label: core-hour limits are set") as err:
        allowance(LabelBudget(core_hours_total=10.0), BudgetSpent())
    assert "\n" not in str(err.value)


# -- configuration -----------------------------------------------------------------------------


def with_budget(budget, labeller: dict | None = None) -> dict:
    d = copy.deepcopy(TINY)
    d["labeller"] = {**(labeller or d["labeller"]), "budget": budget}
    if labeller is not None:  # VASP: the test set of single points
        d["test_set"] = {"kind": "perturbed"}
    return d


@pytest.mark.parametrize(
    "budget, message",
    [
        ({"labels_per_round": 0}, "labeller.budget.labels_per_round: Input should be greater than 0"),
        ({"labels_total": 2.5}, "labeller.budget.labels_total: Input should be a valid integer"),
        ({"core_hours_total": -1.0}, "labeller.budget.core_hours_total: Input should be greater than 0"),
        ({}, "labeller.budget: no limit given; set labels_per_round, labels_total"),
        ({"labels_totl": 3}, "labeller.budget.labels_totl: unknown key"),
        (
            {"labels_total": 3, "core_hours_per_label": 1.0},
            "labeller.budget: core_hours_per_label is only used by core-hour limits",
        ),
        (
            {"core_hours_total": 10.0},
            "labeller.budget.core_hours_total: core-hours are counted from VASP runs' timings, and this labeller "
            "is ase; limit labels_per_round / labels_total instead",
        ),
    ],
)
def test_bad_budgets_are_refused_in_one_line_naming_the_field(budget, message):
    from al_flows.campaign.config import ConfigError, validate_campaign

    with pytest.raises(ConfigError) as err:
        validate_campaign(with_budget(budget))
    assert "\n" not in str(err.value) and message in str(err.value)


def test_a_pool_study_refuses_a_budget():
    import yaml

    from al_flows.campaign.config import ConfigError, validate_campaign

    pool = yaml.safe_load((Path(__file__).resolve().parents[2] / "flows" / "cuni_pool_emt.yaml").read_text())
    pool["labeller"] = {**pool.get("labeller", {"kind": "ase"}), "budget": {"labels_total": 5}}
    with pytest.raises(ConfigError, match=r"labeller\.budget: limits the labels of active-learning rounds"):
        validate_campaign(pool, imports=False)


def test_the_budget_is_outside_the_fingerprint_and_the_label_settings():
    from al_flows.campaign.config import validate_campaign
    from al_flows.labelling.vasp_inputs import label_settings_id

    plain = validate_campaign(copy.deepcopy(TINY))
    budgeted = validate_campaign(with_budget({"labels_total": 4, "labels_per_round": 2}))
    assert budgeted.fingerprint() == plain.fingerprint() == "fa122faf91dd4d02"
    assert label_settings_id(budgeted.labeller) == label_settings_id(plain.labeller)
    vasp = {"kind": "vasp", "potcar_spec": True}
    a = validate_campaign(with_budget(None, vasp))
    b = validate_campaign(with_budget({"core_hours_total": 50.0, "core_hours_per_label": 2.0}, vasp))
    assert a.fingerprint() == b.fingerprint() and label_settings_id(a.labeller) == label_settings_id(b.labeller)


def test_python_api_budget_outside_the_fingerprint_and_core_hours_need_vasp():
    from ase.build import bulk

    from al_flows.active_learning.flows import ActiveLearningMaker

    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    plain = ActiveLearningMaker().with_structures(cu)
    limited = ActiveLearningMaker(stop_policy=StopPolicy(budget=LabelBudget(labels_total=5))).with_structures(cu)
    assert plain.fingerprint == limited.fingerprint and len(plain.fingerprint) == 16
    hours = StopPolicy(budget=LabelBudget(core_hours_total=5.0, core_hours_per_label=1.0))
    with pytest.raises(ValueError, match=r"^stop_policy\.budget: core-hour limits .* this labeller is not VASP"):
        ActiveLearningMaker(stop_policy=hours)  # EMT


def test_a_stopping_round_says_it_labels_nothing_and_an_extension_labels_its_selection_within_the_budget():
    """Round 3 of 4 stops the campaign: its 5 candidates are selected but not labelled, the progress
    words say so, and the selection keeps its priority order. A later run that extends the campaign
    labels that selection, cut to what the budget given then allows (2 of 10 labels left): the 2
    frames of highest priority, marked as labelled on extension; also for a document stored without
    the priority (highest deviation first)."""
    maker = SelectMaker(settings=SelectionSettings(trust_lo=0.05, trust_hi=0.3, max_candidates=10, pick="highest"))
    explored = [{"frames_blob": frames_text(frames_with_deviations(DEVIATIONS)), "ensemble_id": "e"}]
    doc = SelectMaker.make.original(maker, explored, [], "c", 3, seed=0, policy=StopPolicy(max_rounds=4))
    assert (doc.stop, doc.stop_reason, doc.n_selected) == (True, "round limit", 5)
    assert labelled_ids(doc) == ["f1", "f2", "f3", "f5", "f6"] and doc.priority == BY_PRIORITY
    assert selected_words(5, StopDecision(False, True, "round limit")) == (
        "5 (not labelled: the campaign stops, round limit)"
    )
    assert selected_words(5, StopDecision(False, False, "")) == "5"
    assert selected_words(0, StopDecision(True, True, "converged")) == "0"

    budgeted = StopPolicy(max_rounds=4, budget=LabelBudget(labels_total=10))
    stored = doc.model_dump()
    for selection in (stored, {**stored, "priority": []}):
        ext = SelectMaker.extension.original(maker, selection, "c", 3, spent={"labels": 8}, policy=budgeted)
        assert labelled_ids(ext) == ["f3", "f6"] and (ext.n_selected, ext.n_to_label) == (5, 2)
        assert [s["frame_id"] for s in ext.budget_skipped] == ["f2", "f5", "f1"]
        assert ext.budget["allowed"] == 2 and ext.budget["spent_before"]["labels"] == 8
        assert all(a.info["labelled_on_extension"] for a in frames_from_bytes(ext.selected_blob))
    # without a budget the whole selection is labelled, in the selection's order
    whole = SelectMaker.extension.original(maker, stored, "c", 3)
    assert labelled_ids(whole) == ["f1", "f2", "f3", "f5", "f6"] and whole.budget is None and not whole.budget_skipped
