"""A tiny campaign under a labelling budget (labeller.budget.labels_total): it stops with reason
'budget' in the first round that finds the budget spent, and a rerun with a larger total continues
it on the same work directory, labelling the stopped round's selection first, the label counts
adding up."""

from __future__ import annotations

import copy
import json

from al_flows.campaign.config import validate_campaign
from al_flows.campaign.record import CampaignRecord
from al_flows.campaign.run import open_store, run_campaign
from helpers import TINY


def budgeted(labels_total: int) -> dict:
    d = copy.deepcopy(TINY)  # every explored frame is a candidate; at most 3 picked per round
    d["max_rounds"] = 10
    d["labeller"]["budget"] = {"labels_total": labels_total}
    return d


def test_a_spent_budget_stops_the_campaign_and_a_larger_one_continues_it(tmp_path):
    workdir = tmp_path / "w"
    said: list[str] = []
    report = run_campaign(validate_campaign(budgeted(3)), ".", workdir, echo=said.append)
    # round 0 labels 3 (the cap, within the 3 allowed); round 1 trains on them, finds nothing left
    # and stops, labelling nothing
    assert report["finished"] and not report["converged"]
    assert (report["state"], report["stop_reason"]) == ("finished (budget)", "budget")
    rows = report["rounds"]
    assert [r["round"] for r in rows] == [0, 1]
    assert [r["n_labelled"] for r in rows] == [3, 0]
    assert [r["labels_spent"] for r in rows] == [3, 3]
    assert [r["n_budget_skipped"] for r in rows] == [0, 0]
    assert [r["core_hours_spent"] for r in rows] == [None, None]  # an ASE labeller is not timed
    n_initial = rows[0]["n_labels_total"]
    assert rows[1]["n_labels_total"] == n_initial + 3

    # the same settings again: finished, nothing to do
    again = run_campaign(validate_campaign(budgeted(3)), ".", workdir, echo=said.append)
    assert "already finished after 2 round(s)" in said[-1] and again["rounds"] == rows

    # a larger total continues: round 1 stopped with 3 picks unlabelled, 2 of which fit now; they are
    # labelled before round 2 trains, and round 2 finds the budget spent
    report = run_campaign(validate_campaign(budgeted(5)), ".", workdir, echo=said.append)
    assert said[-1].startswith("extending campaign 'tiny' after round 1") and "'labels_total': 5" in said[-1]
    rows = report["rounds"]
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert [r["n_labelled"] for r in rows] == [3, 2, 0]
    assert [r["labels_spent"] for r in rows] == [3, 5, 5]
    assert [r["n_budget_skipped"] for r in rows] == [0, 1, 0]
    assert [r["n_labels_total"] for r in rows] == [n_initial, n_initial + 3, n_initial + 5]
    assert report["stop_reason"] == "budget" and report["state"] == "finished (budget)"
    assert json.loads((workdir / "report.json").read_text())["rounds"] == rows

    config = validate_campaign(budgeted(5))
    store = open_store(config, workdir)
    try:
        record = CampaignRecord(store, config.name)
        assert len(record.final_dataset()) == n_initial + 5
        status = record.status()
        assert status["stop_reason"] == "budget" and status["state"] == "finished (budget)"
        assert [r["labels_spent"] for r in status["rounds"]] == [3, 5, 5]
        (sel,) = record.outputs("select", 1, properties=["output"])
        picks = {r["frame_id"]: r["deviation"] for r in sel["output"]["records"] if r["selected"]}
        assert len(picks) == 3 and sel["output"]["stop_reason"] == "budget"
        (ext,) = record.outputs("extension", 1, properties=["output"])
        doc = ext["output"]
        (skipped,) = doc["budget_skipped"]
        labelled = {rec["frame_id"] for d in record.label_documents() for rec in d["output"]["records"]}
        # the skipped frame is the one of lowest deviation among round 1's picks (strategy deviation)
        assert (doc["n_selected"], doc["n_to_label"]) == (3, 2) and skipped["frame_id"] not in labelled
        assert set(picks) - {skipped["frame_id"]} <= labelled
        assert skipped["deviation"] == min(picks.values()) and skipped["priority"] == 2
        assert skipped["reason"].startswith("labeller.budget.labels_total: 2 of 5 label(s) left")
        assert doc["budget"]["spent_before"]["labels"] == 3
        result = record.result()
        assert (result["stop_reason"], result["final_round"], result["n_rounds"]) == ("budget", 2, 3)
    finally:
        store.close()
