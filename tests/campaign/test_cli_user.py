"""The command line as a new user meets it: a work directory holds one campaign, ``export dataset
--round``, read-only commands and a closed stdout, export folders, messages that point the right
way, ``--version``, and a fast answer for a malformed campaign file.

Every CLI check runs the real ``al-flows`` process and checks its exit code, its one line on stderr
and that the work directory is unchanged (file names, sizes and modification times)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from ase.io import read
from jobflow import JobStore
from maggma.stores import MemoryStore

from al_flows.campaign.config import validate_campaign
from al_flows.campaign.lineage import label_lineage
from al_flows.campaign.record import CampaignRecord
from al_flows.campaign.run import open_store, run_campaign

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """The tiny campaign (two rounds), finished, and its record (the store is closed again before the
    CLI reads it)."""
    from helpers import TINY

    config = validate_campaign(copy.deepcopy(TINY))
    workdir = tmp_path_factory.mktemp("user") / "run"
    run_campaign(config, ".", workdir, echo=lambda *_: None)
    store = open_store(config, workdir)
    record = CampaignRecord(store, config.name)
    facts = {
        "labels": record.labels(),
        "models": record.models(),
        "summaries": record.summaries(),
        "select": [
            (d["metadata"]["round"], d["output"]) for d in record.outputs("select", properties=["output.records"])
        ],
    }
    store.close()
    return workdir, facts


def al_flows(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "al_flows.cli", *args], capture_output=True, text=True, env=env, cwd=cwd
    )


def one_error(out: subprocess.CompletedProcess) -> str:
    """The single line a refused command printed on stderr (exit status 2 checked)."""
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, (out.returncode, out.stderr)
    return lines[0]


# maggma's MontyStore.connect writes the embedded store's storage settings again, the same bytes, each time
# any command opens the store: for these two files the content counts, not the modification time
REWRITTEN_ON_OPEN = {"store/.monty.storage", "store/monty.storage.cfg"}


def snapshot(folder: Path) -> dict[str, tuple[int, int | bytes]]:
    """Every file below ``folder``: (size, modification time in ns) by relative path."""
    out: dict[str, tuple[int, int | bytes]] = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            rel = str(p.relative_to(folder))
            out[rel] = (p.stat().st_size, p.read_bytes() if rel in REWRITTEN_ON_OPEN else p.stat().st_mtime_ns)
    return out


def tiny_yaml(folder: Path, **changes) -> Path:
    from helpers import TINY

    data = copy.deepcopy(TINY) | changes
    path = folder / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# ------------------------------------------------------------------ a work directory holds one campaign
def test_another_campaign_name_on_a_used_workdir_is_refused_by_run_and_submit(campaign, tmp_path):
    workdir, _ = campaign
    other = tiny_yaml(tmp_path, name="other")
    before = snapshot(workdir)
    want = (
        f"error: --workdir: {workdir} already holds campaign 'tiny', not 'other' (a work directory holds one "
        "campaign); give campaign 'other' another --workdir"
    )
    out = al_flows("run", str(other), "--workdir", str(workdir))
    assert one_error(out) == want and out.stdout == ""
    out = al_flows("submit", str(other), "--launchpad", str(tmp_path / "no_launchpad.yaml"), "--workdir", str(workdir))
    assert one_error(out) == want
    assert snapshot(workdir) == before
    assert json.loads((workdir / "campaign.json").read_text())["name"] == "tiny"


def test_other_settings_refusal_no_longer_suggests_another_campaign_name(campaign, tmp_path):
    workdir, _ = campaign
    changed = tiny_yaml(tmp_path, seed=4)
    before = {k: v for k, v in snapshot(workdir).items() if k != ".al_flows.lock"}  # the lock takes the run's pid
    line = one_error(al_flows("run", str(changed), "--workdir", str(workdir)))
    assert line == (
        "error: the store already holds campaign 'tiny' with other settings (seed: 3 -> 4); restore them to "
        "continue, or use a new --workdir"
    )
    assert {k: v for k, v in snapshot(workdir).items() if k != ".al_flows.lock"} == before


# ------------------------------------------------------------------ export dataset --round
def test_export_dataset_round_is_what_that_rounds_models_trained_on(campaign, tmp_path):
    workdir, facts = campaign
    rounds = sorted({m["round"] for m in facts["models"].values()})
    assert rounds == [0, 1]
    sizes = {}
    for k in rounds:
        out = al_flows(
            "export",
            "--workdir",
            str(workdir),
            "dataset",
            "--round",
            str(k),
            "--output",
            str(tmp_path / f"r{k}.extxyz"),
        )
        assert out.returncode == 0, out.stderr
        frames = read(tmp_path / f"r{k}.extxyz", ":")
        ids = {a.info["frame_id"] for a in frames}
        trained = {f for m in facts["models"].values() if m["round"] == k for f in m["train_ids"] + m["val_ids"]}
        assert ids == trained and len(frames) == facts["summaries"][k]["n_labels_total"]
        assert {f for f, rec in facts["labels"].items() if rec["round"] < k} == ids
        sizes[k] = len(frames)
    assert sizes[0] < sizes[1]  # round 1 trained on round 0's labels too
    assert (
        al_flows("export", "--workdir", str(workdir), "dataset", "--output", str(tmp_path / "all.extxyz")).returncode
        == 0
    )
    # every label; the tiny campaign's last round labels nothing (its labels would never be trained on)
    assert len(read(tmp_path / "all.extxyz", ":")) == len(facts["labels"]) == sizes[1]


def test_export_dataset_of_a_round_without_models_is_refused(campaign, tmp_path):
    workdir, _ = campaign
    before = snapshot(workdir)
    for bad in ("7", "-1"):
        out = al_flows(
            "export", "--workdir", str(workdir), "dataset", "--round", bad, "--output", str(tmp_path / "x" / "d.extxyz")
        )
        assert (
            one_error(out)
            == f"error: --round: no models were trained in round {bad}; rounds with trained models: [0, 1]"
        )
    assert not (tmp_path / "x").exists() and snapshot(workdir) == before


# ------------------------------------------------------------------ read-only commands, export folders
@pytest.mark.parametrize("command", [("status", "--json"), ("lineage", "--label", "LABEL", "--json")])
def test_a_closed_stdout_ends_quietly_and_writes_nothing(campaign, command):
    workdir, facts = campaign
    args = [a.replace("LABEL", next(iter(facts["labels"]))) for a in command]
    before = snapshot(workdir)
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "al_flows.cli", *args, "--workdir", str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    proc.stdout.close()  # the reader is gone before the command prints (as `| head -c 10` once it has its bytes)
    err = proc.stderr.read().decode()
    assert proc.wait() == 141 and err == ""
    assert snapshot(workdir) == before  # al_flows.log (the run's) included: no traceback appended


def test_export_dataset_creates_the_folders_of_its_output(campaign, tmp_path):
    workdir, facts = campaign
    target = tmp_path / "nodir" / "sub" / "data.extxyz"
    out = al_flows("export", "--workdir", str(workdir), "dataset", "--output", str(target))
    assert out.returncode == 0 and out.stderr == "" and len(read(target, ":")) == len(facts["labels"])


def test_export_model_refuses_a_folder_with_another_rounds_models(campaign, tmp_path):
    workdir, _ = campaign
    models = tmp_path / "models"
    assert (
        al_flows("export", "--workdir", str(workdir), "model", "--round", "0", "--output", str(models)).returncode == 0
    )
    before = snapshot(models)
    assert sorted(before) == ["round0_member0.pt", "round0_member1.pt"]
    out = al_flows("export", "--workdir", str(workdir), "model", "--round", "1", "--output", str(models))
    assert one_error(out) == (
        f"error: --output: {models} already holds other model files (round0_member0.pt, round0_member1.pt), which "
        "would be mixed with round 1's; give another --output or empty it"
    )
    assert snapshot(models) == before
    again = al_flows("export", "--workdir", str(workdir), "model", "--round", "0", "--output", str(models))
    assert again.returncode == 0 and sorted(snapshot(models)) == sorted(before)  # the same round again: rewritten


# ------------------------------------------------------------------ messages that point the right way
def test_unknown_model_id_points_to_the_model_ids_in_status(campaign):
    workdir, facts = campaign
    before = snapshot(workdir)
    line = one_error(al_flows("lineage", "--workdir", str(workdir), "--model", "nope"))
    assert "'al-flows status --json' (rounds[].model_ids, rounds[].ensemble_id)" in line
    rows = json.loads(al_flows("status", "--workdir", str(workdir), "--json").stdout)["rounds"]
    assert [r["model_ids"] for r in rows] == [facts["summaries"][k]["model_ids"] for k in (0, 1)]
    assert {m for r in rows for m in r["model_ids"]} == set(facts["models"])
    for model_id in (rows[1]["model_ids"][0], rows[1]["ensemble_id"]):
        assert al_flows("lineage", "--workdir", str(workdir), "--model", model_id).returncode == 0
    assert snapshot(workdir) == before


def test_lineage_of_an_explored_frame_that_is_no_label_says_what_it_is(campaign):
    workdir, facts = campaign
    k, rec = next((k, r) for k, s in facts["select"] for r in s["records"] if r["frame_id"] not in facts["labels"])
    assert rec["status"] == "candidate" and not rec["selected"]  # the tiny campaign's trust window takes every frame
    before = snapshot(workdir)
    line = one_error(al_flows("lineage", "--workdir", str(workdir), "--label", rec["frame_id"]))
    assert line == (
        f"error: --label: frame '{rec['frame_id']}' is not a label: explored in round {k} by explorer 'shear', "
        f"deviation {rec['deviation']:.4g} eV/A; not labelled: a candidate not selected (selection.max_candidates, "
        "or a copy of a frame labelled before)"
    )
    assert snapshot(workdir) == before


def _record_with(
    records: list[dict], failures: tuple[dict, ...] = (), skipped: tuple[dict, ...] = ()
) -> CampaignRecord:
    """A store with one round-2 exploration of ``records``' frames, its selection and its label document."""
    store = JobStore(MemoryStore())
    store.connect()
    meta = {"campaign": "c", "round": 2}
    frames = [{"frame_id": r["frame_id"], "step": 1} for r in records]
    docs = [
        {
            "uuid": "x",
            "index": 1,
            "metadata": {**meta, "stage": "explore"},
            "output": {"explorer": "md", "frames": frames},
        },
        {
            "uuid": "s",
            "index": 1,
            "metadata": {**meta, "stage": "select"},
            "output": {"records": records, "trust_lo": 0.05, "trust_hi": 0.3, "budget_skipped": list(skipped)},
        },
        {
            "uuid": "l",
            "index": 1,
            "metadata": {**meta, "stage": "label"},
            "output": {"round": 2, "records": [], "failures": list(failures), "n_requested": 1},
        },
    ]
    store.docs_store.update(docs, key=["uuid", "index"])
    return CampaignRecord(store, "c")


@pytest.mark.parametrize(
    "status,selected,extra,why",
    [
        ("accurate", False, {}, "accurate (below trust_lo 0.05)"),
        ("failed", False, {}, "failed (at or above trust_hi 0.3: too far from the training data to label)"),
        (
            "candidate",
            True,
            {"skipped": [{"frame_id": "f"}]},
            "a candidate selected but skipped for the labelling budget",
        ),
        (
            "candidate",
            True,
            {"failures": [{"frame_id": "f", "reason": "RuntimeError: boom"}]},
            "a selected candidate whose labelling failed: RuntimeError: boom",
        ),
    ],
)
def test_explored_frame_says_why_it_was_not_labelled(status, selected, extra, why):
    rec = {"frame_id": "f", "explorer": "md", "deviation": 0.01234, "status": status, "selected": selected}
    record = _record_with([rec], **extra)
    with pytest.raises(KeyError) as exc:
        label_lineage(record, "f")
    assert exc.value.args[0] == (
        "--label: frame 'f' is not a label: explored in round 2 by explorer 'md', deviation 0.01234 eV/A; "
        f"not labelled: {why}"
    )
    with pytest.raises(KeyError) as exc:
        label_lineage(record, "g")
    assert exc.value.args[0] == "--label: no label with frame id 'g' in campaign 'c'"


def test_status_of_a_missing_workdir_says_it_does_not_exist(tmp_path):
    missing = tmp_path / "missing_dir"
    line = one_error(al_flows("status", "--workdir", str(missing)))
    assert (
        line
        == f"error: --workdir: {missing} does not exist; give the work directory a campaign was run or submitted with"
    )
    assert not missing.exists()


def test_a_refused_run_prints_nothing_and_creates_nothing(tmp_path):
    from helpers import TINY

    data = copy.deepcopy(TINY)
    data["initial"]["structures"] = [{"kind": "file", "path": "absent.extxyz"}]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    out = al_flows("run", str(tmp_path / "c.yaml"), "--workdir", str(tmp_path / "never"))
    line = one_error(out)
    assert line.startswith(f"error: {tmp_path / 'c.yaml'}: initial.structures[0]") and out.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


def test_a_type_error_echoes_the_value_and_names_the_file_by_its_path(tmp_path):
    from helpers import TINY

    folder = tmp_path / "sub"
    folder.mkdir()
    data = copy.deepcopy(TINY) | {"ensemble_size": "four"}
    (folder / "c.yaml").write_text(yaml.safe_dump(data))
    out = al_flows("validate", "sub/c.yaml", cwd=tmp_path)
    assert one_error(out) == (
        "error: sub/c.yaml: ensemble_size: Input should be a valid integer, unable to parse string as an integer "
        "(got 'four')"
    )
    data["ensemble_size"] = "x" * 100
    (folder / "c.yaml").write_text(yaml.safe_dump(data))
    line = one_error(al_flows("validate", "sub/c.yaml", cwd=tmp_path))
    assert line.endswith(f"(got '{'x' * 56}...)") and len(line) < 220


def test_version_prints_the_package_version():
    out = al_flows("--version")
    assert out.returncode == 0 and out.stdout == f"al-flows {version('al_flows')}\n"


# ------------------------------------------------------------------ start-up
MALFORMED = {"syntax": "name: [unclosed\n", "key": "name: x\nnmae: y\n", "list": "- a\n- b\n"}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_validate_of_a_malformed_file_answers_before_the_heavy_imports(tmp_path, kind):
    (tmp_path / "bad.yaml").write_text(MALFORMED[kind])
    code = (
        "import sys; from al_flows.cli import main; rc = main(['validate', 'bad.yaml']); "
        "print(rc, sorted(m for m in ('torch', 'jobflow', 'schnetpack', 'pydantic', 'ase') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.stdout.strip() == "2 []", out.stdout + out.stderr
    line = out.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith("error: bad.yaml: ")
    if kind == "key":
        assert line == "error: bad.yaml: nmae: unknown key; remove it or check its spelling (see docs/configuration.md)"


def test_the_quick_check_knows_every_top_level_key():
    from al_flows.active_learning.config import CampaignConfig
    from al_flows.campaign.campaign_file import TOP_LEVEL_KEYS
    from al_flows.pool_study.config import PoolStudyConfig

    assert TOP_LEVEL_KEYS["active_learning"] == {"workflow", *CampaignConfig.model_fields}
    assert TOP_LEVEL_KEYS["pool_study"] == {"workflow", *PoolStudyConfig.model_fields}
