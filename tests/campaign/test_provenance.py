"""Provenance: the docs/provenance.md cookbook runs against a campaign store and agrees
with the data; status/lineage/export through the CLI are consistent."""

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from al_flows.campaign.config import validate_campaign
from al_flows.campaign.lineage import label_lineage, model_lineage
from al_flows.campaign.record import CampaignRecord
from al_flows.campaign.run import open_store, run_campaign

DOC = (Path(__file__).resolve().parents[2] / "docs" / "provenance.md").read_text()
QUERIES = re.findall(r"\*\*(\d+)\. ([^*]+)\*\*\n\n```python\n(.*?)```", DOC, flags=re.S)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    from helpers import TINY

    config = validate_campaign(TINY)
    workdir = tmp_path_factory.mktemp("prov")
    report = run_campaign(config, ".", workdir, echo=lambda *_: None)
    store = open_store(config, workdir)
    yield config, workdir, report, store, CampaignRecord(store, config.name)
    store.close()


def cli(*args):
    out = subprocess.run([sys.executable, "-m", "al_flows.cli", *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def run_query(number: int, store, campaign: str, **replace):
    code = next(c for n, _, c in QUERIES if int(n) == number)
    for old, new in replace.items():
        assert old in code, old
        code = code.replace(old, new)
    ns = {"store": store, "campaign": campaign}
    exec(code, ns)  # noqa: S102 - the documented query, verbatim
    return ns["result"]


def test_cookbook_has_at_least_eight_queries():
    assert len(QUERIES) >= 8
    assert [int(n) for n, _, _ in QUERIES] == list(range(1, len(QUERIES) + 1))


def test_cookbook_queries_agree_with_the_data(campaign):
    config, workdir, report, store, record = campaign
    data = record.final_dataset()
    labels = {a.info["frame_id"]: a for a in data}

    q1 = run_query(1, store, config.name, **{"R, X = 0, 0.05": "R, X = 0, 0.0"})
    want = {f for f, a in labels.items() if a.info["round"] == 0 and a.info["deviation"] > 0.0}
    assert {r["frame_id"] for r in q1} == want and len(want) == 3

    q2 = run_query(2, store, config.name)
    last_models = set(record.summaries()[1]["model_ids"])
    assert 0 < len(q2) <= 10 and [e for e, _, _ in q2] == sorted((e for e, _, _ in q2), reverse=True)
    assert {m for _, _, m in q2} <= last_models and all(f in labels for _, f, _ in q2)

    q3 = run_query(3, store, config.name)
    assert q3 == [("shear", sum(r["n_candidate"] for r in report["rounds"]))]

    q4 = run_query(4, store, config.name)
    assert q4 == [(r["round"], r["n_labels_total"], r["test_force_rmse"]) for r in report["rounds"]]

    round0_label = sorted(want)[0]
    q5 = run_query(5, store, config.name, **{'frame_id = "..."': f"frame_id = {round0_label!r}"})
    assert [(r, m) for r, m, _ in q5] == [(1, 0), (1, 1)]  # only round-1 models saw a round-0 label

    q6 = run_query(6, store, config.name)
    assert q6 == [(f["round"], f["frame_id"], f["reason"]) for f in record.status()["label_failures"]]

    q7 = run_query(7, store, config.name, **{"G, X = 0.15, 0.02": "G, X = 0.05, 0.0"})
    explored = [f for d in record.outputs("explore") for f in d["output"]["frames"]]
    assert len(q7) == sum(1 for f in explored if f["gamma"] > 0.05 and (f["deviation"] or 0) > 0) > 0

    q8 = run_query(8, store, config.name)
    assert sum(q8.values()) == len(data) == 11
    by_round = Counter()
    for (round_, _, _), n in q8.items():
        by_round[round_] += n
    assert by_round == Counter(a.info["round"] for a in data)

    model = sorted(last_models)[0]
    q9 = run_query(9, store, config.name, **{'model_id = "..."': f"model_id = {model!r}"})
    assert [e for e, _, _ in q9] == list(range(1, config.training.epochs + 1))

    q10 = run_query(10, store, config.name, **{"A = 0.5": "A = 0.0"})
    assert [r for r, _, _ in q10] == [0, 1]


def test_every_label_has_exactly_one_origin_and_lineage_ends_at_initial_data(campaign):
    config, workdir, _, store, record = campaign
    origins = Counter(r["frame_id"] for d in record.label_documents() for r in d["output"]["records"])
    assert origins and set(origins.values()) == {1}
    starting = set(
        store.query_one({"metadata.stage": "structures", "metadata.campaign": config.name})["output"]["structure_ids"]
    )
    for fid in origins:
        lineage = label_lineage(record, fid)
        chain = lineage["chain"]
        assert chain[0]["kind"] == "label" and chain[0]["id"] == fid
        assert chain[-1]["kind"] == "starting_structure" and chain[-1]["id"] in starting
        if lineage["label"]["round"] >= 0:
            kinds = [step["kind"] for step in chain]
            assert kinds == ["label", "selection", "exploration", "ensemble", "starting_structure"]
            assert chain[1]["status"] == "candidate" and chain[3]["id"] == lineage["label"]["model_id"]
            # the selecting ensemble was trained on every label older than this one's round
            assert chain[3]["label_rounds_trained_on"] == list(range(-1, lineage["label"]["round"]))
    # the CLI prints the same lineage as JSON (one label of a round, through a new process)
    fid = next(f for f in origins if record.labels()[f]["round"] == 0)
    assert json.loads(cli("lineage", "--workdir", str(workdir), "--label", fid, "--json")) == json.loads(
        json.dumps(label_lineage(record, fid))
    )


def test_model_training_set_equals_labels_available_then(campaign):
    config, workdir, report, _, record = campaign
    rows = {r["round"]: r for r in json.loads(cli("status", "--workdir", str(workdir), "--json"))["rounds"]}
    assert [r["n_labels_total"] for r in rows.values()] == [r["n_labels_total"] for r in report["rounds"]]
    for model_id, m in record.models().items():
        lineage = model_lineage(record, model_id)
        assert lineage["n_labels"] == rows[m["round"]]["n_labels_total"]
        assert max(lineage["labels_by_round"]) == m["round"] - 1
    via_cli = json.loads(cli("lineage", "--workdir", str(workdir), "--model", model_id, "--json"))
    assert via_cli == json.loads(json.dumps(lineage))
    assert all(r["state"] == "done" and r["wall_time_s"]["train"] > 0 for r in rows.values())


def test_exports_load_back(campaign, tmp_path):
    config, workdir, _, _, record = campaign
    from ase.io import read

    from al_flows.potential.ensemble import Ensemble

    cli("export", "--workdir", str(workdir), "dataset", "--output", str(tmp_path / "d.extxyz"))
    frames = read(tmp_path / "d.extxyz", ":")
    assert len(frames) == 11 and np.isfinite(frames[0].get_potential_energy())
    cli("export", "--workdir", str(workdir), "dataset", "--format", "ase-db", "--output", str(tmp_path / "d.db"))
    from ase.db import connect

    rows = list(connect(tmp_path / "d.db").select())
    assert len(rows) == 11 and {r.key_value_pairs["frame_id"] for r in rows} == {a.info["frame_id"] for a in frames}
    cli(
        "export", "--workdir", str(workdir), "dataset", "--format", "schnetpack", "--output", str(tmp_path / "d_spk.db")
    )
    from schnetpack.data import ASEAtomsData

    assert len(ASEAtomsData(str(tmp_path / "d_spk.db"))) == 11
    out = cli("export", "--workdir", str(workdir), "model", "--output", str(tmp_path / "models"))
    files = sorted((tmp_path / "models").glob("*.pt"))
    assert len(files) == 2 and "round1_member0.pt" in out
    ens = Ensemble.from_bytes([f.read_bytes() for f in files])
    _, blobs = record.ensemble_blobs()
    np.testing.assert_allclose(
        ens.predict(frames[:2]).mean_energies, Ensemble.from_bytes(blobs).predict(frames[:2]).mean_energies
    )


def test_unknown_ids_and_missing_workdir_give_one_line_errors(campaign, tmp_path):
    _, workdir, _, _, _ = campaign
    out = subprocess.run(
        [sys.executable, "-m", "al_flows.cli", "lineage", "--workdir", str(workdir), "--label", "nope"],
        capture_output=True,
        text=True,
    )
    assert (
        out.returncode == 2 and out.stderr.strip() == "error: --label: no label with frame id 'nope' in campaign 'tiny'"
    )
    out = subprocess.run(
        [sys.executable, "-m", "al_flows.cli", "status", "--workdir", str(tmp_path)], capture_output=True, text=True
    )
    assert out.returncode == 2 and "holds no campaign" in out.stderr and len(out.stderr.strip().splitlines()) == 1
