"""Selection strategies: deviation (trust window), random (uniform over everything explored)
and all (every explored frame up to the cap), with counts, duplicates and provenance."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from al_flows.selection.strategies import select
from al_flows.selection.trust_levels import SelectionSettings
from helpers import frames_with_deviations as frames_with

DEVS = [0.01, 0.2, 0.02, 0.3, 0.9, 0.15, 0.03, 0.5, 0.25, 0.04]  # window [0.1, 0.6): 1, 3, 5, 7, 8


def test_random_draws_uniformly_from_every_explored_frame():
    s = SelectionSettings(trust_lo=0.1, trust_hi=0.6, max_candidates=4, strategy="random")
    counts = np.zeros(len(DEVS))
    for seed in range(2000):
        res = select(frames_with(DEVS), s, seed=seed)
        assert len(res.selected) == 4 and len(set(res.selected)) == 4 and res.selected == sorted(res.selected)
        counts[res.selected] += 1
    # each frame is picked with probability 4/10; 2000 draws: std of a count = sqrt(2000 * 0.4 * 0.6) = 21.9
    assert np.all(np.abs(counts - 800) < 5 * 21.9), counts
    assert counts[[0, 2, 6, 9]].sum() > 0 and counts[4] > 0  # accurate and failed frames too, not only candidates


def test_random_is_seeded_and_classes_do_not_depend_on_strategy():
    frames = frames_with(DEVS)
    by = {
        st: select(frames, SelectionSettings(trust_lo=0.1, trust_hi=0.6, max_candidates=3, strategy=st), seed=5)
        for st in ("deviation", "random", "all")
    }
    again = select(frames, SelectionSettings(trust_lo=0.1, trust_hi=0.6, max_candidates=3, strategy="random"), seed=5)
    assert again.selected == by["random"].selected
    for res in by.values():
        assert (res.n_accurate, res.n_candidate, res.n_failed) == (4, 5, 1)
        assert res.accurate_ratio == pytest.approx(0.4)
    assert set(by["deviation"].selected) <= {1, 3, 5, 7, 8}


def test_all_takes_every_frame_below_the_cap_and_spreads_above_it():
    frames = frames_with(DEVS)
    res = select(frames, SelectionSettings(max_candidates=20, strategy="all"))
    assert res.selected == list(range(10))
    res = select(frames, SelectionSettings(max_candidates=4, strategy="all"))
    assert res.selected == [0, 3, 6, 9]  # linspace(0, 9, 4) rounded: evenly spread over the exploration order


def test_random_and_all_skip_labelled_frames_and_repeats():
    frames = frames_with(DEVS)
    frames[5].info["frame_id"] = "f1"  # a repeat of frame 1
    for st in ("random", "all"):
        res = select(frames, SelectionSettings(max_candidates=10, strategy=st), exclude_ids={"f0", "f2"}, seed=1)
        assert res.selected == [1, 3, 4, 6, 7, 8, 9] and res.n_duplicate == 3


def test_campaign_with_random_strategy_records_it(tmp_path):
    """A tiny campaign run with strategy random: its selection documents and its labels say so."""
    from al_flows.campaign.config import validate_campaign
    from al_flows.campaign.lineage import label_lineage
    from al_flows.campaign.record import CampaignRecord
    from al_flows.campaign.run import open_store, run_campaign
    from helpers import TINY

    settings = copy.deepcopy(TINY)
    settings["max_rounds"] = 2
    settings["selection"] = {
        "trust_lo": 1e5,
        "trust_hi": 1e6,
        "max_candidates": 3,
        "strategy": "random",
    }  # all 'accurate'
    settings["convergence"] = {"accurate_ratio": 1.0}
    config = validate_campaign(settings)
    # every frame accurate: round 0 converges and labels nothing, whatever the strategy
    report = run_campaign(config, ".", tmp_path, echo=lambda *_: None)
    assert report["converged"] and report["rounds"][0]["n_labelled"] == 0

    settings["name"] = "tiny-random"
    settings["selection"] = {
        "trust_lo": 1e-9,
        "trust_hi": 2e-9,
        "max_candidates": 3,
        "strategy": "random",
    }  # all "failed"
    config = validate_campaign(settings)
    report = run_campaign(config, ".", tmp_path / "r", echo=lambda *_: None)
    row = report["rounds"][0]
    assert row["n_candidate"] == 0 and row["n_labelled"] == 3  # random labels frames outside the window too
    store = open_store(config, tmp_path / "r")
    try:
        record = CampaignRecord(store, config.name)
        sel = record.outputs("select", 0, properties=["output.strategy", "output.n_selected"])[0]["output"]
        assert sel == {"strategy": "random", "n_selected": 3}
        labels = [r for r in record.labels().values() if r["round"] == 0]
        assert len(labels) == 3 and {r["selection"] for r in labels} == {"random"}
        assert {r["selection"] for r in record.labels().values() if r["round"] < 0} == {"initial"}
        chain = label_lineage(record, labels[0]["frame_id"])["chain"]
        assert next(c for c in chain if c["kind"] == "selection")["strategy"] == "random"
    finally:
        store.close()
    assert json.loads((tmp_path / "r" / "campaign.json").read_text())["selection"]["strategy"] == "random"
