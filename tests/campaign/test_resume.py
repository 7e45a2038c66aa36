"""Kill a running campaign (real SIGKILL of the al-flows process) at several points and run
it again: the run goes on from the last finished job, repeats no training, exploration or
label, duplicates nothing, and ends with the same dataset as an uninterrupted run."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from al_flows.campaign.config import validate_campaign
from al_flows.campaign.stores import make_job_store
from al_flows.frames.dataset import Dataset

RUNNER = Path(__file__).resolve().parents[1] / "fault_runner.py"

# Kill points, in the order a run meets them; each run resumes the one killed before it.
KILLS = [
    "epochs@train:0#2",  # during the training of round 0's second member (the first is done)
    "predict@explore:0#3",  # in the middle of round 0's exploration
    "calc@label:0#2",  # during round 0's labelling, one label done
    "blob@label:0#1",  # inside the store write of round 0's labels (blob written, document not)
    "doc@summary:0#1",  # right after round 0's summary is stored
    "epochs@train:1#1",  # during round 1's first training
    "calc@label:1#3",  # during round 1's labelling
]


def _config(tiny: dict) -> dict:
    cfg = copy.deepcopy(tiny)
    cfg["name"] = "resume"
    cfg["max_rounds"] = 3  # rounds 0 and 1 label, round 2 stops
    cfg["explorers"][0]["n_runs"] = 2
    return cfg


def _run(workdir: Path, config: Path, log: Path, kill: str | None = None) -> subprocess.CompletedProcess:
    args = (
        [sys.executable, str(RUNNER), str(log)]
        + (["--kill", kill] if kill else [])
        + ["--", "run", str(config), "--workdir", str(workdir)]
    )
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(RUNNER.parent.parent / "src")}
    return subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)


def _work(log: Path) -> Counter:
    """Finished units of work in a log (kill markers left out)."""
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter(ln for ln in lines if not ln.startswith("killed"))


def _dataset(workdir: Path, name: str = "resume"):
    config = validate_campaign(json.loads((workdir / "campaign.json").read_text()))
    store = make_job_store(config.store, workdir)
    store.connect()
    try:
        merges = list(
            store.query({"metadata.campaign": name, "metadata.stage": "merge"}, properties=["metadata", "index"])
        )
        stages = Counter(
            (d["metadata"]["stage"], d["metadata"]["round"])
            for d in store.query({"metadata.campaign": name}, properties=["metadata"])
        )
        last = max(merges, key=lambda d: d["metadata"]["round"])["metadata"]["round"]
        doc = store.query_one({"metadata.campaign": name, "metadata.stage": "merge", "metadata.round": last}, load=True)
        return Dataset.from_bytes(doc["output"]["dataset_blob"]), stages, len(merges)
    finally:
        store.close()


@pytest.fixture(scope="module")
def campaigns(tmp_path_factory):
    from helpers import TINY

    base = tmp_path_factory.mktemp("resume")
    config = base / "resume.yaml"
    config.write_text(yaml.safe_dump(_config(TINY)))

    clean_dir, clean_log = base / "clean", base / "clean.log"
    clean = _run(clean_dir, config, clean_log)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    killed_dir, killed_log = base / "killed", base / "killed.log"
    outcomes = []
    for point in KILLS:
        proc = _run(killed_dir, config, killed_log, kill=point)
        outcomes.append((point, proc.returncode, proc.stdout + proc.stderr))
    final = _run(killed_dir, config, killed_log)
    return clean_dir, clean_log, killed_dir, killed_log, outcomes, final


def test_every_kill_point_was_reached_and_killed(campaigns):
    *_, killed_log, outcomes, final = campaigns
    assert [(p, rc) for p, rc, _ in outcomes] == [(p, -9) for p in KILLS], [o[2][-2000:] for o in outcomes]
    killed = [ln for ln in killed_log.read_text().splitlines() if ln.startswith("killed")]
    assert killed == [f"killed {p}" for p in KILLS]
    assert final.returncode == 0, final.stdout + final.stderr
    assert "continuing campaign" in final.stdout


def test_resumed_runs_repeat_no_training_exploration_or_label(campaigns):
    _, clean_log, _, killed_log, *_ = campaigns
    clean, killed = _work(clean_log), _work(killed_log)
    assert clean["train 0"] == 2 and clean["train 1"] == 2 and clean["train 2"] == 2
    assert clean["explore 0"] == 1 and clean["emt label 0"] == 3
    # the killed-and-resumed runs together finished exactly the work of one uninterrupted run
    assert killed == clean


def test_final_dataset_equals_uninterrupted_run(campaigns):
    clean_dir, _, killed_dir, *_ = campaigns
    clean, clean_stages, _ = _dataset(clean_dir)
    resumed, resumed_stages, _ = _dataset(killed_dir)
    assert len(clean) == len(resumed) == 8 + 3 + 3
    assert resumed.ids == clean.ids
    for a, b in zip(clean, resumed, strict=True):
        assert a.get_potential_energy() == b.get_potential_energy()
        np.testing.assert_array_equal(a.get_forces(), b.get_forces())
        np.testing.assert_array_equal(a.positions, b.positions)
    # one stored document per job: nothing duplicated by the resumed runs
    assert resumed_stages == clean_stages
    assert resumed_stages[("train", 1)] == 2 and resumed_stages[("label", 0)] == 1


def test_reports_agree(campaigns):
    clean_dir, _, killed_dir, *_ = campaigns
    a = json.loads((clean_dir / "report.json").read_text())
    b = json.loads((killed_dir / "report.json").read_text())
    from helpers import untimed

    assert untimed(a["rounds"]) == untimed(b["rounds"]) and a["finished"] and b["finished"]
