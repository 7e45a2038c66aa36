"""The adaptive lower trust level (dpgen2's adaptive-lower report): which frames become candidates,
the floor and ceiling, and convergence when the level stops moving."""

import numpy as np
import pytest
from pydantic import ValidationError

from al_flows.selection.adaptive import AdaptiveLevelSettings, adaptive_trust_lo, levels_settled
from al_flows.selection.trust_levels import CANDIDATE, classify


def test_the_n_highest_frames_below_trust_hi_become_candidates():
    eps = np.array([0.01, 0.5, 0.02, 0.09, 0.03, np.nan, 0.07, 0.04, 0.8])
    level = adaptive_trust_lo(eps, trust_hi=0.3, settings=AdaptiveLevelSettings(n_candidates=3))
    assert level == 0.04  # 0.09, 0.07, 0.04 are the three highest below 0.3; nan, 0.5, 0.8 failed
    status = classify(eps, level, 0.3)
    assert sorted(eps[status == CANDIDATE]) == [0.04, 0.07, 0.09]


def test_a_fraction_wins_over_a_smaller_number():
    eps = np.linspace(0.001, 0.2, 200)  # all below trust_hi
    level = adaptive_trust_lo(eps, 0.3, AdaptiveLevelSettings(n_candidates=5, fraction=0.1))
    assert int((eps >= level).sum()) == 20  # floor(0.1 * 200) > 5
    level = adaptive_trust_lo(eps, 0.3, AdaptiveLevelSettings(n_candidates=30, fraction=0.1))
    assert int((eps >= level).sum()) == 30


def test_fewer_frames_than_asked_makes_every_unfailed_frame_a_candidate():
    eps = [0.02, 0.01, 0.4]
    assert adaptive_trust_lo(eps, 0.3, AdaptiveLevelSettings(n_candidates=10)) == 0.01


def test_no_frame_below_trust_hi_gives_trust_hi_and_no_candidate():
    eps = [0.4, np.inf]
    level = adaptive_trust_lo(eps, 0.3, AdaptiveLevelSettings(n_candidates=10))
    assert level == 0.3
    assert CANDIDATE not in set(classify(eps, level, 0.3))


def test_floor_and_ceiling_hold_the_level():
    eps = np.array([0.001, 0.002, 0.003, 0.25])
    settings = AdaptiveLevelSettings(n_candidates=2, floor=0.01)
    assert adaptive_trust_lo(eps, 0.3, settings) == 0.01  # the 2nd highest, 0.003, is below the floor
    settings = AdaptiveLevelSettings(n_candidates=1, ceiling=0.1)
    assert adaptive_trust_lo(eps, 0.3, settings) == 0.1  # 0.25 would be the level; held at 0.1


def test_the_floor_must_be_below_the_ceiling():
    with pytest.raises(ValidationError, match="floor"):
        AdaptiveLevelSettings(floor=0.2, ceiling=0.1)


def test_levels_settle_when_every_step_of_the_checked_rounds_is_below_tolerance():
    settings = AdaptiveLevelSettings(tolerance=0.01, checked_rounds=3)
    assert not levels_settled([0.05, 0.052], settings)  # too few rounds
    assert levels_settled([0.2, 0.05, 0.052, 0.055], settings)  # the last three: steps 0.002, 0.003
    assert not levels_settled([0.05, 0.052, 0.07], settings)  # last step 0.018
    assert not levels_settled([0.05, 0.0605, 0.06], settings)  # first step 0.0105


def frames_with(deviations):
    from ase import Atoms

    out = []
    for i, eps in enumerate(deviations):
        a = Atoms("Cu", positions=[[0.1 * i, 0, 0]], cell=[5, 5, 5], pbc=True)
        a.info["deviation"] = eps
        a.info["frame_id"] = f"f{i}"
        out.append(a)
    return out


def test_select_with_an_adaptive_level_makes_the_highest_frames_candidates_and_records_the_level():
    from al_flows.selection.strategies import select
    from al_flows.selection.trust_levels import SelectionSettings

    eps = [0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.2, 0.9]  # a wide window: every frame but 0.9 below 0.3
    fixed = select(frames_with(eps), SelectionSettings(trust_lo=0.0, trust_hi=0.3, max_candidates=2))
    assert fixed.n_candidate == 7  # a fixed low level: nearly everything is a candidate
    settings = SelectionSettings(trust_lo="adaptive", trust_hi=0.3, max_candidates=2, adaptive={"n_candidates": 2})
    result = select(frames_with(eps), settings)
    assert result.trust_lo == 0.006
    assert (result.n_accurate, result.n_candidate, result.n_failed) == (5, 2, 1)
    assert result.selected == [5, 6]


def test_adaptive_settings_are_refused_where_they_do_not_apply():
    from al_flows.selection.trust_levels import SelectionSettings

    with pytest.raises(ValidationError, match="selection.adaptive applies to trust_lo: adaptive only"):
        SelectionSettings(trust_lo=0.05, adaptive={"n_candidates": 3})
    with pytest.raises(ValidationError, match="both set the lower trust level"):
        SelectionSettings(trust_lo="adaptive", calibrate={})
    with pytest.raises(ValidationError, match="ceiling"):
        SelectionSettings(trust_lo="adaptive", trust_hi=0.3, adaptive={"ceiling": 0.5})
    with pytest.raises(ValidationError, match="trust_lo"):
        SelectionSettings(trust_lo="adaptve")
    assert SelectionSettings(trust_lo="adaptive").adaptive_settings == AdaptiveLevelSettings()


def test_settled_levels_replace_the_accurate_ratio_target():
    from al_flows.active_learning.stop_policy import stop_decision

    low_ratio = {"accurate_ratio": 0.5, "n_explored": 100, "round_": 3, "target_accurate_ratio": 0.95, "max_rounds": 10}
    assert not stop_decision(**low_ratio).converged
    assert stop_decision(**low_ratio, levels_settled=True).converged
    high_ratio = {**low_ratio, "accurate_ratio": 0.99}
    assert stop_decision(**high_ratio).converged
    assert not stop_decision(**high_ratio, levels_settled=False).stop
