"""A 2-round campaign converted to FireWorks runs with rapidfire across three workers
(gpu, vasp, cpu): every Firework runs on the worker of its category, including the jobs
that rounds create while running, and the results equal those of run_locally."""

import fireworks.core.launchpad as fw_launchpad
import mongomock_ng
import mongomock_ng.gridfs
import pytest
from fireworks import FWorker, LaunchPad
from fireworks.core.rocket_launcher import rapidfire

from al_flows.campaign.config import validate_campaign
from al_flows.campaign.fireworks import submit_campaign
from al_flows.campaign.report_json import build_report
from al_flows.campaign.run import CampaignError, run_campaign
from al_flows.campaign.stores import make_job_store

WORKERS = {"gpu": "gpu", "vasp": "vasp", "cpu": ["cpu", None]}  # the cpu worker also takes uncategorised jobs


@pytest.fixture
def launchpad(monkeypatch):
    """A real FireWorks LaunchPad whose MongoDB is an in-memory mongomock server."""
    mongomock_ng.gridfs.enable_gridfs_integration()

    class SharedClient(mongomock_ng.MongoClient):
        def close(self):
            pass

    client = SharedClient()
    monkeypatch.setattr(fw_launchpad, "MongoClient", lambda *a, **k: client)
    lp = LaunchPad(host="localhost", name="al_flows_test")
    lp.reset("", require_password=False)
    return lp


def run_until_done(lp: LaunchPad, max_passes: int = 100) -> None:
    """Cycle the three workers until no Firework is left to run (dynamic rounds add more)."""
    for _ in range(max_passes):
        launched = 0
        for name, category in WORKERS.items():
            before = lp.fireworks.count_documents({"state": "COMPLETED"})
            rapidfire(lp, FWorker(name=name, category=category), nlaunches=0, sleep_time=0)
            launched += lp.fireworks.count_documents({"state": "COMPLETED"}) - before
        if launched == 0:
            return
    raise AssertionError("workflow did not finish")


def test_campaign_routes_every_round_and_matches_run_locally(tmp_path, tiny_dict, launchpad, monkeypatch):
    config = validate_campaign(tiny_dict)
    local = run_campaign(config, ".", tmp_path / "local", echo=lambda *_: None)

    monkeypatch.chdir(tmp_path)
    mapping, message = submit_campaign(config, ".", tmp_path / "fw", launchpad)
    assert "starting campaign 'tiny'" in message and len(mapping) == 6
    with pytest.raises(CampaignError, match="already on the LaunchPad"):
        submit_campaign(config, ".", tmp_path / "fw", launchpad)
    run_until_done(launchpad)

    fws = list(
        launchpad.fireworks.find(
            {}, {"fw_id": 1, "state": 1, "spec._category": 1, "spec.stage": 1, "spec.round": 1, "launches": 1}
        )
    )
    assert all(fw["state"] == "COMPLETED" for fw in fws), [(fw["fw_id"], fw["state"]) for fw in fws]
    stages = {}
    for fw in fws:
        launch = launchpad.launches.find_one({"launch_id": fw["launches"][-1]})
        category = fw["spec"].get("_category")
        worker = launch["fworker"]["name"]
        expected = {"gpu": "gpu", "vasp": "vasp", "cpu": "cpu", None: "cpu"}[category]
        assert worker == expected, (fw["spec"].get("stage"), category, worker)
        stages.setdefault(fw["spec"].get("stage"), set()).add((category, fw["spec"].get("round")))
    # training and exploration of every round (created dynamically) ran on gpu, labelling on vasp
    assert stages["train"] == {("gpu", 0), ("gpu", 1)}
    assert stages["explore"] == {("gpu", 0), ("gpu", 1)}
    assert {c for c, _ in stages["label"]} == {"vasp"} and {r for _, r in stages["label"]} == {-1, 0, 1}
    assert {c for c, _ in stages["select"]} == {"cpu"}

    store = make_job_store(config.store, tmp_path / "fw")
    store.connect()
    report = build_report(store, config)
    store.close()
    assert report["finished"]
    assert len(report["rounds"]) == len(local["rounds"]) == 2
    for got, want in zip(report["rounds"], local["rounds"]):
        for key in ("n_labels_total", "n_explored", "n_accurate", "n_candidate", "n_failed", "n_labelled"):
            assert got[key] == want[key], key
        for key in ("val_force_rmse", "test_force_rmse", "test_energy_rmse_per_atom", "accurate_ratio"):
            assert got[key] == pytest.approx(want[key], rel=1e-5), key
