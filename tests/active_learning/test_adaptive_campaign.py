"""A campaign with ``selection.trust_lo: adaptive``: each round classifies with the level set from its own
deviations, records it, passes the levels on to the next round (in the flow and when a stored campaign
is continued), and converges when the level stops moving, whatever the accurate ratio."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from al_flows.active_learning.flows import ActiveLearningMaker
from al_flows.campaign.config import validate_campaign
from al_flows.campaign.run import open_store, run_campaign
from helpers import TINY

N_CANDIDATES = 2


def adaptive_settings(tolerance: float) -> dict:
    d = copy.deepcopy(TINY)
    d["name"] = "tiny_adaptive"
    d["selection"] = {
        "trust_lo": "adaptive",
        "trust_hi": 100.0,
        "max_candidates": 3,
        "pick": "highest",
        "adaptive": {"n_candidates": N_CANDIDATES, "tolerance": tolerance, "checked_rounds": 2},
    }
    d["max_rounds"] = 3
    d["convergence"] = {"accurate_ratio": 0.99}  # out of reach: the adaptive level decides
    return d


@pytest.fixture(scope="module")
def adaptive_run(tmp_path_factory):
    """The tiny campaign with an adaptive level and a tolerance every step meets: it converges in round 1."""
    workdir = tmp_path_factory.mktemp("adaptive") / "work"
    config = validate_campaign(adaptive_settings(tolerance=1e6))
    report = run_campaign(config, ".", workdir)
    store = open_store(config, workdir)
    try:
        selections = {
            d["output"]["round"]: d["output"]
            for d in store.query({"metadata.campaign": config.name, "metadata.stage": "select"})
        }
    finally:
        store.close()
    return report, selections


def test_each_round_classifies_with_its_own_adaptive_level(adaptive_run):
    _, selections = adaptive_run
    assert sorted(selections) == [0, 1]
    for sel in selections.values():
        eps = np.array([r["deviation"] for r in sel["records"]], dtype=float)
        below = np.sort(eps[np.isfinite(eps) & (eps < 100.0)])
        assert sel["trust_lo"] == pytest.approx(below[-N_CANDIDATES], rel=0, abs=0)  # the 2nd highest deviation
        assert sel["n_candidate"] == int((eps >= sel["trust_lo"]).sum()) == N_CANDIDATES
        assert sel["n_accurate"] == len(eps) - N_CANDIDATES
        assert sel["n_selected"] == N_CANDIDATES  # below the cap of 3: every candidate


def test_levels_pass_to_the_next_round_and_settle(adaptive_run):
    report, selections = adaptive_run
    assert selections[0]["trust_lo_levels"] == [selections[0]["trust_lo"]]
    assert selections[0]["levels_settled"] is False  # one level: nothing to compare yet
    assert selections[1]["trust_lo_levels"] == [selections[0]["trust_lo"], selections[1]["trust_lo"]]
    assert selections[1]["levels_settled"] is True
    assert selections[1]["accurate_ratio"] < 0.99  # converged on the level, not on the ratio
    assert report["converged"] is True
    assert report["stop_reason"] == "converged"
    assert [r["trust_lo_levels"] for r in report["rounds"]] == [s["trust_lo_levels"] for s in selections.values()]


def test_a_continued_campaign_hands_the_stored_levels_to_its_next_round():
    config = validate_campaign(adaptive_settings(tolerance=0.001))
    maker = ActiveLearningMaker.from_config(config)
    summary = {
        "round": 0,
        "n_explored": 10,
        "accurate_ratio": 0.8,
        "n_failed": 0,
        "stop": False,
        "converged": False,
        "n_labels_total": 8,
        "n_labelled": 2,
        "dataset_uuid": "d",
        "structures_uuid": "s",
        "test_uuid": "t",
        "trust_lo_levels": [0.123],
        "levels_settled": False,
    }
    flow = maker.continue_from(summary)
    (job,) = flow.jobs
    assert job.function_kwargs["levels"] == [0.123]
    fixed = validate_campaign({**copy.deepcopy(TINY), "name": "tiny_fixed"})
    (job,) = ActiveLearningMaker.from_config(fixed).continue_from(summary).jobs
    assert "levels" not in job.function_kwargs  # a fixed level: the round job's inputs are as before
