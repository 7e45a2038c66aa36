"""End to end: a 2-round campaign through jobflow's run_locally on the embedded store,
then queried back from a new process; continuation; the CLI."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from al_flows.campaign.config import validate_campaign
from al_flows.campaign.run import CampaignError, run_campaign
from al_flows.campaign.stores import make_job_store
from al_flows.frames.dataset import Dataset


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    from helpers import TINY

    config = validate_campaign(TINY)
    workdir = tmp_path_factory.mktemp("campaign")
    lines = []
    report = run_campaign(config, ".", workdir, echo=lines.append)
    return config, workdir, report, lines


def test_report_has_every_round_with_consistent_counts(finished):
    config, workdir, report, _ = finished
    on_disk = json.loads((workdir / "report.json").read_text())
    assert on_disk["rounds"] == report["rounds"]
    assert report["finished"] and not report["converged"]  # max_rounds reached, trust window never 'accurate'
    rounds = report["rounds"]
    assert [r["round"] for r in rounds] == [0, 1]
    assert rounds[0]["n_labels_total"] == 2 * 4  # 2 structures x 4 perturbed copies
    for r in rounds:
        assert r["n_accurate"] + r["n_candidate"] + r["n_failed"] == r["n_explored"] > 0
        assert r["n_accurate"] == 0 and r["n_failed"] == 0  # trust window [0, 100) eV/A
        assert r["accurate_ratio"] == 0.0
        for key in ("val_force_rmse", "test_force_rmse", "test_energy_rmse_per_atom"):
            assert np.isfinite(r[key]) and r[key] > 0
    # round 0 labels its (capped) candidates; the last round stops and labels nothing
    assert rounds[0]["n_labelled"] == 3
    assert rounds[1]["n_labels_total"] == rounds[0]["n_labels_total"] + 3
    assert rounds[1]["n_labelled"] == 0


def test_stored_documents_have_provenance_and_blobs_outside_documents(finished):
    config, workdir, _, _ = finished
    store = make_job_store(config.store, workdir)
    store.connect()
    try:
        trains = list(store.query({"metadata.campaign": "tiny", "metadata.stage": "train"}))
        assert len(trains) == 2 * 2  # 2 rounds x 2 members
        for doc in trains:
            blob_ref = doc["output"]["model_blob"]
            assert set(blob_ref) >= {"blob_uuid", "store"} and blob_ref["store"] == "data"
        r1 = [d for d in trains if d["metadata"]["round"] == 1]
        # each round-1 member was trained (train + val) on all 8 + 3 labels
        assert all(d["output"]["n_train"] + d["output"]["n_val"] == 11 for d in r1)
        merged = store.query_one(
            {"metadata.campaign": "tiny", "metadata.stage": "merge", "metadata.round": 0}, load=True
        )
        data = Dataset.from_bytes(merged["output"]["dataset_blob"])
        assert len(data) == 11
        new = [a for a in data if a.info["round"] == 0]
        assert len(new) == 3
        for atoms in new:
            assert atoms.info["explorer"] == "shear"
            assert atoms.info["parent_id"].startswith("multilayer-2x2x2-")
            assert len(atoms.info["model_id"]) == 16
            assert np.isfinite(atoms.info["deviation"]) and atoms.info["deviation"] >= 0
            assert atoms.info["labeller"] == "ase:emt"
        init = [a for a in data if a.info["round"] == -1]
        assert len(init) == 8 and all(a.info["explorer"] == "initial" for a in init)
    finally:
        store.close()


def test_store_is_queried_back_from_a_new_process(finished):
    config, workdir, report, _ = finished
    script = textwrap.dedent(
        f"""
        import json, warnings
        warnings.filterwarnings("ignore")
        from al_flows.campaign.config import validate_campaign
        from al_flows.campaign.report_json import build_report
        from al_flows.campaign.run import open_store
        from al_flows.potential.ensemble import Ensemble
        from al_flows.frames.extxyz import frames_from_bytes
        from al_flows.potential.weights import weights_bytes
        from tests.helpers import TINY
        config = validate_campaign(TINY)
        store = open_store(config, {str(workdir)!r})
        rep = build_report(store, config)
        criteria = {{"metadata.campaign": "tiny", "metadata.stage": "train", "metadata.round": 1}}
        trains = sorted(store.query(criteria, load=True), key=lambda d: d["output"]["member"])
        ens = Ensemble.from_bytes([weights_bytes(d["output"]["model_blob"]) for d in trains])
        test = store.query_one({{"metadata.campaign": "tiny", "metadata.stage": "test_set"}}, load=True)
        frames = frames_from_bytes(test["output"]["frames_blob"])
        pred = ens.predict(frames)
        print(json.dumps({{"rounds": rep["rounds"], "energies": pred.mean_energies.tolist()}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["rounds"] == report["rounds"]
    store = make_job_store(config.store, workdir)
    store.connect()
    try:
        ev = store.query_one({"metadata.campaign": "tiny", "metadata.stage": "evaluate", "metadata.round": 1})
        np.testing.assert_allclose(got["energies"], ev["output"]["predicted_energies"], rtol=0, atol=1e-4)
    finally:
        store.close()


def test_running_again_continues_instead_of_starting_over(finished):
    config, workdir, report, _ = finished
    lines = []
    again = run_campaign(config, ".", workdir, echo=lines.append)
    assert "already finished" in lines[0]
    assert again["rounds"] == report["rounds"]


def test_changed_settings_on_same_workdir_are_refused(finished, tiny_dict):
    _, workdir, _, _ = finished
    tiny_dict["training"]["epochs"] = 5
    with pytest.raises(CampaignError, match=r"other settings \(training.epochs: 4 -> 5\)"):
        run_campaign(validate_campaign(tiny_dict), ".", workdir, echo=lambda *_: None)


def test_failed_round_then_rerun_continues_and_matches_uninterrupted(tmp_path, finished, monkeypatch):
    """Round 1's training fails: the run stops with a clear message after round 0 is stored;
    running again continues after round 0 and ends where an uninterrupted run ends."""
    config, _, uninterrupted, _ = finished
    import al_flows.active_learning.jobs.training as training_jobs

    real = training_jobs.train_member

    def fail_in_round_1(frames, *args, **kwargs):
        if any(a.info.get("round") == 0 for a in frames):
            raise RuntimeError("injected failure")
        return real(frames, *args, **kwargs)

    monkeypatch.setattr(training_jobs, "train_member", fail_in_round_1)
    lines = []
    with pytest.raises(CampaignError, match="stopped before finishing"):
        run_campaign(config, ".", tmp_path, echo=lines.append)
    partial = json.loads((tmp_path / "report.json").read_text())
    assert [r["round"] for r in partial["rounds"]] == [0] and not partial["finished"]

    monkeypatch.setattr(training_jobs, "train_member", real)
    lines = []
    report = run_campaign(config, ".", tmp_path, echo=lines.append)
    assert lines[0] == "continuing campaign 'tiny' after round 0"
    assert report["finished"]
    assert [r["round"] for r in report["rounds"]] == [0, 1]
    for got, want in zip(report["rounds"], uninterrupted["rounds"]):
        for key in ("n_labels_total", "n_explored", "n_candidate", "n_labelled"):
            assert got[key] == want[key], key
        assert got["test_force_rmse"] == pytest.approx(want["test_force_rmse"], rel=1e-4)


def test_cli_validate_and_config_error_exit_codes(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\nelements: [Cu]\ninitial: {structures: [{kind: multilayer}]}\nexplorers: [{kind: shear}]\nselection: "
        "{trust_lo: 1.0, trust_hi: 0.5}\n"
    )
    out = subprocess.run([sys.executable, "-m", "al_flows.cli", "validate", str(bad)], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"error: {bad}: selection.trust_lo (1.0) must be lower than selection.trust_hi (0.5)"
    ]
    ok = subprocess.run(
        [sys.executable, "-m", "al_flows.cli", "validate", "flows/demo_cuni_emt.yaml"], capture_output=True, text=True
    )
    assert ok.returncode == 0 and "ok: flows/demo_cuni_emt.yaml" in ok.stdout
