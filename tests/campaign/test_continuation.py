"""Settings and continuation, through the real ``al-flows`` process: convergence in the last
allowed round, refused runs that change nothing, validate catching what run rejects, fix and
run again, extending a finished campaign, one-line CLI errors and failures shown by status."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import TINY

EXE = shutil.which("al-flows", path=str(Path(sys.executable).parent)) or "al-flows"
TESTS = Path(__file__).resolve().parents[1]  # tests/ (failing_calculator.py)


def cli(*args, cwd=None, check_rc=None):
    env = {**os.environ, "PYTHONPATH": str(TESTS) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    if check_rc is not None:
        assert out.returncode == check_rc, out.stdout + out.stderr
    return out


def write(path: Path, settings: dict) -> Path:
    path.write_text(yaml.safe_dump(settings))
    return path


def snapshot(workdir: Path) -> dict:
    """Every file under WORKDIR with a hash of its content (the lock file, which holds the
    pid of the last process that took it, left out)."""
    return {
        str(p.relative_to(workdir)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(workdir.rglob("*"))
        if p.is_file() and p.name != ".al_flows.lock"
    }


def one_error_line(out) -> str:
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in out.stdout + out.stderr
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The tiny campaign run to its round limit (2 rounds) through the CLI."""
    base = tmp_path_factory.mktemp("finished")
    campaign = write(base / "tiny.yaml", copy.deepcopy(TINY))
    workdir = base / "work"
    out = cli("run", campaign, "--workdir", workdir, check_rc=0)
    assert "finished (round limit)" in out.stdout
    return base, campaign, workdir


# -- convergence ---------------------------------------------------------------------------------


@pytest.mark.parametrize("max_rounds", [1, 2])
def test_campaign_converging_in_round_0_reports_converged(tmp_path, max_rounds):
    """Every explored frame is accurate (trust_lo far above any deviation): round 0 converges,
    labels nothing, and the campaign stops there, converged, also when round 0 is its last."""
    settings = copy.deepcopy(TINY)
    settings.update(
        max_rounds=max_rounds,
        selection={"trust_lo": 1e5, "trust_hi": 1e6, "max_candidates": 3},
        convergence={"accurate_ratio": 0.9},
    )
    out = cli("run", write(tmp_path / "c.yaml", settings), "--workdir", tmp_path / "w", check_rc=0)
    report = json.loads((tmp_path / "w" / "report.json").read_text())
    assert report["converged"] is True and report["finished"] is True and report["state"] == "converged"
    assert [r["round"] for r in report["rounds"]] == [0]  # the early stop
    row = report["rounds"][0]
    assert row["accurate_ratio"] == 1.0 and row["n_explored"] > 0
    assert row["n_labelled"] == 0 and row["n_candidate"] == 0  # a converged round labels nothing
    assert "converged;" in out.stdout
    status = json.loads(cli("status", "--workdir", tmp_path / "w", "--json", check_rc=0).stdout)
    assert status["converged"] is True and status["state"] == "converged"


# -- refused runs, validate, fix and run again -----------------------------------------------------


def test_refused_run_changes_nothing_and_names_the_keys(finished, tmp_path):
    base, _, workdir = finished
    before = snapshot(workdir)
    settings = copy.deepcopy(TINY)
    settings["training"]["lr"] = 1e-3
    settings["selection"]["max_candidates"] = 5
    out = cli("run", write(tmp_path / "changed.yaml", settings), "--workdir", workdir)
    assert out.returncode == 2
    line = one_error_line(out)
    assert "training.lr: 0.002 -> 0.001" in line and "selection.max_candidates: 3 -> 5" in line
    assert "fingerprint" not in line  # keys, not hashes
    assert snapshot(workdir) == before  # campaign.json included: check first, write after


def test_runtime_settings_do_not_refuse_and_extend_the_campaign(finished, tmp_path):
    """device, amp, batched, min_success_fraction and max_rounds are not in the fingerprint:
    the same work directory accepts them, and a larger max_rounds continues the campaign (round 1's
    selection, not labelled when round 1 stopped the campaign, is labelled first)."""
    base, _, workdir = finished
    work = tmp_path / "work"
    shutil.copytree(workdir, work)
    settings = copy.deepcopy(TINY)
    settings["training"].update(device="cpu", amp=True)
    settings["explorers"][0]["batched"] = False
    settings["labeller"]["min_success_fraction"] = 0.2
    settings["max_rounds"] = 3
    settings["convergence"] = {"accurate_ratio": 0.999}
    out = cli("run", write(tmp_path / "more.yaml", settings), "--workdir", work, check_rc=0)
    assert "extending campaign 'tiny' after round 1" in out.stdout
    report = json.loads((work / "report.json").read_text())
    assert [r["round"] for r in report["rounds"]] == [0, 1, 2]
    assert report["finished"] and report["state"] == "finished (round limit)"
    old = json.loads((workdir / "report.json").read_text())
    from helpers import untimed

    assert untimed(report["rounds"][0]) == untimed(old["rounds"][0])  # the earlier rounds are kept as they were,
    assert untimed(report["rounds"][1]) == untimed({**old["rounds"][1], "n_labelled": 3})  # round 1: now labelled
    assert report["rounds"][2]["n_labels_total"] == old["rounds"][1]["n_labels_total"] + 3
    # the extended campaign is finished again: a rerun only rewrites the report
    again = cli("run", tmp_path / "more.yaml", "--workdir", work, check_rc=0)
    assert "already finished after 3 round(s)" in again.stdout


def test_a_budget_given_to_a_finished_campaign_counts_what_its_rounds_labelled(finished, tmp_path):
    """labeller.budget is not in the fingerprint: given on a later run, it counts the labels of the
    rounds that ran without it (round 0 labelled 3), so a total of 5 leaves 2: the extension labels 2
    of the 3 frames round 1 selected (round 1 had stopped the campaign), and round 2, trained on
    them, stops for the budget."""
    _, _, workdir = finished
    work = tmp_path / "work"
    shutil.copytree(workdir, work)
    settings = copy.deepcopy(TINY)
    settings["max_rounds"] = 6
    settings["labeller"]["budget"] = {"labels_total": 5}
    out = cli("run", write(tmp_path / "budget.yaml", settings), "--workdir", work, check_rc=0)
    assert "extending campaign 'tiny' after round 1" in out.stdout
    assert "finished (budget); report" in out.stdout and "budget spent 5 labels (1 skipped)" in out.stdout
    report = json.loads((work / "report.json").read_text())
    assert [r["round"] for r in report["rounds"]] == [0, 1, 2]
    assert [r["n_labelled"] for r in report["rounds"]] == [3, 2, 0]
    assert [r["n_budget_skipped"] for r in report["rounds"]] == [None, 1, 0]
    assert [r["labels_spent"] for r in report["rounds"]] == [None, 5, 5]  # round 0 ran without it
    assert report["rounds"][2]["n_labels_total"] == report["rounds"][1]["n_labels_total"] + 2
    assert report["stop_reason"] == "budget"
    status = cli("status", "--workdir", work, check_rc=0).stdout
    assert "campaign tiny: finished (budget)" in status and "budget spent 5 labels (0 skipped)" in status


@pytest.mark.parametrize(
    "change, field",
    [
        ({"labeller": {"kind": "ase", "calculator": "mypkg.calcs.DoesNotExist"}}, "labeller.calculator: cannot import"),
        ({"training": {**TINY["training"], "device": "gpu0"}}, "training.device: 'gpu0' is not a torch device"),
    ],
)
def test_validate_catches_what_run_rejects(tmp_path, change, field):
    settings = {**copy.deepcopy(TINY), **change}
    path = write(tmp_path / "bad.yaml", settings)
    for args in (("validate", path), ("run", path, "--workdir", tmp_path / "w")):
        out = cli(*args)
        assert out.returncode == 2
        assert field in one_error_line(out)
    assert not (tmp_path / "w").exists()  # nothing created


def test_failed_run_shows_reasons_then_fix_and_run_again(tmp_path):
    """A labeller whose every calculation fails: the run ends with one line (tracebacks in the
    log), status shows the failed jobs with their reasons, and the corrected file is accepted
    on the same work directory (nothing of the old settings was used)."""
    settings = copy.deepcopy(TINY)
    settings["labeller"]["calculator"] = "failing_calculator.AlwaysFails"
    settings["max_rounds"] = 1
    workdir = tmp_path / "w"
    out = cli("run", write(tmp_path / "c.yaml", settings), "--workdir", workdir)
    assert out.returncode == 2
    line = one_error_line(out)
    assert "stopped before finishing" in line and "license server unreachable" in line
    assert "Traceback" in (workdir / "al_flows.log").read_text()

    status = json.loads(cli("status", "--workdir", workdir, "--json", check_rc=0).stdout)
    assert status["state"] == "not finished" and not status["finished"]
    failed = {f["stage"]: f for f in status["job_failures"]}
    assert "test_set" in failed and "license server unreachable" in failed["test_set"]["reason"]
    text = cli("status", "--workdir", workdir, check_rc=0).stdout
    assert "failed job (before round 0, test_set)" in text and "license server unreachable" in text

    out = cli("export", "--workdir", workdir, "dataset", "--output", tmp_path / "d.extxyz")
    assert out.returncode == 2 and "no dataset yet" in one_error_line(out)
    assert not (tmp_path / "d.extxyz").exists()

    settings["labeller"]["calculator"] = "emt"
    out = cli("run", write(tmp_path / "c.yaml", settings), "--workdir", workdir, check_rc=0)
    assert "earlier attempt with other settings stopped before any result" in out.stdout
    report = json.loads((workdir / "report.json").read_text())
    assert report["finished"] and [r["round"] for r in report["rounds"]] == [0]
    status = json.loads(cli("status", "--workdir", workdir, "--json", check_rc=0).stdout)
    assert status["job_failures"] == []  # the failures belonged to the discarded attempt
    assert json.loads((workdir / "campaign.json").read_text())["labeller"]["calculator"] == "emt"


# -- one-line CLI errors -------------------------------------------------------------------------


def test_export_model_bad_round_creates_nothing(finished, tmp_path):
    _, _, workdir = finished
    out = cli("export", "--workdir", workdir, "model", "--round", 7, "--output", tmp_path / "models")
    assert out.returncode == 2
    assert "--round: no models trained in round 7" in one_error_line(out)
    assert not (tmp_path / "models").exists()
    ok = cli("export", "--workdir", workdir, "model", "--output", tmp_path / "models", check_rc=0)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["round1_member0.pt", "round1_member1.pt"]
    assert "round1_member0.pt" in ok.stdout


def test_lineage_accepts_the_ensemble_id_labels_carry(finished):
    _, _, workdir = finished
    from al_flows.campaign.record import CampaignRecord
    from al_flows.campaign.run import load_workdir_campaign, open_store

    config = load_workdir_campaign(workdir)
    store = open_store(config, workdir)
    try:
        labels = CampaignRecord(store, config.name).labels()
    finally:
        store.close()
    selected = [rec for rec in labels.values() if rec["round"] == 0]
    assert selected  # round 0 labelled its candidates (round 1, the last, labels nothing)
    ensemble = selected[0]["model_id"]
    result = json.loads(cli("lineage", "--workdir", workdir, "--model", ensemble, "--json", check_rc=0).stdout)
    assert result["ensemble_id"] == ensemble and len(result["members"]) == 2
    assert {m["model"]["round"] for m in result["members"]} == {0}
    text = cli("lineage", "--workdir", workdir, "--model", ensemble, check_rc=0).stdout
    assert f"ensemble {ensemble}: 2 member(s)" in text
    out = cli("lineage", "--workdir", workdir, "--model", "nosuchid")
    assert out.returncode == 2 and "no model or ensemble with id 'nosuchid'" in one_error_line(out)


def test_config_errors_name_place_and_field(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("name: x\nseed: [7\nelements: [Cu]\n")
    line = one_error_line(cli("validate", bad_yaml))
    assert "not valid YAML at line 3, column 9" in line
    settings = copy.deepcopy(TINY)
    settings["initial"]["structures"][0]["variants"] = ["pristine", "bogus"]
    line = one_error_line(cli("validate", write(tmp_path / "v.yaml", settings)))
    assert "initial.structures[0].variants: unknown variant(s) ['bogus']" in line
    settings["initial"]["structures"][0].update(
        size=[2, 2, 1], variants=["VNi(N3)"]
    )  # known, but the cell is too small
    line = one_error_line(cli("validate", write(tmp_path / "v.yaml", settings)))
    assert "initial.structures[0].variants: 'VNi(N3)' needs plane N3" in line
    line = one_error_line(cli("status", "--workdir", tmp_path / "nowhere"))
    assert "--workdir" in line
    assert not (tmp_path / "nowhere").exists()


def test_every_option_has_help():
    from al_flows.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, p in sub.choices.items():
        for action in p._actions:
            if action.dest == "help":
                continue
            assert action.help, f"{name} {action.option_strings or action.dest} has no help text"
    import al_flows.cli as cli_module

    for name in sub.choices:
        assert f"``{name}``" in cli_module.__doc__


# -- test set -------------------------------------------------------------------------------------


def test_report_rows_carry_honest_test_metrics_and_test_frames_are_never_trained_on(finished):
    _, _, workdir = finished
    report = json.loads((workdir / "report.json").read_text())
    for row in report["rounds"]:
        for key in (
            "test_force_r2",
            "test_force_rel_rmse",
            "test_force_rmse_relaxed",
            "test_force_rmse_nonequilibrium",
            "test_energy_rmse_per_atom_relaxed",
            "test_energy_rmse_per_atom_nonequilibrium",
        ):
            assert isinstance(row[key], float), key
        assert row["test_force_rmse_relaxed"] < row["test_force_rmse_nonequilibrium"]  # relaxed forces are small
        assert row["test_force_rel_rmse"] > 0 and row["test_force_r2"] < 1
    from al_flows.campaign.record import CampaignRecord
    from al_flows.campaign.run import load_workdir_campaign, open_store
    from al_flows.frames.extxyz import frames_from_bytes

    config = load_workdir_campaign(workdir)
    store = open_store(config, workdir)
    try:
        record = CampaignRecord(store, config.name)
        test = frames_from_bytes(record.outputs("test_set", load=True)[-1]["output"]["frames_blob"])
        test_ids = {a.info["frame_id"] for a in test}
        assert {a.info["subset"] for a in test} == {"relaxed", "nonequilibrium"}
        trained = {f for m in record.models().values() for f in m["train_ids"] + m["val_ids"]}
        assert trained and not test_ids & trained
        assert not test_ids & set(record.final_dataset().ids)
    finally:
        store.close()


def test_a_work_directory_of_version_0_1_is_refused_in_one_line(tmp_path):
    """0.1 stored documents under 0.1 module paths; such a work directory (campaign.json but no
    al_flows_version) is refused before anything is opened or written, by run and by queries."""
    from al_flows import __version__
    from al_flows.campaign.config import ConfigError, validate_campaign
    from al_flows.campaign.run import WORKDIR_VERSION, check_workdir_version, open_store, prepare_store

    config = validate_campaign(copy.deepcopy(TINY))
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    check_workdir_version(fresh)  # no campaign yet: passes
    store = prepare_store(config, fresh)
    store.close()
    assert (fresh / WORKDIR_VERSION).read_text().strip() == __version__ == "0.2.0"
    check_workdir_version(fresh)
    old = tmp_path / "old"
    old.mkdir()
    (old / "campaign.json").write_text((fresh / "campaign.json").read_text())
    before = sorted(p.name for p in old.iterdir())
    for call in (lambda: prepare_store(config, old), lambda: open_store(config, old)):
        with pytest.raises(ConfigError, match=r"written by al_flows 0\.1, .*use a new --workdir") as err:
            call()
        assert "\n" not in str(err.value)
    assert sorted(p.name for p in old.iterdir()) == before  # nothing written
