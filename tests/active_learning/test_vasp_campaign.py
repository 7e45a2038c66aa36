"""A campaign labelled by VASP through atomate2's real StaticMaker + custodian + emmet,
with the stand-in vasp_std on PATH: labels equal the stand-in's own calculator, one failing
structure is isolated, and a resubmission re-runs only what did not complete."""

import copy
import os
from pathlib import Path

import numpy as np
import pytest
from tests.vasp_standin.standin import install_wrapper, reference_results

from al_flows.campaign.config import validate_campaign
from al_flows.campaign.run import CampaignError, run_campaign
from al_flows.campaign.stores import make_job_store
from al_flows.frames.dataset import Dataset
from al_flows.structures.initial_data import build_structures, perturbed_copies
from al_flows.workflow.jobs import derived_seed

FAST_CUSTODIAN = {"polling_time_step": 0.1, "monitor_freq": 1}


@pytest.fixture
def vasp_env(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    install_wrapper(bin_dir)
    log = tmp_path / "vasp_runs.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("VASP_STANDIN_LOG", str(log))
    monkeypatch.delenv("VASP_STANDIN_FAIL", raising=False)
    return log


def vasp_campaign(tiny_dict, convergence: dict | None = None, **labeller):
    d = copy.deepcopy(tiny_dict)
    if convergence is not None:
        d["convergence"] = convergence
    d["name"] = "tiny-vasp"
    d["labeller"] = {
        "kind": "vasp",
        "preset": "pnnl-cuni",
        "potcar_spec": True,
        "vasp_cmd": "vasp_std",
        "vasp_gamma_cmd": "vasp_std",
        "custodian": FAST_CUSTODIAN,
        "max_errors": 1,
        **labeller,
    }
    d["test_set"] = {"kind": "perturbed", "n_per_structure": 1}
    d["initial"]["n_rattled"] = 3
    d["max_rounds"] = 2
    d["selection"]["max_candidates"] = 2
    return validate_campaign(d)


def initial_frame_ids(config):
    structures = build_structures(config.initial.structures)
    ini = config.initial
    return [
        a.info["frame_id"]
        for a in perturbed_copies(
            structures, ini.n_rattled, ini.rattle_sigma, ini.strain_max, derived_seed(config.seed, 998)
        )
    ]


def runs(log: Path) -> list[str]:
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


def stored(config, workdir, stage, round_=None):
    store = make_job_store(config.store, workdir)
    store.connect()
    crit = {"metadata.campaign": config.name, "metadata.stage": stage}
    if round_ is not None:
        crit["metadata.round"] = round_
    docs = list(store.query(crit, load=True))
    return store, docs


def test_vasp_campaign_labels_equal_standin_and_isolate_a_failure(tmp_path, tiny_dict, vasp_env, monkeypatch):
    # a core-hour budget far from binding: the campaign is as without it, and counts its core-hours
    # convergence properties: their reference comes from atomate2's EOS and elastic flows, run once
    properties = [{"name": "a0", "element": "Cu"}, {"name": "C44", "element": "Cu"}]
    config = vasp_campaign(
        tiny_dict, {"properties": properties}, budget={"core_hours_total": 1000.0, "core_hours_per_label": 0.5}
    )
    bad = initial_frame_ids(config)[1]
    monkeypatch.setenv("VASP_STANDIN_FAIL", f"{bad}:crash")
    report = run_campaign(config, ".", tmp_path / "w", echo=lambda *_: None)
    assert report["finished"] and [r["round"] for r in report["rounds"]] == [0, 1]
    assert report["rounds"][0]["n_labels_total"] == 2 * 3 - 1  # one initial structure failed
    assert report["rounds"][0]["n_labelled"] == 2

    store, merges = stored(config, tmp_path / "w", "merge", 0)
    data = Dataset.from_bytes(merges[0]["output"]["dataset_blob"])
    assert bad not in data and len(data) == 5 + 2
    for atoms in data:
        ref = reference_results(atoms)
        assert atoms.get_potential_energy() == pytest.approx(ref["energy"], abs=1e-6)
        np.testing.assert_allclose(atoms.get_forces(), ref["forces"], atol=1e-6)
        np.testing.assert_allclose(atoms.get_stress(), ref["stress"], atol=1e-6)
        assert atoms.info["labeller"] == "vasp:pnnl-cuni" and atoms.info["label_settings"].startswith("vasp:pnnl-cuni:")
        task = store.query_one(
            {"uuid": atoms.info["task_uuid"]}, properties=["metadata", "output.state", "output.task_label"]
        )
        assert task["metadata"]["stage"] == "vasp" and task["metadata"]["frame_id"] == atoms.info["frame_id"]
        assert task["output"]["state"] == "successful"

    # the failed structure is recorded with its reason, and the round went on
    # the LabelDocument of a VASP labelling comes from its collect job
    labels = [
        d["output"]
        for d in store.query({"metadata.campaign": config.name, "metadata.stage": "vasp_collect", "metadata.round": -1})
    ]
    initial = [o for o in labels if o["n_requested"] == 6]
    assert len(initial) == 1 and initial[0]["n_failed"] == 1 and initial[0]["n_labelled"] == 5
    failure = initial[0]["failures"][0]
    assert failure["frame_id"] == bad and "VASP job failed" in failure["reason"]
    check_core_hours(store, config, report)
    check_property_reference(store, config)
    store.close()
    # every VASP run was a real process started by custodian, one per structure (+ retries of the bad one)
    ran = runs(vasp_env)
    assert ran.count(bad) >= 1
    assert ran.count("unknown") == 6 + 6  # the reference's EOS and elastic runs (no SYSTEM tag), in round 0 only
    assert len(set(ran)) == 2 * 3 + 2 * 1 + 2 + 1  # initial + test set + round-0 candidates + the reference


def check_property_reference(store, config):
    """The reference of the convergence properties is the labeller's (the stand-in's EMT surface, within
    the tolerances of test_vasp_property_reference), stored once and read by both rounds."""
    from ase.calculators.emt import EMT

    from al_flows.validation.properties import property_values

    crit = {"metadata.campaign": config.name}
    collect = {**crit, "metadata.stage": "property_reference_vasp", "name": "collect_vasp_properties"}
    (ref,) = [d["output"] for d in store.query(collect)]
    emt = property_values("Cu", EMT, config.property_convergence().settings, ["a0", "C44"])
    assert ref["values"]["Cu"]["a0"] == pytest.approx(emt["a0"], abs=1e-3)
    assert ref["values"]["Cu"]["C44"] == pytest.approx(emt["C44"], abs=1.5)
    rounds = sorted(store.query({**crit, "metadata.stage": "properties"}), key=lambda d: d["metadata"]["round"])
    assert [d["metadata"]["round"] for d in rounds] == [0, 1]
    for d in rounds:
        by_name = {r["name"]: r["reference"] for r in d["output"]["results"]}
        assert by_name == ref["values"]["Cu"] and d["output"]["reference_key"] == ref["key"]


def check_core_hours(store, config, report):
    """Each collect document sums run_core_hours over its stored TaskDocs; round 0 spends its
    measured core-hours plus, for runs without timings, the estimate its selection used (the mean
    of the initial runs' timings, else the configured 0.5)."""
    from al_flows.labelling.vasp_labels import run_core_hours

    crit = {"metadata.campaign": config.name}
    collect = {
        d["output"]["round"]: d["output"]
        for d in store.query({**crit, "metadata.stage": "vasp_collect", "output.n_requested": {"$gt": 0}})
        if d["metadata"]["round"] >= 0 or d["output"]["n_requested"] == 6  # the initial labels, not the test set
    }
    for k, doc in collect.items():
        uuids = [r["task_uuid"] for r in doc["records"] + doc["failures"]]
        tasks = [t["output"] for t in store.query({"uuid": {"$in": uuids}, "output": {"$ne": None}}, load=True)]
        hours = [h for h in map(run_core_hours, tasks) if h is not None]
        assert doc["n_timed"] == len(hours) and doc["core_hours"] == pytest.approx(sum(hours), rel=1e-12)  # sum order
    (select,) = [d["output"] for d in store.query({**crit, "metadata.stage": "select", "metadata.round": 0})]
    initial = collect[-1]
    per_label = initial["core_hours"] / initial["n_timed"] if initial["core_hours"] else 0.5
    assert select["budget"]["core_hours_per_label"] == pytest.approx(per_label, rel=1e-12)
    round0 = collect[0]
    expected = round0["core_hours"] + (round0["n_requested"] - round0["n_timed"]) * per_label
    rows = report["rounds"]
    assert rows[0]["core_hours_spent"] == pytest.approx(expected, rel=1e-12)
    assert [r["labels_spent"] for r in rows] == [2, 2] and [r["n_budget_skipped"] for r in rows] == [0, 0]


def test_resubmitted_round_reruns_only_failed_structures(tmp_path, tiny_dict, vasp_env, monkeypatch):
    # and a core-hour budget that binds: every run reports 1800 s on 1 core (0.5 core-hours), so
    # round 0 may label floor(0.6 / 0.5) = 1 of its 2 candidates, and after it the campaign has
    # 0.9 - 0.5 = 0.4 core-hours left, less than one label: round 1 labels none and the budget stops it
    monkeypatch.setenv("VASP_STANDIN_ELAPSED", "1800")
    budget = {"core_hours_per_round": 0.6, "core_hours_total": 0.9}
    config = vasp_campaign(tiny_dict, min_success_fraction=1.0, budget=budget)
    bad = initial_frame_ids(config)[0]
    monkeypatch.setenv("VASP_STANDIN_FAIL", f"{bad}:crash")
    with pytest.raises(CampaignError, match="below labeller.min_success_fraction=1.0"):
        run_campaign(config, ".", tmp_path / "w", echo=lambda *_: None)
    first = runs(vasp_env)
    assert bad in first and len(set(first)) == 2 * 3 + 2  # initial + test set frames were run

    monkeypatch.delenv("VASP_STANDIN_FAIL")
    report = run_campaign(config, ".", tmp_path / "w", echo=lambda *_: None)
    assert report["finished"]
    second = runs(vasp_env)[len(first) :]
    # the completed structures were not recomputed: only the failed one and the round-0 candidate ran
    assert second.count(bad) == 1
    assert not (set(second) - {bad}) & set(first)
    assert len(second) == 1 + 1
    rows = report["rounds"]
    assert [r["labels_spent"] for r in rows] == [1, 1] and [r["n_budget_skipped"] for r in rows] == [1, 0]
    # not a timing: 0.5 core-hours is what the stand-in reports (VASP_STANDIN_ELAPSED), whatever the run took
    assert [r["core_hours_spent"] for r in rows] == [pytest.approx(0.5, rel=1e-9)] * 2
    assert report["stop_reason"] == "budget"


def test_extension_labels_the_stopped_rounds_selection_with_vasp(tmp_path, tiny_dict, vasp_env):
    """A 1-round VASP campaign stops after round 0, whose 2 candidates are selected but not labelled;
    raising max_rounds to 2 runs VASP on them once (static jobs of round 0, one per frame) before
    round 1 trains on them, and the budget counts them as round 0's labels."""
    budget = {"core_hours_total": 1000.0, "core_hours_per_label": 0.5}
    config = vasp_campaign(tiny_dict, budget=budget)
    config = config.model_copy(update={"max_rounds": 1})
    first = run_campaign(config, ".", tmp_path / "w", echo=lambda *_: None)
    assert [r["n_labelled"] for r in first["rounds"]] == [0] and first["rounds"][0]["labels_spent"] == 0
    before = runs(vasp_env)

    report = run_campaign(config.model_copy(update={"max_rounds": 2}), ".", tmp_path / "w", echo=lambda *_: None)
    assert report["state"] == "finished (round limit)" and [r["round"] for r in report["rounds"]] == [0, 1]
    store, selects = stored(config, tmp_path / "w", "select", 0)
    try:
        selected = {r["frame_id"] for r in selects[0]["output"]["records"] if r["selected"]}
        assert len(selected) == 2
        ran = runs(vasp_env)[len(before) :]
        assert sorted(ran) == sorted(selected)  # one VASP run per selected frame, nothing else
        crit = {"metadata.campaign": config.name, "metadata.round": 0, "output.n_requested": {"$gt": 0}}
        (collect,) = [d["output"] for d in store.query({**crit, "metadata.stage": "vasp_collect"})]
        assert {r["frame_id"] for r in collect["records"]} == selected
        assert all(r["labelled_on_extension"] and r["round"] == 0 for r in collect["records"])
        statics = store.query({"metadata.campaign": config.name, "metadata.stage": "vasp", "metadata.round": 0})
        assert {d["metadata"]["frame_id"] for d in statics} == selected
    finally:
        store.close()
    rows = report["rounds"]
    assert rows[0]["n_labelled"] == 2 and rows[1]["n_labels_total"] == rows[0]["n_labels_total"] + 2
    assert [r["labels_spent"] for r in rows] == [2, 2]
    assert rows[0]["core_hours_spent"] == pytest.approx(collect["core_hours"], rel=1e-12) and collect["n_timed"] == 2
