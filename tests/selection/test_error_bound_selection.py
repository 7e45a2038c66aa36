"""The select job with the calibrated bound: the uniformly drawn calibration labels, the trust window
in error units and the stop on the bound (convergence.error_bound)."""

import pytest

from al_flows.active_learning.jobs.selection import SelectMaker
from al_flows.active_learning.stop_policy import ErrorBoundTarget, RoundMeasures, StopPolicy
from al_flows.frames.extxyz import frames_from_bytes, frames_text
from al_flows.selection.strategies import calibration_sample, select
from al_flows.selection.trust_levels import SelectionSettings
from helpers import frames_with_deviations

DEVS = [0.01, 0.02, 0.03, 0.04, 0.08, 0.15, 0.25, 0.5, 0.9, 2.0]


def explored(devs=DEVS):
    return [{"frames_blob": frames_text(frames_with_deviations(devs)), "ensemble_id": "e"}]


def calibration_with_scale(q: float, n: int = 19, streak: int = 0) -> dict:
    """A previous round's calibration record whose residuals give the pooled 90 % scale ``q``
    (19 residuals with error / deviation = q)."""
    return {"residuals": [{"deviation": 0.1, "error": 0.1 * q}] * n, "bound_streak": streak}


def test_calibration_sample_draws_from_what_is_neither_failed_nor_selected():
    frames = frames_with_deviations(DEVS)
    settings = SelectionSettings(trust_lo=0.05, trust_hi=1.0, max_candidates=2, pick="highest")
    result = select(frames, settings)
    assert result.selected == [7, 8]  # 0.5 and 0.9: the highest candidates
    got = calibration_sample(frames, result, 3, exclude_ids={"f0"}, seed=4)
    assert len(got) == 3 and got == sorted(got)
    assert not {0, 7, 8, 9} & set(got)  # f0 labelled already, 7 and 8 selected, 9 failed (2.0 >= trust_hi)
    assert got == calibration_sample(frames, result, 3, exclude_ids={"f0"}, seed=4)  # seeded
    assert calibration_sample(frames, result, 50, exclude_ids={"f0"}) == [1, 2, 3, 4, 5, 6]  # all eligible
    assert calibration_sample(frames, result, 0) == []


def test_the_select_job_labels_the_sample_marked_and_within_the_budget():
    settings = SelectionSettings(
        trust_lo=0.05, trust_hi=1.0, max_candidates=2, pick="highest", bound={"random_sample": 2}
    )
    doc = SelectMaker.make.original(SelectMaker(settings=settings), explored(), [], "c", 0, seed=1)
    chosen = frames_from_bytes(doc.selected_blob)
    marks = {a.info["frame_id"]: a.info["selection"] for a in chosen}
    assert doc.n_selected == 4 and doc.n_calibration_sample == 2
    assert [marks["f7"], marks["f8"]] == ["deviation", "deviation"]
    sampled = [fid for fid, how in marks.items() if how == "calibration_sample"]
    assert len(sampled) == 2 and all(a.info.get("calibration_sample") for a in chosen if a.info["frame_id"] in sampled)
    assert sorted(r["frame_id"] for r in doc.records if r.get("calibration_sample")) == sorted(sampled)
    # a budget of 3 labels cuts the sample first: the selection comes first in priority
    policy = StopPolicy(budget={"labels_per_round": 3})
    cut = SelectMaker.make.original(SelectMaker(settings=settings), explored(), [], "c", 0, seed=1, policy=policy)
    assert cut.n_selected == 3 and cut.n_calibration_sample == 1 and len(cut.budget_skipped) == 1


def test_an_error_window_reads_the_bound_once_it_is_finite():
    settings = SelectionSettings(
        trust_lo=0.05, trust_hi=1.0, max_candidates=10, trust={"error_lo": 0.2, "error_hi": 2.0}
    )
    maker = SelectMaker(settings=settings)
    first = SelectMaker.make.original(maker, explored(), [], "c", 0, seed=0)
    assert (first.trust_lo, first.trust_hi, first.trust_levels_from) == (0.05, 1.0, "settings")
    # scale 4: the window 0.2-2.0 eV/A of error is 0.05-0.5 eV/A of deviation
    doc = SelectMaker.make.original(maker, explored(), [], "c", 1, seed=0, calibration=calibration_with_scale(4.0))
    assert doc.trust_levels_from == "error"
    assert (doc.trust_lo, doc.trust_hi) == pytest.approx((0.05, 0.5))
    assert (doc.n_accurate, doc.n_candidate, doc.n_failed) == (4, 3, 3)
    assert doc.bound == {"coverage": 0.9, "scale": pytest.approx(4.0), "n": 19, "per_element": {}}
    # too few residuals for a 90 % bound (8 < 9): the deviation levels stay
    few = SelectMaker.make.original(maker, explored(), [], "c", 1, seed=0, calibration=calibration_with_scale(4.0, 8))
    assert (few.trust_lo, few.trust_hi, few.trust_levels_from) == (0.05, 1.0, "settings")


def test_error_units_and_other_level_setters_are_refused_together():
    with pytest.raises(ValueError, match="selection.trust .* selection.calibrate"):
        SelectionSettings(trust={"error_lo": 0.1, "error_hi": 1.0}, calibrate={})
    with pytest.raises(ValueError, match="trust_lo: adaptive"):
        SelectionSettings(trust_lo="adaptive", trust={"error_lo": 0.1, "error_hi": 1.0})


def test_stop_on_the_bound_needs_its_share_for_the_rounds_in_a_row():
    policy = StopPolicy(accurate_ratio=None, max_rounds=10, error_bound=ErrorBoundTarget(target=0.1, rounds=2))
    assert policy.bound_streak(0.95, 0) == 1 and policy.bound_streak(0.95, 1) == 2
    assert policy.bound_streak(0.85, 3) == 0 and policy.bound_streak(None, 3) == 0

    def decide(share, streak):
        return policy.decide(RoundMeasures(0.0, 10, bound_share=share, bound_streak=streak), 3)

    assert not decide(0.95, 1).converged
    assert decide(0.95, 2).converged and decide(0.95, 2).reason == "converged"
    assert not decide(None, 0).converged
    # without the target the streak is not read
    plain = StopPolicy(accurate_ratio=0.5)
    assert plain.decide(RoundMeasures(0.9, 10), 0).converged


def test_the_select_job_measures_the_share_and_streak():
    settings = SelectionSettings(trust_lo=0.05, trust_hi=1.0, max_candidates=2)
    policy = StopPolicy(accurate_ratio=None, max_rounds=10, error_bound={"target": 0.2, "fraction": 0.5})
    maker = SelectMaker(settings=settings)
    # scale 4: bounds 0.04 ... 8.0; below 0.2: deviations 0.01-0.04 -> 4 of 10
    doc = SelectMaker.make.original(
        maker, explored(), [], "c", 2, seed=0, calibration=calibration_with_scale(4.0, streak=1), policy=policy
    )
    assert doc.bound_share == pytest.approx(0.4) and doc.bound_streak == 0 and not doc.converged
    # scale 2: bounds below 0.2 for deviations below 0.1 -> 5 of 10 = fraction 0.5; the round before met it too
    doc = SelectMaker.make.original(
        maker, explored(), [], "c", 2, seed=0, calibration=calibration_with_scale(2.0, streak=1), policy=policy
    )
    assert doc.bound_share == pytest.approx(0.5) and doc.bound_streak == 2 and doc.converged


def test_campaign_file_sections_parse_and_refuse_in_one_line():
    from al_flows.campaign.config import validate_campaign
    from helpers import TINY

    d = {
        **TINY,
        "selection": {**TINY["selection"], "trust_lo": 0.01, "bound": {"coverage": 0.8, "random_sample": 2}},
        "convergence": {"accurate_ratio": None, "error_bound": {"target": 0.1}},
    }
    config = validate_campaign(d)
    assert config.selection.bound.random_sample == 2
    assert config.stop_policy().error_bound.target == 0.1
    bad = {**d, "selection": {**d["selection"], "bound": {"coverage": 1.5}}}
    with pytest.raises(Exception, match="coverage") as err:
        validate_campaign(bad)
    assert "\n" not in str(err.value).strip() or "selection.bound.coverage" in str(err.value)
