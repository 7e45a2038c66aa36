"""DP-GEN trust-level selection (METHODS C)."""

import numpy as np
import pytest
from ase import Atoms
from pydantic import ValidationError

from al_flows.frames.ids import frame_id
from al_flows.selection.strategies import SelectionResult, select
from al_flows.selection.trust_levels import ACCURATE, CANDIDATE, FAILED, SelectionSettings, classify

LO, HI = 0.05, 0.30


def _frames(deviations, same_structure=()):
    """One distinct 2-atom frame per deviation; indices in same_structure share one structure."""
    frames = []
    for i, d in enumerate(deviations):
        x = 0.55 if i in same_structure else 0.1 * i
        a = Atoms("Cu2", positions=[[0, 0, 0], [2.5 + x, 0, 0]], cell=[10, 10, 10], pbc=True)
        a.info["deviation"] = d
        frames.append(a)
    return frames


def test_classify_boundaries():
    eps = np.array([0.0, 0.049999, 0.05, 0.1, 0.299999, 0.30, 5.0, np.nan, np.inf, -np.inf])
    status = classify(eps, LO, HI)
    assert list(status) == [ACCURATE, ACCURATE, CANDIDATE, CANDIDATE, CANDIDATE, FAILED, FAILED, FAILED, FAILED, FAILED]
    assert (ACCURATE, CANDIDATE, FAILED) == ("accurate", "candidate", "failed")
    assert classify([], LO, HI).shape == (0,)


def test_select_counts_and_ratio():
    devs = [0.01, 0.02, 0.03, 0.06, 0.10, 0.50, float("nan"), 0.2]
    res = select(_frames(devs), SelectionSettings(trust_lo=LO, trust_hi=HI))
    assert isinstance(res, SelectionResult)
    assert res.status == ["accurate"] * 3 + ["candidate"] * 2 + ["failed"] * 2 + ["candidate"]
    assert (res.n_accurate, res.n_candidate, res.n_failed, res.n_duplicate) == (3, 3, 2, 0)
    assert res.selected == [3, 4, 7]
    assert res.accurate_ratio == pytest.approx(3 / 8)
    assert res.n_frames == 8
    empty = select([], SelectionSettings())
    assert empty.accurate_ratio == 0.0 and empty.selected == []


def test_missing_deviation_is_failed():
    frames = _frames([0.1, 0.1])
    del frames[0].info["deviation"]
    res = select(frames, SelectionSettings())
    assert res.status == ["failed", "candidate"] and res.selected == [1]


def test_cap_random_is_seeded_and_sorted():
    devs = list(np.linspace(0.06, 0.29, 12))
    frames = _frames(devs)
    settings = SelectionSettings(max_candidates=5, pick="random")
    a = select(frames, settings, seed=1)
    b = select(frames, settings, seed=1)
    c = select(frames, settings, seed=2)
    assert a.selected == b.selected
    assert len(a.selected) == 5 and len(set(a.selected)) == 5
    assert a.selected == sorted(a.selected)
    assert a.selected != c.selected
    assert a.n_candidate == 12 and a.n_duplicate == 0


def test_cap_highest():
    devs = [0.10, 0.25, 0.07, 0.29, 0.31, 0.20, 0.01, 0.26]
    res = select(_frames(devs), SelectionSettings(max_candidates=3, pick="highest"))
    assert res.selected == [1, 3, 7]  # 0.25, 0.29, 0.26; 0.31 is failed
    ties = select(_frames([0.2, 0.2, 0.2, 0.1]), SelectionSettings(max_candidates=2, pick="highest"))
    assert ties.selected == [0, 1]


def test_exclude_ids_and_duplicates_in_batch():
    devs = [0.1, 0.2, 0.15, 0.12, 0.02]
    frames = _frames(devs, same_structure=(1, 2))  # frames 1 and 2 are the same structure
    labelled = frame_id(frames[0])
    frames[3].info["frame_id"] = "already-labelled"
    res = select(frames, SelectionSettings(), exclude_ids={labelled, "already-labelled"})
    assert res.selected == [1]
    assert res.n_candidate == 4 and res.n_duplicate == 3 and res.n_accurate == 1
    # duplicates are skipped before the cap, so the cap never wastes a slot on them
    res2 = select(frames, SelectionSettings(max_candidates=2, pick="highest"))
    assert res2.selected == [1, 3] and res2.n_duplicate == 1


def test_invalid_settings():
    with pytest.raises(
        ValidationError, match=r"selection\.trust_lo \(0\.3\) must be lower than selection\.trust_hi \(0\.3\)"
    ):
        SelectionSettings(trust_lo=0.3, trust_hi=0.3)
    with pytest.raises(ValidationError, match="trust_lo"):
        SelectionSettings(trust_lo=0.5, trust_hi=0.1)
    for bad in ({"trust_lo": -0.1}, {"max_candidates": 0}, {"pick": "best"}, {"extra": 1}):
        with pytest.raises(ValidationError):
            SelectionSettings(**bad)
    s = SelectionSettings()
    assert (s.trust_lo, s.trust_hi, s.max_candidates, s.pick) == (0.05, 0.30, 20, "random")
