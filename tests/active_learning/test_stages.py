"""DP-GEN's staged exploration (Zhang et al.; docs/exploration.md): the loop stays in a stage
until a round meets the targets, then moves to the next; the campaign converges when the last
stage does."""

from __future__ import annotations

import copy

import pytest

from al_flows.active_learning.stop_policy import stop_decision
from al_flows.exploration.md import MDStage, NVTSettings, round_stage


def test_stop_decision_moves_through_the_stages():
    # stage 0 of 3, target not met: stay; met: next stage, not converged
    assert stop_decision(0.5, 10, 0, 0.9, 10, stage=0, n_stages=3).next_stage == 0
    moved = stop_decision(0.95, 10, 1, 0.9, 10, stage=0, n_stages=3)
    assert (moved.converged, moved.stop, moved.next_stage) == (False, False, 1)
    # the last stage met: converged
    last = stop_decision(0.95, 10, 5, 0.9, 10, stage=2, n_stages=3)
    assert (last.converged, last.stop, last.reason) == (True, True, "converged")
    # the round limit in a middle stage stops without converging
    limit = stop_decision(0.95, 10, 9, 0.9, 10, stage=1, n_stages=3)
    assert (limit.converged, limit.stop, limit.reason, limit.next_stage) == (False, True, "round limit", 2)
    # without stages (one stage) meeting the target converges, as before
    assert stop_decision(0.95, 10, 0, 0.9, 10).converged


def test_round_stage_and_settings():
    s = NVTSettings(stages=[{"temperatures_K": [300]}, {"temperatures_K": [600, 900], "n_steps": 50}])
    assert round_stage(s, round_=7, stage=1).temperatures_K == [600.0, 900.0]
    assert round_stage(s, round_=0, stage=5).n_steps == 50  # past the last: the last
    plain = round_stage(NVTSettings(temperatures_K=[300, 600]), round_=4, stage=0)
    assert isinstance(plain, MDStage) and plain.temperatures_K == [600.0]  # per round, the last for later rounds
    with pytest.raises(ValueError, match="stages replace"):
        NVTSettings(temperatures_K=[300], stages=[{"temperatures_K": [300]}])


def test_a_campaign_moves_through_its_stages_and_converges_after_the_last(tmp_path):
    from al_flows.campaign.config import validate_campaign
    from al_flows.campaign.run import run_campaign
    from al_flows.campaign.stores import make_job_store
    from al_flows.frames.extxyz import frames_from_bytes
    from al_flows.workflow.jobs import latest_outputs
    from helpers import TINY

    d = copy.deepcopy(TINY)
    d["name"] = "tiny-stages"
    d["max_rounds"] = 4
    d["explorers"] = [
        {
            "kind": "md",
            "name": "dpgen",
            "timestep_fs": 2.0,
            "record_every": 5,
            "stages": [
                {"temperatures_K": [300], "n_steps": 10},
                {"temperatures_K": [600, 900], "n_steps": 10, "systems": [0]},
            ],
        }
    ]
    # every frame accurate: each round meets the target, so each stage lasts one round
    d["selection"] = {"trust_lo": 50.0, "trust_hi": 100.0, "max_candidates": 3}
    d["convergence"] = {"accurate_ratio": 0.99}
    config = validate_campaign(d)
    report = run_campaign(config, ".", tmp_path / "run", echo=lambda *_: None)
    assert report["finished"] and len(report["rounds"]) == 2  # two stages, then converged (not max_rounds 4)
    assert [r["stage"] for r in report["rounds"]] == [0, 1]
    store = make_job_store(config.store, tmp_path / "run")
    store.connect()
    try:
        sels = [latest_outputs(store, config.name, "select", {"metadata.round": k})[0]["output"] for k in (0, 1)]
        assert [(s["stage"], s["next_stage"], s["converged"]) for s in sels] == [(0, 1, False), (1, 1, True)]
        explored = [
            frames_from_bytes(
                latest_outputs(store, config.name, "explore", {"metadata.round": k}, load=True)[0]["output"][
                    "frames_blob"
                ]
            )
            for k in (0, 1)
        ]
        # stage 0: both starting structures at 300 K, 2 recorded frames each; stage 1: structure 0 only,
        # at 600 and 900 K
        assert len(explored[0]) == 4 and {(a.info["stage"], a.info["temperature_K"]) for a in explored[0]} == {
            (0, 300.0)
        }
        assert len(explored[1]) == 4 and {a.info["temperature_K"] for a in explored[1]} == {600.0, 900.0}
        assert len({a.info["parent_id"] for a in explored[1]}) == 1 and {a.info["stage"] for a in explored[1]} == {1}
        from al_flows.campaign.report import write_report

        write_report(store, config, tmp_path / "report")
        html = (tmp_path / "report" / "index.html").read_text()
        assert "<th>stage</th>" in html and "<td>1</td>" in html
        assert 'src="stages.png"' in html and (tmp_path / "report" / "stages.png").read_bytes()[:4] == b"\x89PNG"
    finally:
        store.close()
    from al_flows.cli_text import method_columns

    assert method_columns(report["rounds"][1]) == "  stage 1"
    assert method_columns(report["rounds"][0]) == ""
