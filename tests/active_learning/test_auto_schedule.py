"""Exploration that schedules itself (docs/exploration.md): levels between bounds, moved up when a
round meets the targets, back when too many frames failed, converged at the top."""

from __future__ import annotations

import copy

import pytest

from al_flows.active_learning.stop_policy import stop_decision
from al_flows.exploration.auto_schedule import AutoSchedule, level_values
from al_flows.exploration.md import NVTSettings, round_stage, stage_count
from al_flows.exploration.shear import ShearSettings, shear_level


def test_levels_are_evenly_spaced_between_the_bounds():
    assert level_values((300.0, 1200.0), 4) == [300.0, 600.0, 900.0, 1200.0]
    md = NVTSettings(ensemble="npt", schedule={"temperatures_K": [300, 1200], "pressures_GPa": [0, 6], "n_levels": 4})
    assert stage_count(md) == 4
    assert [(round_stage(md, 0, k).temperatures_K, round_stage(md, 0, k).pressures_GPa) for k in range(4)] == [
        ([300.0], [0.0]),
        ([600.0], [2.0]),
        ([900.0], [4.0]),
        ([1200.0], [6.0]),
    ]
    assert round_stage(md, 0, 9).temperatures_K == [1200.0]  # past the top: the top
    shear = ShearSettings(schedule={"gamma_max": [0.1, 0.3], "n_levels": 3})
    assert [shear_level(shear, k).gamma_max for k in range(3)] == pytest.approx([0.1, 0.2, 0.3], abs=1e-15)
    assert shear_level(shear, 1).schedule is None and stage_count(shear) == 3
    plain = ShearSettings()
    assert shear_level(plain, 2) is plain and stage_count(plain) == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"schedule": {"temperatures_K": [900, 300]}}, r"schedule.temperatures_K: give \[lowest, highest\]"),
        ({"schedule": {"gamma_max": [0.1, 0.3]}}, "schedule.temperatures_K: an md schedule needs"),
        ({"temperatures_K": [300], "schedule": {"temperatures_K": [300, 900]}}, "schedule replaces"),
        ({"schedule": {"temperatures_K": [300, 900], "pressures_GPa": [0, 5]}}, "pressures_GPa needs ensemble: npt"),
        (
            {"stages": [{"temperatures_K": [300]}], "schedule": {"temperatures_K": [300, 900]}},
            "give stages .* or schedule .*, not both",
        ),
    ],
)
def test_bad_md_schedules_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NVTSettings(**kwargs)


def test_stage_labels_say_what_each_stage_explores():
    from al_flows.exploration.stages import stage_labels

    md = NVTSettings(ensemble="npt", schedule={"temperatures_K": [300, 900], "pressures_GPa": [0, 4], "n_levels": 3})
    assert stage_labels(md) == ["300 K, 0 GPa", "600 K, 2 GPa", "900 K, 4 GPa"]
    staged = NVTSettings(stages=[{"temperatures_K": [300]}, {"temperatures_K": [600, 900]}])
    assert stage_labels(staged) == ["300 K", "600/900 K"]
    assert stage_labels(ShearSettings(schedule={"gamma_max": [0.1, 0.3], "n_levels": 2})) == ["γ 0.1", "γ 0.3"]
    assert stage_labels(NVTSettings()) == [] == stage_labels(ShearSettings())


def test_bad_shear_schedules_are_refused_in_one_line():
    with pytest.raises(ValueError, match="a shear schedule needs"):
        ShearSettings(schedule={"temperatures_K": [300, 900]})
    with pytest.raises(ValueError, match="schedule replaces gamma_max"):
        ShearSettings(gamma_max=0.2, schedule={"gamma_max": [0.1, 0.3]})
    with pytest.raises(ValueError, match="n_levels"):
        AutoSchedule(gamma_max=(0.1, 0.3), n_levels=1)


def test_the_level_moves_up_back_and_converges_at_the_top():
    # (accurate ratio, failed ratio) of hand-made rounds; target 0.9, step back above 20 % failed, 3 levels
    rounds = [(0.95, 0.0), (0.50, 0.30), (0.60, 0.10), (0.92, 0.0), (0.93, 0.05), (0.40, 0.50), (0.91, 0.0)]
    rounds.append((0.97, 0.0))
    auto = {"n_stages": 3, "step_back_failed_ratio": 0.2}
    stage, path = 0, []
    for k, (acc, failed) in enumerate(rounds):
        d = stop_decision(acc, 100, k, 0.9, 20, stage=stage, failed_ratio=failed, **auto)
        path.append((stage, d.next_stage, d.converged))
        stage = d.next_stage
        if d.stop:
            break
    assert path == [
        (0, 1, False),  # met: up
        (1, 0, False),  # 30 % failed: back
        (0, 0, False),  # neither: stay
        (0, 1, False),
        (1, 2, False),
        (2, 1, False),  # lost at the top: back
        (1, 2, False),
        (2, 2, True),  # met at the top: converged
    ]
    # no step back at level 0, nor when the threshold is off (hand-written stages)
    assert stop_decision(0.1, 100, 0, 0.9, 20, stage=0, failed_ratio=0.9, **auto).next_stage == 0
    assert stop_decision(0.1, 100, 0, 0.9, 20, stage=2, n_stages=3, failed_ratio=0.9).next_stage == 2


def test_the_select_job_steps_back_from_the_failed_frames_it_counts():
    from al_flows.active_learning.jobs.selection import SelectMaker
    from al_flows.active_learning.stop_policy import StopPolicy
    from al_flows.frames.extxyz import frames_text
    from al_flows.selection.trust_levels import SelectionSettings
    from helpers import frames_with_deviations

    maker = SelectMaker(settings=SelectionSettings(trust_lo=0.05, trust_hi=0.3, max_candidates=2))
    policy = StopPolicy(accurate_ratio=0.9, max_rounds=10, n_stages=3, step_back_failed_ratio=0.2)
    lost = [{"frames_blob": frames_text(frames_with_deviations([0.01, 0.1, 0.5, 0.6])), "ensemble_id": "e"}]
    doc = SelectMaker.make.original(maker, lost, [], "c", 3, seed=0, stage=2, policy=policy)  # 2 of 4 failed: back to 1
    assert (doc.n_failed, doc.stage, doc.next_stage) == (2, 2, 1)
    calm = [{"frames_blob": frames_text(frames_with_deviations([0.01, 0.1, 0.2, 0.6])), "ensemble_id": "e"}]
    doc = SelectMaker.make.original(
        maker, calm, [], "c", 3, seed=0, stage=2, policy=policy
    )  # 1 of 4 failed (25 %): back too
    assert doc.next_stage == 1
    doc = SelectMaker.make.original(maker, calm[:1], [], "c", 3, seed=0, stage=1, policy=policy)
    summary = {"accurate_ratio": doc.accurate_ratio, "n_explored": 4, "n_failed": 1, "round": 3, "stage": 1}
    assert policy.decide_from_summary(summary).next_stage == doc.next_stage == 0  # a continued run decides the same


def test_a_shear_campaign_climbs_its_strain_levels_and_converges_at_the_top(tmp_path):
    from al_flows.campaign.config import validate_campaign
    from al_flows.campaign.run import run_campaign
    from al_flows.campaign.stores import make_job_store
    from al_flows.frames.extxyz import frames_from_bytes
    from al_flows.workflow.jobs import latest_outputs
    from helpers import TINY

    d = copy.deepcopy(TINY)
    d["name"] = "tiny-auto"
    d["max_rounds"] = 5
    shear = {k: v for k, v in d["explorers"][0].items() if k != "gamma_max"}
    d["explorers"] = [{**shear, "schedule": {"gamma_max": [0.1, 0.2], "n_levels": 2}}]
    d["selection"] = {"trust_lo": 50.0, "trust_hi": 100.0, "max_candidates": 3}  # every frame accurate
    config = validate_campaign(d)
    assert config.fingerprint() != validate_campaign(TINY).fingerprint()
    report = run_campaign(config, ".", tmp_path / "run", echo=lambda *_: None)
    assert report["finished"] and [r["stage"] for r in report["rounds"]] == [0, 1]  # up, then converged at the top
    store = make_job_store(config.store, tmp_path / "run")
    store.connect()
    try:
        for k, gamma in ((0, 0.1), (1, 0.2)):
            doc = latest_outputs(store, config.name, "explore", {"metadata.round": k}, load=True)[0]["output"]
            gammas = [a.info["gamma"] for a in frames_from_bytes(doc["frames_blob"])]
            # runs end at the first step at or past the level's gamma_max (0.5 A steps on a 7.16 A cell: 0.0988 each)
            assert max(gammas) >= gamma and max(gammas) - 0.5 * 2**0.5 / 7.16 < gamma
    finally:
        store.close()
