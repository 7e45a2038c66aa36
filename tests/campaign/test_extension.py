"""Extending a finished campaign: the round that stopped it selected frames but did not label
them; a run with a larger ``max_rounds`` labels that selection first, so the added round trains on
new labels, and no progress line claims a selection that is not labelled."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
from jobflow import Flow, run_locally

from al_flows.active_learning.extension import extension_jobs
from al_flows.active_learning.flows import ActiveLearningMaker
from al_flows.campaign.active_learning_workflow import plan_campaign
from al_flows.campaign.config import validate_campaign
from al_flows.campaign.record import CampaignRecord
from al_flows.campaign.run import live_progress, open_store, prepare_store, run_campaign
from al_flows.frames.extxyz import frames_from_bytes
from al_flows.workflow.jobs import stable_uuid
from helpers import TINY


def settings(max_rounds: int) -> dict:
    out = copy.deepcopy(TINY)
    out["max_rounds"] = max_rounds
    return out


def run(config, workdir) -> tuple[dict, list[str]]:
    """Run (or continue) the campaign in this process; its report and every line it printed."""
    lines: list[str] = []
    with live_progress(lines.append):
        report = run_campaign(config, ".", workdir, echo=lines.append)
    return report, lines


def lines_of(lines: list[str], round_: int, stage: str) -> list[str]:
    return [ln for ln in lines if f"] round {round_} | {stage} |" in ln]


@pytest.fixture(scope="module")
def two_rounds(tmp_path_factory):
    """The tiny campaign run to its round limit (2 rounds), and what it printed."""
    workdir = tmp_path_factory.mktemp("extension") / "work"
    report, lines = run(validate_campaign(settings(2)), workdir)
    assert report["state"] == "finished (round limit)"
    return workdir, report, lines


@pytest.fixture(scope="module")
def extended(two_rounds, tmp_path_factory):
    """A copy of the finished campaign run again with max_rounds 3."""
    workdir, before, _ = two_rounds
    work = tmp_path_factory.mktemp("extended") / "work"
    shutil.copytree(workdir, work)
    report, lines = run(validate_campaign(settings(3)), work)
    return work, before, report, lines


def stored(workdir):
    config = validate_campaign(settings(3))
    store = open_store(config, workdir)
    return store, CampaignRecord(store, config.name)


def test_the_stopping_round_says_its_selection_is_not_labelled(two_rounds):
    _, report, lines = two_rounds
    (select0,) = lines_of(lines, 0, "select")
    assert "| selected=3 |" in select0  # round 0 labels what it selects
    (select1,) = lines_of(lines, 1, "select")
    assert "selected=3 (not labelled: the campaign stops, round limit)" in select1
    assert [ln.split("| label |")[1].strip() for ln in lines_of(lines, 1, "label")] == ["frames=0"]
    assert [r["n_labelled"] for r in report["rounds"]] == [3, 0]


def test_extension_labels_the_stopped_rounds_selection_before_the_next_round_trains(extended):
    work, before, report, lines = extended
    assert any("extending campaign 'tiny' after round 1" in ln for ln in lines)
    # round 1's selection is labelled and merged before round 2 trains
    first_train = next(i for i, ln in enumerate(lines) if "] round 2 | train |" in ln)
    (carry,) = lines_of(lines, 1, "label the stopped round's selection")
    (label,) = lines_of(lines, 1, "label")
    (merge,) = lines_of(lines, 1, "dataset")
    assert "selected=3 | to_label=3" in carry and label.endswith("| label | frames=3")
    n_before = before["rounds"][1]["n_labels_total"]  # round 1 trained on these; it labelled nothing
    assert merge.endswith(f"labels={n_before + 3} | added=3")
    assert lines.index(carry) < lines.index(label) < lines.index(merge) < first_train
    assert f"round 2 | train | member=0 | labels={n_before + 3}" in lines[first_train]

    store, record = stored(work)
    try:
        selection = record.outputs("select", 1)[-1]["output"]
        selected = {r["frame_id"] for r in selection["records"] if r["selected"]}
        assert len(selected) == 3 and selection["stop"]
        docs = [d["output"] for d in record.label_documents() if d["output"]["round"] == 1]
        assert sorted(d["n_labelled"] for d in docs) == [0, 3]  # the round's own (nothing) and the extension's
        carried = next(d for d in docs if d["n_labelled"] == 3)
        assert {r["frame_id"] for r in carried["records"]} == selected
        for rec in carried["records"]:  # provenance: selected in round 1 by round 1's ensemble, labelled later
            assert rec["round"] == 1 and rec["labelled_on_extension"] is True
            assert rec["model_id"] == selection["ensemble_id"] and rec["labeller"] == "ase:emt"
        assert all("labelled_on_extension" not in r for d in docs if d is not carried for r in d["records"])
        # the round-2 ensemble trained on them: every label so far, the 3 new ones included
        members = [m for m in record.models().values() if m["round"] == 2]
        assert len(members) == 2
        for m in members:
            seen = set(m["train_ids"] + m["val_ids"])
            assert selected <= seen and len(seen) == n_before + 3
        # round 2's select job has the uuid a run without the extension would give it (a resumed run finds it)
        fingerprint = validate_campaign(settings(3)).fingerprint()
        assert record.outputs("select", 2)[-1]["uuid"] == stable_uuid("tiny", fingerprint, 2, "select", "select")
        dataset = record.final_dataset()
        assert selected <= set(dataset.ids)
        assert sum(bool(a.info.get("labelled_on_extension")) for a in dataset) == 3
    finally:
        store.close()

    rounds = report["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    from helpers import untimed

    assert untimed(rounds[0]) == untimed(before["rounds"][0])
    assert untimed(rounds[1]) == untimed({**before["rounds"][1], "n_labelled": 3})  # labelled on extension
    assert rounds[2]["n_labels_total"] == rounds[1]["n_labels_total"] + 3 == n_before + 3
    assert rounds[2]["n_labelled"] == 0 and report["state"] == "finished (round limit)"
    # the new last round says its selection is not labelled, and labels nothing
    (select2,) = lines_of(lines, 2, "select")
    assert "selected=3 (not labelled: the campaign stops, round limit)" in select2
    assert [ln.split("| label |")[1].strip() for ln in lines_of(lines, 2, "label")] == ["frames=0"]
    assert json.loads((work / "report.json").read_text())["rounds"] == rounds


def test_a_run_stopped_during_the_extension_never_labels_twice(two_rounds, tmp_path):
    """The extension's jobs have fixed uuids: a run that stopped after labelling round 1's selection
    finds the labels in the store, drops the finished jobs and merges them once."""
    workdir, _, _ = two_rounds
    work = tmp_path / "work"
    shutil.copytree(workdir, work)
    config = validate_campaign(settings(3))
    maker = ActiveLearningMaker.from_config(config, ".")
    store = prepare_store(config, work)
    try:
        flow, why = plan_campaign(maker, config, store)
        assert flow is not None and why.startswith("extending campaign 'tiny' after round 1")
        assert maker.select_maker.name == "select"  # the select jobs' names (and so uuids) are unchanged
        assert flow.jobs[0].name == "extension r1"
        stages = [(j.metadata["round"], j.metadata["stage"]) for j in flow.jobs]
        assert stages == [(1, "extension"), (1, "label"), (1, "merge"), (1, "summary"), (2, "round")]
        record = CampaignRecord(store, config.name)
        extension, label, _, _ = extension_jobs(maker, record.last_summary())  # the same jobs, outside the flow
        assert [extension.uuid, label.uuid] == [j.uuid for j in flow.jobs[:2]]
        run_locally(Flow([extension, label]), store=store, root_dir=tmp_path, allow_external_references=True)

        again, _ = plan_campaign(maker, config, store)
        assert again is not None
        uuids = [j.uuid for j in again.jobs]
        assert extension.uuid not in uuids and label.uuid not in uuids  # done: not run again
        assert [(j.metadata["round"], j.metadata["stage"]) for j in again.jobs] == stages[2:]
        _, _, merge, summary = extension_jobs(maker, record.last_summary())
        assert [merge.uuid, summary.uuid] == uuids[:2]
        run_locally(Flow([merge, summary]), store=store, root_dir=tmp_path, allow_external_references=True)

        docs = [d for d in record.label_documents() if d["output"]["round"] == 1]
        assert sorted(d["output"]["n_labelled"] for d in docs) == [0, 3]  # labelled once
        last = record.last_summary()
        assert last["round"] == 1 and last["labelled_on_extension"] and last["n_labelled"] == 3
        dataset = store.query_one({"uuid": merge.uuid}, load=True)["output"]
        assert dataset["n_added"] == 3 and last["dataset_uuid"] == merge.uuid
        # with the amended summary stored, the extension is not planned again: round 2 trains on its dataset
        third, _ = plan_campaign(maker, config, store)
        assert third is not None
        (round_job,) = third.jobs
        assert round_job.metadata["stage"] == "round"
        state, n_labels = round_job.function_args[:2]
        assert state.dataset_uuid == merge.uuid and n_labels == dataset["n_frames"]
        assert len(frames_from_bytes(dataset["dataset_blob"])) == dataset["n_frames"]
    finally:
        store.close()


def test_submit_plans_the_same_extension_before_the_next_round(two_rounds, tmp_path):
    """``al-flows submit`` plans through the same code: the FireWorks workflow that extends the campaign
    holds the extension's jobs, and the round-2 job waits for the merge that adds the labels."""
    from al_flows.campaign.fireworks import campaign_workflow

    workdir, _, _ = two_rounds
    work = tmp_path / "work"
    shutil.copytree(workdir, work)
    wf, why = campaign_workflow(validate_campaign(settings(3)), ".", work)
    assert wf is not None and why.startswith("extending campaign 'tiny' after round 1")
    by_name = {fw.name: fw for fw in wf.fws}
    assert set(by_name) == {"extension r1", "label", "merge r1 on extension", "round_summary r1 on extension", "round"}
    parents = {wf.id_fw[i].name for i in wf.links.parent_links[by_name["round"].fw_id]}
    assert "merge r1 on extension" in parents
