"""A whole seed-000 pool study through jobflow on the embedded store (tiny settings), checked
through its stored documents, the CLI and the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.calculators.emt import EMT

from al_flows.campaign.config import ConfigError, validate_campaign
from al_flows.cli import main
from al_flows.exploration.shear import ShearSettings
from al_flows.exploration.shear_sequential import run_shear
from al_flows.exploration.shear_steps import run_seed
from al_flows.frames.extxyz import frames_from_bytes
from al_flows.pool_study.report import pool_study_outputs
from al_flows.pool_study.shear_study import unsheared_reference
from al_flows.potential.ensemble import Ensemble
from al_flows.potential.weights import weights_bytes
from al_flows.structures.multilayer import cuni_multilayer
from al_flows.workflow.jobs import latest_outputs

ML = {"kind": "multilayer", "size": [1, 1, 3], "lattice_constant": 3.58, "variants": ["pristine", "VNi(N1)"]}
TINY_STUDY = {
    "workflow": "pool_study",
    "name": "tiny_pool",
    "seed": 3,
    "elements": ["Cu", "Ni"],
    "pool": {
        "sources": [{"kind": "md", "structures": [ML], "temperatures_K": [1500], "n_steps": 40}],
        "test_fraction": 0.1,
    },
    "model": {"n_atom_basis": 8, "n_interactions": 1, "n_rbf": 8, "cutoff": 4.0},
    "training": {"batch_size": 8, "lr": 3e-3, "lr_patience": 5},
    "active_sampling": {
        "n_iterations": 3,
        "epochs_per_iteration": 10,
        "n_initial": 10,
        "n_validation": 10,
        "n_examine": 30,
        "eps_tol": 0.45,
    },
    "shear_study": {
        "structures": [ML],
        "n_runs": 3,
        "runs_per_job": 2,
        "sigma": 0.05,
        "shear_step": 0.6,
        "gamma_max": 0.3,
        "fmax": 0.05,
        "max_steps": 4,
    },
    "validation": {"n_minima": 2, "fmax": 0.05, "max_steps": 50},
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Run the tiny study once with the CLI; return (workdir, store, outputs)."""
    import yaml

    from al_flows.campaign.run import load_workdir_campaign, open_store

    root = tmp_path_factory.mktemp("pool")
    cfg = root / "study.yaml"
    cfg.write_text(yaml.safe_dump(TINY_STUDY))
    workdir = root / "run"
    assert main(["run", str(cfg), "--workdir", str(workdir)]) == 0
    config = load_workdir_campaign(workdir)
    store = open_store(config, workdir)
    yield workdir, store, pool_study_outputs(store, "tiny_pool"), cfg
    store.close()


def test_config_errors_are_one_line_per_field():
    bad = dict(TINY_STUDY, validation={"n_minima": 0}, shear_study=None)
    with pytest.raises(ConfigError) as err:
        validate_campaign(bad)
    lines = str(err.value).splitlines()
    assert any(line.startswith("campaign: validation.n_minima:") for line in lines)
    with pytest.raises(ConfigError, match="workflow: unknown workflow 'seed000'"):
        validate_campaign(dict(TINY_STUDY, workflow="seed000"))
    with pytest.raises(ConfigError, match="add a shear_study section"):
        validate_campaign(dict(TINY_STUDY, shear_study=None))


def test_report_and_table(study):
    workdir, _, out, _ = study
    report = json.loads((workdir / "report.json").read_text())
    assert report["finished"] and report["workflow"] == "pool_study"
    assert [r["strategy"] for r in report["table"]] == ["active", "uniform", "active_set"]
    for key in (
        "uniform_over_active_best_val_loss",
        "uniform_over_active_test_force_rmse",
        "active_set_over_active_test_loss",
    ):
        assert np.isfinite(report["ratios"][key])
    rows = {r["strategy"]: r for r in report["table"]}
    assert report["ratios"]["uniform_over_active_test_force_rmse"] == pytest.approx(
        rows["uniform"]["test_force_rmse"] / rows["active"]["test_force_rmse"]
    )
    assert "Active learning (1)" in out["compare"]["table"]


def test_sets_budgets_and_inclusion_log(study):
    _, _, out, _ = study
    pool = out["pool"]
    assert pool["n_frames"] == 80 and len(pool["test_ids"]) == 8
    runs = {r["strategy"]: r for r in out["runs"]}
    active, uniform, aset = runs["active"], runs["uniform"], runs["active_set"]
    included = [x["frame_id"] for it in active["iterations"] for x in it["included"]]
    assert sorted(active["train_ids"]) == sorted(active["initial_train_ids"] + included)
    test = set(pool["test_ids"])
    for run in runs.values():
        assert not test & set(run["train_ids"]) and not test & set(run["val_ids"])
        assert not set(run["train_ids"]) & set(run["val_ids"])
    # baselines.validation 'common' (the default): uniform is validated on the active run's 10 validation frames,
    # and trains on 64 (8/9 of the 72 non-test frames) drawn from the 62 outside them: all 62
    assert uniform["val_ids"] == active["val_ids"] and len(active["val_ids"]) == 10
    assert sorted(uniform["train_ids"]) == sorted(set(pool["frame_ids"]) - test - set(active["val_ids"]))
    assert aset["train_ids"] == active["train_ids"] and aset["val_ids"] == active["val_ids"]
    steps_per_epoch = -(-len(uniform["train_ids"]) // 8)
    assert active["n_steps"] <= uniform["n_steps"] < active["n_steps"] + steps_per_epoch
    assert active["n_steps"] <= aset["n_steps"] < active["n_steps"] + -(-len(aset["train_ids"]) // 8)


def test_shear_runs_do_not_depend_on_job_split(study):
    _, store, out, _ = study
    docs = latest_outputs(store, "tiny_pool", "shear", load=True)
    assert len(docs) == 4  # 2 systems x (runs [0, 1] and [2])
    runs = {(d["output"]["system"], tuple(d["output"]["runs"])) for d in docs}
    assert runs == {(s, r) for s in ("multilayer-1x1x3-pristine", "multilayer-1x1x3-VNi(N1)") for r in ((0, 1), (2,))}
    # run 2 of system 1 recomputed directly with the active model gives the stored energies
    active = latest_outputs(store, "tiny_pool", "active_sampling", load=True)[0]["output"]
    calc = Ensemble.from_bytes([weights_bytes(active["model_blob"])]).calculator()
    start = cuni_multilayer((1, 1, 3), a=3.58, variant="VNi(N1)")
    shear = ShearSettings(
        **{k: TINY_STUDY["shear_study"][k] for k in ("sigma", "shear_step", "gamma_max", "fmax", "max_steps")}
    )
    direct = run_shear(start, calc, shear, seed=run_seed(3, 1), run=2)
    stored = [r for d in docs for r in d["output"]["records"] if r["system"].endswith("VNi(N1)") and r["run"] == 2]
    assert [r["energy"] for r in stored] == pytest.approx([f.get_potential_energy() for f in direct], abs=1e-6)
    # the energy scale: the start relaxed unsheared with the same model and optimiser settings
    ref = unsheared_reference(start, calc, 0.05, 500)  # TINY_STUDY fmax, default max_opt_steps and BFGS
    stored_ref = next(d["output"]["reference"] for d in docs if d["output"]["system"].endswith("VNi(N1)"))
    assert stored_ref["energy"] == pytest.approx(ref["energy"], abs=1e-6) and stored_ref["gamma"] == 0.0
    assert out["pathways"]["systems"]["multilayer-1x1x3-VNi(N1)"]["reference"] == stored_ref
    # the same float subtraction of the stored numbers: equal, not close
    assert [r["delta_energy"] for r in stored] == [r["energy"] - stored_ref["energy"] for r in stored]
    for name, system in out["pathways"]["systems"].items():
        assert system["n_runs"] == 3
        assert sum(p["n_runs"] for p in system["pathways"]) == 3
        assert sum(system["counts_by_type"].values()) == system["n_pathways"]
        # the pathway tree holds every run once at its roots, and its branches partition their parent's runs
        tree = system["tree"]
        assert sum(b["n_runs"] for b in tree if b["parent"] is None) == 3
        for b in tree:
            children = [c for c in tree if c["parent"] == b["branch"]]
            assert all(c["first_step"] == b["last_step"] + 1 for c in children)
            assert set().union(*[set(c["runs"]) for c in children]) <= set(b["runs"])


def test_validation_rows_match_the_labeller(study):
    _, store, out, _ = study
    val = out["validation"]
    assert val["n_minima"] == 2 and len(val["rows"]) == 2
    minima = {
        a.info["frame_id"]: a
        for a in frames_from_bytes(
            latest_outputs(store, "tiny_pool", "pathways", load=True)[0]["output"]["minima_blob"]
        )
    }
    for row in val["rows"]:
        atoms = minima[row["frame_id"]].copy()
        atoms.calc = EMT()
        assert row["e_ref"] == pytest.approx(atoms.get_potential_energy(), abs=1e-9)
        assert row["d_single_per_atom"] == pytest.approx((row["e_nnp"] - row["e_ref"]) / row["n_atoms"])
        assert row["e_ref_relaxed"] <= row["e_ref"] + 1e-9
        assert row["spurious"] == (row["relax_drop_per_atom"] > val["spurious_tol"])
        assert row["gamma"] >= 0.3 - 1e-9
    excess = [r["excess_energy_per_atom"] for r in val["rows"]]
    assert excess == sorted(excess, reverse=True)


def test_cli_status_report_and_rerun(study, capsys):
    workdir, _, _, cfg = study
    capsys.readouterr()
    assert main(["status", "--workdir", str(workdir)]) == 0
    text = capsys.readouterr().out
    assert "Uniform train set (2)" in text and "pathways" in text and "validation:" in text
    assert main(["report", "--workdir", str(workdir)]) == 0
    for name in (
        "learning_curves.png",
        "energy_vs_gamma.png",
        "pathway_counts.png",
        "validation.png",
        "table_I.md",
        "index.html",
    ):
        assert (workdir / "report" / name).stat().st_size > 100, name
    assert main(["run", str(cfg), "--workdir", str(workdir)]) == 0
    assert "already finished" in capsys.readouterr().out


def test_pool_from_imported_vasp_runs_and_extxyz(tmp_path):
    """The pool job imports a tree of VASP AIMD runs (stand-in files) and an extxyz file, with
    provenance, and holds out the test frames."""
    from jobflow import run_locally
    from tests.vasp_standin.standin import write_vasp_md_run

    from al_flows.frames.extxyz import frames_to_bytes
    from al_flows.pool_study.config import PoolConfig
    from al_flows.pool_study.pool_jobs import PoolMaker

    data = tmp_path / "dft"
    truth = write_vasp_md_run(data / "run_1000K", cuni_multilayer((1, 1, 2), a=3.58), n_steps=6, tebeg=1000.0, seed=1)
    truth += write_vasp_md_run(data / "run_1500K", cuni_multilayer((1, 1, 2), a=3.62), n_steps=6, tebeg=1500.0, seed=2)
    extra = cuni_multilayer((1, 1, 2), a=3.6)
    extra.calc = EMT()
    extra.get_forces()
    (data / "more.extxyz").write_bytes(frames_to_bytes([extra]))
    pool = PoolConfig.model_validate(
        {"sources": [{"kind": "import", "path": "dft", "stride": 2}], "test_fraction": 0.25}
    )
    job = PoolMaker(pool=pool, base_dir=str(tmp_path)).make("imported", 0)
    out = run_locally(job, create_folders=False, ensure_success=True)[job.uuid][1].output
    frames = frames_from_bytes(out.frames_blob)
    # sorted by path: the extxyz frame, then 6 ionic steps per run with every 2nd kept (0, 2, 4)
    assert out.n_frames == 7 and len(out.test_ids) == 2
    assert frames[0].info["source_format"] == "extxyz"
    assert [(a.info["source_file"].split("/")[0], a.info["source_step"]) for a in frames[1:]] == [
        ("run_1000K", 0),
        ("run_1000K", 2),
        ("run_1000K", 4),
        ("run_1500K", 0),
        ("run_1500K", 2),
        ("run_1500K", 4),
    ]
    expected = [truth[k] for k in (0, 2, 4, 6, 8, 10)]
    assert [a.get_potential_energy() for a in frames[1:]] == pytest.approx(
        [t.get_potential_energy() for t in expected], abs=1e-6
    )
    assert np.abs(frames[4].get_forces() - expected[3].get_forces()).max() < 1e-5
    assert out.counts_by_source == {"vasprun": 6, "extxyz": 1}


def _doc_queries():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "pool_study.md").read_text()
    section = text.split("## Provenance queries", 1)[1]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_documented_queries_agree_with_the_data(study):
    _, store, out, _ = study
    queries = _doc_queries()
    assert len(queries) == 3

    def run(code, **replace):
        for old, new in replace.items():
            assert old in code
            code = code.replace(old, new)
        ns = {"store": store, "campaign": "tiny_pool"}
        exec(code, ns)  # noqa: S102 - the documented query, verbatim
        return ns["result"]

    active = out["runs"][0]
    inc = active["iterations"][0]["included"][0]
    assert run(queries[0], **{"0123456789abcdef": inc["frame_id"]}) == (1, inc["error"], inc["p"])
    assert run(queries[0], **{"0123456789abcdef": active["initial_train_ids"][0]}) == ("initial", None, None)
    rows = run(queries[1])
    assert sorted(r[0] for r in rows) == sorted(active["train_ids"])
    assert all(src is None and step is None for _, src, step in rows)  # MD frames: no source file
    records = {r["frame_id"]: r for r in out["pool"]["records"]}
    assert {records[f]["temperature_K"] for f in active["train_ids"]} == {1500.0}
    hcp = run(queries[2])
    assert hcp == [
        (n, p["runs"], p["final_energy"])
        for n, s in out["pathways"]["systems"].items()
        for p in s["pathways"]
        if p["type"] == "defect/HCP"
    ]


def test_cli_import_export_and_refusals(study, tmp_path, capsys):
    from tests.vasp_standin.standin import write_vasp_md_run

    from al_flows.frames.dataset import Dataset

    workdir, _, out, _ = study
    # export: the active training set with provenance, and one weights file per strategy
    assert main(["export", "--workdir", str(workdir), "dataset", "--output", str(tmp_path / "active.extxyz")]) == 0
    frames = Dataset.read_extxyz(tmp_path / "active.extxyz").frames
    active = out["runs"][0]
    assert sorted(a.info["frame_id"] for a in frames) == sorted(active["train_ids"])
    assert main(["export", "--workdir", str(workdir), "model", "--output", str(tmp_path / "models")]) == 0
    blob = (tmp_path / "models" / "active.pt").read_bytes()
    assert Ensemble.from_bytes([blob]).predict(frames[:1]).energies.shape == (1, 1)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["active.pt", "active_set.pt", "uniform.pt"]
    assert main(["lineage", "--workdir", str(workdir), "--label", "x"]) == 2
    assert "is a pool study" in capsys.readouterr().err
    # import: VASP runs into one extxyz pool
    truth = write_vasp_md_run(
        tmp_path / "runs" / "a", cuni_multilayer((1, 1, 2), a=3.58), n_steps=4, tebeg=900.0, seed=5
    )
    assert main(["import", str(tmp_path / "runs"), "--output", str(tmp_path / "pool.extxyz")]) == 0
    assert "4 frames" in capsys.readouterr().out
    pool = Dataset.read_extxyz(tmp_path / "pool.extxyz").frames
    assert [a.info["source_step"] for a in pool] == [0, 1, 2, 3]
    assert [a.get_potential_energy() for a in pool] == pytest.approx(
        [t.get_potential_energy() for t in truth], abs=1e-6
    )
    assert main(["import", str(tmp_path / "nothing"), "--output", str(tmp_path / "x.extxyz")]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_failed_study_resumes_without_recomputing_finished_jobs(tmp_path, monkeypatch, capsys):
    """A study whose validation fails is run again: the pool, the active sampling, the
    baselines and the shear runs are read from the store, only the validation runs."""
    import yaml

    import al_flows.pool_study.sampling_jobs as sampling
    import al_flows.pool_study.shear_jobs as shear
    from al_flows.campaign.run import load_workdir_campaign, open_store

    cfg = tmp_path / "study.yaml"
    study = json.loads(json.dumps(TINY_STUDY))
    study["shear_study"]["n_runs"] = 2
    cfg.write_text(yaml.safe_dump(study))
    workdir = tmp_path / "run"
    calls = {"validate": 0, "sampling": 0}
    original_validate, original_sampling = shear.validate_minimum, sampling.run_active_sampling

    def failing_validate(*a, **k):
        calls["validate"] += 1
        raise RuntimeError("labeller crashed")

    def counting_sampling(*a, **k):
        calls["sampling"] += 1
        return original_sampling(*a, **k)

    monkeypatch.setattr(shear, "validate_minimum", failing_validate)
    monkeypatch.setattr(sampling, "run_active_sampling", counting_sampling)
    assert main(["run", str(cfg), "--workdir", str(workdir)]) != 0
    assert calls == {"validate": 1, "sampling": 1}  # the validation (the last job) failed
    store = open_store(load_workdir_campaign(workdir), workdir)
    before = {
        d["uuid"]: d["completed_at"]
        for d in store.query({"metadata.campaign": "tiny_pool"}, properties=["uuid", "completed_at"])
    }
    store.close()

    monkeypatch.setattr(shear, "validate_minimum", original_validate)
    capsys.readouterr()
    assert main(["run", str(cfg), "--workdir", str(workdir)]) == 0
    out = capsys.readouterr().out
    assert "continuing pool study 'tiny_pool' (" in out
    assert calls["sampling"] == 1  # active sampling was not run again
    store = open_store(load_workdir_campaign(workdir), workdir)
    after = {
        d["uuid"]: d["completed_at"]
        for d in store.query({"metadata.campaign": "tiny_pool"}, properties=["uuid", "completed_at"])
    }
    stages = [d["metadata"]["stage"] for d in store.query({"metadata.campaign": "tiny_pool"}, properties=["metadata"])]
    store.close()
    assert all(after[u] == t for u, t in before.items())  # no finished job was rewritten
    assert set(after) - set(before) and stages.count("validation") == 1 and stages.count("active_sampling") == 1
