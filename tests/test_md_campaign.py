"""A campaign exploring with both MD samplers (ANI-Al schedule with early stop, DP-GEN NVT raised
per round) whose trust levels are calibrated from the labels of each round."""

import pytest

from al_flows.campaign import run_campaign
from al_flows.config import validate_campaign
from al_flows.queries import latest_outputs
from al_flows.stores import make_job_store


@pytest.fixture(scope="module")
def md_campaign(tmp_path_factory):
    from tests.conftest import TINY
    import copy

    d = copy.deepcopy(TINY)
    d["name"] = "tiny-md"
    d["max_rounds"] = 3
    d["explorers"] = [
        {"kind": "langevin_schedule", "name": "ani", "n_runs": 3, "t_max_ps": 0.1, "timestep_fs": 2.0, "record_every": 10,
         "stop_deviation": 0.05, "t_start_K": [300, 600], "t_end_K": [300, 600], "t_mod_K": [0, 500]},
        {"kind": "md", "name": "dpgen", "n_runs": 1, "temperatures_K": [300, 900], "n_steps": 30, "timestep_fs": 2.0, "record_every": 10},
    ]
    d["selection"] = {"trust_lo": 0.0, "trust_hi": 100.0, "max_candidates": 6, "pick": "highest",
                      "calibrate": {"target_error_lo": 0.05, "target_error_hi": 2.0, "min_points": 3}}
    config = validate_campaign(d)
    workdir = tmp_path_factory.mktemp("md") / "run"
    report = run_campaign(config, ".", workdir, echo=lambda *_: None)
    store = make_job_store(config.store, workdir)
    store.connect()
    yield config, report, store
    store.close()


def test_explorers_and_temperature_per_round(md_campaign):
    config, report, store = md_campaign
    assert report["finished"] and len(report["rounds"]) == 3
    from al_flows.dataset import frames_from_bytes

    for k in range(3):
        docs = [d["output"] for d in latest_outputs(store, config.name, "explore", {"metadata.round": k}, load=True)]
        by = {d["explorer"]: frames_from_bytes(d["frames_blob"]) for d in docs}
        assert set(by) == {"ani", "dpgen"}
        # DP-GEN: round 0 at 300 K, later rounds at the last temperature (900 K)
        assert {a.info["temperature_K"] for a in by["dpgen"]} == {300.0 if k == 0 else 900.0}
        # ANI-Al: a stopped trajectory's last frame is at/over the threshold, recorded snapshots below
        for a in by["ani"]:
            if a.info["stopped"]:
                assert a.info["deviation"] >= 0.05
            else:
                assert a.info["deviation"] < 0.05 and a.info["step"] % 10 == 0


def test_trust_levels_are_calibrated_from_the_previous_round(md_campaign):
    config, report, store = md_campaign
    cals = {d["output"]["round"]: d["output"] for d in latest_outputs(store, config.name, "calibrate")}
    sels = {d["output"]["round"]: d["output"] for d in latest_outputs(store, config.name, "select")}
    assert set(cals) == {0, 1, 2}
    assert (sels[0]["trust_lo"], sels[0]["trust_hi"]) == (0.0, 100.0)  # configured levels in round 0
    for k in (1, 2):
        prev = cals[k - 1]
        if prev["applied"]:
            assert sels[k]["trust_lo"] == pytest.approx(prev["trust_lo_next"]) and sels[k]["trust_hi"] == pytest.approx(prev["trust_hi_next"])
            fit = prev["fit"]
            assert prev["trust_lo_next"] == pytest.approx(0.05 / fit["a"]) and prev["trust_hi_next"] == pytest.approx(2.0 / fit["a"])
        else:
            assert (sels[k]["trust_lo"], sels[k]["trust_hi"]) == (prev["trust_lo_used"], prev["trust_hi_used"])
    assert any(c["applied"] for c in cals.values() if c["round"] < 2)
    # the points are the frames labelled in that round, with the deviation they were selected at
    for k, cal in cals.items():
        labels = latest_outputs(store, config.name, "label", {"metadata.round": k})[0]["output"]
        assert sorted(p["frame_id"] for p in cal["points"]) == sorted(r["frame_id"] for r in labels["records"])
