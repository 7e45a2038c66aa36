"""A tiny campaign with warm-started members (training.warm_start): round 0 trains from scratch,
round 1 starts each member from the same member of round 0 and trains warm_epochs epochs, a run that
continues the campaign starts round 2 from round 1's members (found from the stored round), and
round 3 (retrain_every: 3) trains from scratch again. The provenance, the lineage chain, the
diversity figure and the rerun of a killed warm-started train job are checked on it."""

from __future__ import annotations

import copy

import pytest
import torch
from jobflow import OutputReference

from al_flows.active_learning import ActiveLearningMaker
from al_flows.campaign.config import validate_campaign
from al_flows.campaign.lineage import model_lineage
from al_flows.campaign.record import CampaignRecord
from al_flows.campaign.run import open_store, run_campaign
from al_flows.cli_text import print_lineage
from al_flows.potential import training as training_module
from al_flows.potential.weights import member_from_bytes, weights_bytes
from al_flows.workflow.jobs import latest_outputs, stable_uuid

WARM = {"epochs": 4, "warm_start": True, "warm_epochs": 2, "retrain_every": 3}


def _config(max_rounds: int):
    from helpers import TINY

    d = copy.deepcopy(TINY)
    d["name"] = "tiny-warm"
    d["training"] = {**d["training"], **WARM}
    d["max_rounds"] = max_rounds
    return validate_campaign(d)


@pytest.fixture(scope="module")
def warm_campaign(tmp_path_factory):
    """Rounds 0 and 1 in one run, then a run with max_rounds 4 continues with rounds 2 and 3."""
    workdir = tmp_path_factory.mktemp("warm") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AL_FLOWS_DEVICE", "cpu")
        run_campaign(_config(2), ".", workdir, echo=lambda *_: None)
        report = run_campaign(_config(4), ".", workdir, echo=lambda *_: None)
    config = _config(4)
    store = open_store(config, workdir)
    yield config, report, store
    store.close()


def _trains(store, name: str, load: bool = False) -> dict[tuple[int, int], dict]:
    docs = latest_outputs(store, name, "train", load=load)
    return {(d["output"]["round"], d["output"]["member"]): {**d["output"], "uuid": d["uuid"]} for d in docs}


def test_rounds_start_warm_or_from_scratch_as_configured(warm_campaign):
    config, report, store = warm_campaign
    assert report["finished"] and [r["round"] for r in report["rounds"]] == [0, 1, 2, 3]
    trains = _trains(store, config.name)
    assert sorted(trains) == [(k, m) for k in range(4) for m in range(2)]
    for (k, m), doc in trains.items():
        warm = k in (1, 2)
        assert doc["start"] == ("warm" if warm else "scratch"), (k, m)
        assert len(doc["curve"]) == (2 if warm else 4), (k, m)  # warm_epochs, else epochs
        if warm:
            before = trains[(k - 1, m)]
            assert doc["warm_start_from"] == before["model_id"] and doc["warm_start_uuid"] == before["uuid"]
            assert before["uuid"] == stable_uuid(config.name, config.fingerprint(), k - 1, "train", f"member {m}")
            assert doc["scratch_reason"] == ""
            assert set(before["val_ids"]) <= set(doc["val_ids"])  # validation frames stay validation frames
        else:
            assert doc["warm_start_from"] is None and doc["warm_start_uuid"] is None
        assert len(doc["labels_from"]) == 1 and doc["labels_from"][0].startswith("ase:emt:")  # its settings id
    assert trains[(0, 0)]["scratch_reason"] == "round 0"
    assert "retrain_every" in trains[(3, 1)]["scratch_reason"]


def test_the_diversity_figure_is_recorded(warm_campaign):
    config, report, store = warm_campaign
    evals = {d["output"]["round"]: d["output"] for d in latest_outputs(store, config.name, "evaluate")}
    assert sorted(evals) == [0, 1, 2, 3]
    for row in report["rounds"]:
        figure = evals[row["round"]]["member_disagreement"]
        assert isinstance(figure, float) and 0 < figure < 10  # eV/A: two members never agree exactly
        assert row["member_disagreement"] == figure


def test_lineage_follows_the_warm_starts(warm_campaign, capsys):
    config, report, store = warm_campaign
    trains = _trains(store, config.name)
    record = CampaignRecord(store, config.name)
    lineage = model_lineage(record, trains[(2, 1)]["model_id"])
    assert lineage["start"]["start"] == "warm" and lineage["start"]["warm_start_from"] == trains[(1, 1)]["model_id"]
    chain = [(c["round"], c["member"], c["start"], c["model_id"]) for c in lineage["warm_chain"]]
    assert chain == [(1, 1, "warm", trains[(1, 1)]["model_id"]), (0, 1, "scratch", trains[(0, 1)]["model_id"])]
    scratch = model_lineage(record, trains[(3, 0)]["model_id"])
    assert scratch["warm_chain"] == [] and "retrain_every" in scratch["start"]["scratch_reason"]
    print_lineage(lineage, label=False)  # what `al-flows lineage --model` prints
    print_lineage(scratch, label=False)
    text = capsys.readouterr().out
    m1, m0 = trains[(1, 1)]["model_id"], trains[(0, 1)]["model_id"]
    assert f"started warm from {m1} (round 1) <- {m0} (round 0)" in text
    assert "trained from scratch: a full retrain every 3 rounds (training.retrain_every)" in text


def test_a_killed_warm_started_train_job_reruns_to_the_same_weights(warm_campaign, monkeypatch):
    """Round 2's first member, planned again as the continued run planned it (its previous member found
    from round 1's stored summary), is killed half-way through its epochs with its output gone, and run
    again by jobflow: it loads round 1's member from the data store and stores the same weights, bit for bit."""
    config, report, store = warm_campaign
    stored = _trains(store, config.name, load=True)[(2, 0)]
    maker = ActiveLearningMaker.from_config(config)
    summary = CampaignRecord(store, config.name).summaries()[1]  # round 1's, amended by the extension
    state = maker.continue_from(summary, store).jobs[-1].function_args[0]  # the RoundState round 2 was planned with
    round1 = _trains(store, config.name)
    assert state.round == 2 and state.train_uuids == [round1[(1, 0)]["uuid"], round1[(1, 1)]["uuid"]]
    job = maker.train_job(state, OutputReference(state.dataset_uuid), 0)
    assert job.uuid == stored["uuid"] and job.function_kwargs["previous_uuid"] == stored["warm_start_uuid"]

    class Killed(BaseException):
        """A kill: not an Exception, so no failure record is written (as after a SIGKILL)."""

    run_epochs = training_module.Trainer.run_epochs

    def killed(self, train_idx, val_idx, n_epochs):
        run_epochs(self, train_idx, val_idx, max(1, n_epochs // 2))
        raise Killed

    store.docs_store.remove_docs({"uuid": job.uuid})  # the killed run stored nothing
    monkeypatch.setattr(training_module.Trainer, "run_epochs", killed)
    with pytest.raises(Killed):
        job.run(store)
    monkeypatch.setattr(training_module.Trainer, "run_epochs", run_epochs)
    assert not _trains(store, config.name).get((2, 0))
    job.run(store)
    again = _trains(store, config.name, load=True)[(2, 0)]
    assert again["model_id"] == stored["model_id"] and again["warm_start_from"] == stored["warm_start_from"]
    a, b = (member_from_bytes(weights_bytes(d["model_blob"]))[0].state_dict() for d in (stored, again))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
