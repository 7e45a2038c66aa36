"""A campaign exploring with both MD samplers (ANI-Al schedule with early stop, DP-GEN NVT raised
per round) whose trust levels are calibrated from the labels of each round."""

import numpy as np
import pytest

from al_flows.campaign.config import validate_campaign
from al_flows.campaign.run import run_campaign
from al_flows.campaign.stores import make_job_store
from al_flows.workflow.jobs import latest_outputs


@pytest.fixture(scope="module")
def md_campaign(tmp_path_factory):
    import copy

    from helpers import TINY

    d = copy.deepcopy(TINY)
    d["name"] = "tiny-md"
    d["max_rounds"] = 3
    d["explorers"] = [
        {
            "kind": "langevin_schedule",
            "name": "ani",
            "n_runs": 3,
            "t_max_ps": 0.1,
            "timestep_fs": 2.0,
            "record_every": 10,
            "stop_deviation": 0.05,
            "start": "structures",  # the simplified sampler (named options): starts and stop by force deviation
            "stop_measure": "force_deviation",
            "select_snapshots": True,
            "label_stop_frames": False,
            "t_start_K": [300, 600],
            "t_end_K": [300, 600],
            "t_mod_K": [0, 500],
        },
        {
            "kind": "md",
            "name": "dpgen",
            "n_runs": 1,
            "temperatures_K": [300, 900],
            "n_steps": 30,
            "timestep_fs": 2.0,
            "record_every": 10,
        },
    ]
    d["selection"] = {
        "trust_lo": 0.0,
        "trust_hi": 100.0,
        "max_candidates": 6,
        "pick": "highest",
        "calibrate": {
            "target_error_lo": 0.05,
            "target_error_hi": 2.0,
            "min_points": 3,
            "max_change_factor": None,
            "window_rounds": 2,
        },
    }  # the raw fitted levels, checked below; each fit pools this round's labels with the round before's
    config = validate_campaign(d)
    workdir = tmp_path_factory.mktemp("md") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AL_FLOWS_DEVICE", "cpu")  # the worker's run-time device, recorded by every model job
        report = run_campaign(config, ".", workdir, echo=lambda *_: None)
    store = make_job_store(config.store, workdir)
    store.connect()
    yield config, report, store
    store.close()


def test_every_model_job_records_the_workers_device(md_campaign):
    """Training, exploration (both samplers), evaluation and calibration ran on the device
    AL_FLOWS_DEVICE named and say so; jobs that run no model record none."""
    config, report, store = md_campaign
    ran_models = {"train": 6, "explore": 6, "evaluate": 3}
    for stage, n in ran_models.items():
        docs = [d["output"] for d in latest_outputs(store, config.name, stage)]
        assert len(docs) == n and {d["device"] for d in docs} == {"cpu"}, stage
    cals = [d["output"] for d in latest_outputs(store, config.name, "calibrate")]
    assert any(c["points"] for c in cals)  # a calibration without labels runs no model and records none
    assert all(c["device"] == ("cpu" if c["points"] else None) for c in cals)
    for stage in ("select", "summary"):
        assert {d["output"].get("device") for d in latest_outputs(store, config.name, stage)} == {None}, stage


def test_explorers_and_temperature_per_round(md_campaign):
    config, report, store = md_campaign
    assert report["finished"] and len(report["rounds"]) == 3
    from al_flows.frames.extxyz import frames_from_bytes

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
            assert sels[k]["trust_lo"] == pytest.approx(prev["trust_lo_next"]) and sels[k]["trust_hi"] == pytest.approx(
                prev["trust_hi_next"]
            )
            fit = prev["fit"]
            assert prev["trust_lo_next"] == pytest.approx(0.05 / fit["a"]) and prev["trust_hi_next"] == pytest.approx(
                2.0 / fit["a"]
            )
        else:
            assert (sels[k]["trust_lo"], sels[k]["trust_hi"]) == (prev["trust_lo_used"], prev["trust_hi_used"])
    assert any(c["applied"] for c in cals.values() if c["round"] < 2)
    # the points are the frames labelled in that round, with the deviation they were selected at
    for k, cal in cals.items():
        labels = latest_outputs(store, config.name, "label", {"metadata.round": k})[0]["output"]
        assert sorted(p["frame_id"] for p in cal["points"]) == sorted(r["frame_id"] for r in labels["records"])
    # window_rounds 2: round k fits the round before's pairs and its own, as each round measured them
    for k, cal in cals.items():
        before = [(p["frame_id"], k - 1) for p in cals[k - 1]["points"]] if k else []
        assert [(p["frame_id"], p["round"]) for p in cal["fit_points"]] == before + [
            (p["frame_id"], k) for p in cal["points"]
        ]
        pairs = np.array([(p["deviation"], p["error"]) for p in cal["fit_points"]])
        pairs = pairs[(pairs > 0).all(axis=1)]
        assert cal["fit"]["n"] == len(pairs)
        if len(pairs):  # least squares through the origin over the pooled pairs
            assert cal["fit"]["a"] == pytest.approx(pairs[:, 0] @ pairs[:, 1] / (pairs[:, 0] @ pairs[:, 0]), rel=1e-12)


def test_campaign_from_random_cells_only(tmp_path):
    """ANI-Al style start: the only structures are random Al cells, labelled as they are; every
    label's lineage ends at one of them."""
    from al_flows.frames.dataset import Dataset
    from al_flows.frames.extxyz import frames_from_bytes

    d = {
        "name": "ani-tiny",
        "seed": 5,
        "elements": ["Al"],
        "initial": {
            "structures": [{"kind": "random_cells", "n_cells": 4, "edge_min": 6.0, "edge_max": 7.0}],
            "n_rattled": 0,
            "label_structures": True,
        },
        "model": {"n_atom_basis": 8, "n_interactions": 1, "n_rbf": 8, "cutoff": 4.0},
        "training": {"epochs": 3, "batch_size": 2, "lr": 3e-3, "val_fraction": 0.25},
        "ensemble_size": 2,
        "explorers": [
            {
                "kind": "langevin_schedule",
                "name": "ani",
                "n_runs": 2,
                "t_max_ps": 0.04,
                "timestep_fs": 2.0,
                "record_every": 5,
                "cells": {"edge_min": 6.0, "edge_max": 7.0},  # fresh cells per trajectory, small here
            }
        ],
        "selection": {"trust_lo": 0.0, "trust_hi": 100.0, "max_candidates": 2},
        "test_set": {"kind": "perturbed", "n_per_structure": 1},
        "max_rounds": 1,
    }
    config = validate_campaign(d)
    report = run_campaign(config, ".", tmp_path / "run", echo=lambda *_: None)
    assert report["finished"]
    store = make_job_store(config.store, tmp_path / "run")
    store.connect()
    try:
        structures = frames_from_bytes(
            latest_outputs(store, "ani-tiny", "structures", load=True)[0]["output"]["structures_blob"]
        )
        assert len(structures) == 4 and all(
            a.info["structure_id"].startswith("random_cells0-random-") for a in structures
        )
        for a in structures:
            assert (
                6.0 <= a.cell.lengths().min()
                and a.cell.lengths().max() <= 7.0
                and set(a.get_chemical_symbols()) == {"Al"}
            )
        merged = latest_outputs(store, "ani-tiny", "merge", {"metadata.round": -1}, load=True)[0]["output"]
        initial = Dataset.from_bytes(merged["dataset_blob"].encode()).frames
        ids = {a.info["structure_id"] for a in structures}
        assert len(initial) == 4 and {a.info["parent_id"] for a in initial} == ids
        # the method's sampler: trajectories from fresh cells, every stop frame labelled, snapshots only measure
        explored = frames_from_bytes(
            latest_outputs(store, "ani-tiny", "explore", {"metadata.round": 0}, load=True)[0]["output"]["frames_blob"]
        )
        assert all(a.info["start"] == "random_cells" and a.info["parent_id"] not in ids for a in explored)
        stops = {a.info["frame_id"] for a in explored if a.info["stopped"]}
        sel = latest_outputs(store, "ani-tiny", "select", {"metadata.round": 0})[0]["output"]
        assert stops and {r["frame_id"] for r in sel["records"] if r["selected"]} == stops
        times = latest_outputs(store, "ani-tiny", "explore", {"metadata.round": 0})[0]["output"]["survival_times_ps"]
        assert len(times) == 2 and sel["median_survival_ps"] == pytest.approx(float(np.median(times)))
        assert report["rounds"][0]["median_survival_ps"] == sel["median_survival_ps"]
    finally:
        store.close()
    with pytest.raises(Exception, match="nothing would be labelled"):
        validate_campaign({**d, "initial": {**d["initial"], "label_structures": False}})


def test_report_plots_the_calibration(md_campaign, tmp_path):
    from al_flows.campaign.report import write_report

    config, _, store = md_campaign
    out = write_report(store, config, tmp_path / "report")
    assert out["plots"]["calibration"] == "calibration.png"
    assert (tmp_path / "report" / "calibration.png").stat().st_size > 1000


def test_every_job_records_its_time_and_each_round_sums_it_per_stage(md_campaign, tmp_path):
    from al_flows.campaign.record import CampaignRecord
    from al_flows.campaign.report_json import build_report
    from al_flows.workflow.store_queries import timing_records

    config, report, store = md_campaign
    records = timing_records(store, config.name)
    stages = {(r["round"], r["stage"]) for r in records}
    for k in (0, 1, 2):
        for stage in ("train", "evaluate", "explore", "select", "label", "calibrate", "merge", "summary"):
            assert (k, stage) in stages, (k, stage)
    assert all(r["wall_s"] >= 0 and r["cpu_s"] >= 0 and r["ok"] for r in records)
    n_train = sum(1 for r in records if r["round"] == 0 and r["stage"] == "train")
    assert n_train == config.ensemble_size
    timed = CampaignRecord(store, config.name).stage_times()
    train0 = [r for r in records if r["round"] == 0 and r["stage"] == "train"]
    assert timed[0]["stages"]["train"]["wall_s"] == pytest.approx(sum(r["wall_s"] for r in train0), abs=1e-3)
    # the summary holds what had finished before it: every stage it depends on
    summary = latest_outputs(store, config.name, "summary", {"metadata.round": 0})[0]["output"]
    assert {"train", "evaluate", "explore", "select", "label", "calibrate"} <= set(summary["stage_times"]["stages"])
    rows = build_report(store, config)["rounds"]
    assert rows[0]["stage_times"] == timed[0]
    status = CampaignRecord(store, config.name).status()
    assert status["rounds"][0]["wall_time_s"]["train"] == pytest.approx(timed[0]["stages"]["train"]["wall_s"], abs=0.01)


def test_each_calibration_record_is_written_before_its_labels_are_trained_on(md_campaign):
    """Round k's record measures round k's ensemble on round k's labels, and is finished before any
    member of round k + 1 (the first to train on those labels) starts training."""
    from al_flows.workflow.store_queries import timing_records

    config, _, store = md_campaign
    records = timing_records(store, config.name)
    cals = {d["output"]["round"]: d["output"] for d in latest_outputs(store, config.name, "calibrate")}
    sums = {d["output"]["round"]: d["output"] for d in latest_outputs(store, config.name, "summary")}
    for k in (0, 1):
        assert cals[k]["ensemble_id"] == sums[k]["ensemble_id"]  # the round's own, untrained on its labels
        labels = latest_outputs(store, config.name, "label", {"metadata.round": k})[0]["output"]
        assert sorted(p["frame_id"] for p in cals[k]["points"]) == sorted(r["frame_id"] for r in labels["records"])
        cal_end = max(r["ended"] for r in records if r["round"] == k and r["stage"] == "calibrate")
        next_train = min(r["started"] for r in records if r["round"] == k + 1 and r["stage"] == "train")
        assert cal_end <= next_train
        assert sums[k]["calibration"]["bound_residuals"] == len(cals[k]["residuals"])
