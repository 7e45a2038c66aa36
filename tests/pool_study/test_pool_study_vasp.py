"""A pool study on imported VASP AIMD runs whose minima are validated with VASP: atomate2's real
StaticMaker and RelaxMaker under custodian, against the stand-in vasp_std (EMT + shifts)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import yaml
from tests.vasp_standin.standin import install_wrapper, reference_results, write_vasp_md_run

from al_flows.cli import main
from al_flows.frames.extxyz import frames_from_bytes
from al_flows.pool_study.report import pool_study_outputs
from al_flows.structures.multilayer import cuni_multilayer
from al_flows.workflow.jobs import latest_outputs

FAST_CUSTODIAN = {"polling_time_step": 0.1, "monitor_freq": 1}
ML = {"kind": "multilayer", "size": [2, 2, 2], "lattice_constant": 3.58, "variants": ["pristine"]}


@pytest.fixture(scope="module")
def vasp_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("vasp_pool")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    install_wrapper(bin_dir)
    log = root / "vasp_runs.log"
    old = {k: os.environ.get(k) for k in ("PATH", "VASP_STANDIN_LOG", "VASP_STANDIN_FAIL")}
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    os.environ["VASP_STANDIN_LOG"] = str(log)
    os.environ.pop("VASP_STANDIN_FAIL", None)
    for k, (a, temp) in enumerate(((3.58, 1000.0), (3.60, 1500.0))):
        write_vasp_md_run(root / "dft" / f"aimd_{k}", cuni_multilayer((1, 1, 3), a=a), n_steps=30, tebeg=temp, seed=k)
    study = {
        "workflow": "pool_study",
        "name": "vasp_pool",
        "seed": 1,
        "elements": ["Cu", "Ni"],
        "pool": {"sources": [{"kind": "import", "path": "dft"}], "test_fraction": 0.1},
        "model": {"n_atom_basis": 8, "n_interactions": 1, "n_rbf": 8, "cutoff": 4.0},
        "training": {"batch_size": 8, "lr": 3e-3},
        "active_sampling": {
            "n_iterations": 3,
            "epochs_per_iteration": 10,
            "n_initial": 20,
            "n_validation": 8,
            "n_examine": 20,
        },
        "baselines": {"uniform": False, "active_set": False},
        "shear_study": {
            "structures": [ML],
            "n_runs": 2,
            "runs_per_job": 2,
            "shear_step": 0.4,
            "gamma_max": 0.15,
            "fmax": 0.05,
            "max_steps": 4,
        },
        "validation": {"n_minima": 2, "fmax": 0.02, "max_steps": 150},
        "labeller": {
            "kind": "vasp",
            "preset": "pnnl-cuni",
            "potcar_spec": True,
            "vasp_cmd": "vasp_std",
            "vasp_gamma_cmd": "vasp_std",
            "custodian": FAST_CUSTODIAN,
            "max_errors": 3,
        },
    }
    cfg = root / "study.yaml"
    cfg.write_text(yaml.safe_dump(study))
    workdir = root / "run"
    try:
        assert main(["run", str(cfg), "--workdir", str(workdir)]) == 0
        from al_flows.campaign.run import load_workdir_campaign, open_store

        store = open_store(load_workdir_campaign(workdir), workdir)
        yield store, pool_study_outputs(store, "vasp_pool"), log
        store.close()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_imported_pool_and_vasp_validation(vasp_study):
    store, out, log = vasp_study
    assert out["pool"]["counts_by_source"] == {"vasprun": 60}
    val = out["validation"]
    assert val["labeller"] == "vasp:pnnl-cuni" and val["n_minima"] == 2 and not val["failures"]
    minima = {
        a.info["frame_id"]: a
        for a in frames_from_bytes(
            latest_outputs(store, "vasp_pool", "pathways", load=True)[0]["output"]["minima_blob"]
        )
    }
    relaxed = frames_from_bytes(
        latest_outputs(store, "vasp_pool", "validation", load=True)[0]["output"]["relaxed_blob"]
    )
    for row, ref_min in zip(val["rows"], relaxed, strict=True):
        # the single point is the stand-in's energy(sigma->0) of the NNP minimum
        assert row["e_ref"] == pytest.approx(reference_results(minima[row["frame_id"]])["energy"], abs=1e-5)
        # the relaxation ran in VASP (stand-in BFGS) at fixed cell and lowered the energy
        assert row["e_ref_relaxed"] == pytest.approx(reference_results(ref_min)["energy"], abs=1e-5)
        assert row["e_ref_relaxed"] <= row["e_ref"] + 1e-6 and row["ref_relax_steps"] >= 1
        assert np.allclose(ref_min.cell[:], minima[row["frame_id"]].cell[:], atol=1e-6)
        assert np.abs(reference_results(ref_min)["forces"]).max() < 0.02 + 1e-6
        assert row["spurious"] == (row["relax_drop_per_atom"] > val["spurious_tol"])
    # one static and one relaxation per minimum, each a real process started by custodian
    runs = log.read_text().split()
    assert len(runs) >= 4
    jobs = store.query({"metadata.campaign": "vasp_pool", "metadata.stage": "vasp_validation"}, properties=["metadata"])
    assert sorted(d["metadata"]["calculation"] for d in jobs) == ["relax", "relax", "static", "static"]


def test_failed_vasp_jobs_leave_their_minimum_out_with_a_reason(vasp_study):
    from al_flows.frames.extxyz import frames_text
    from al_flows.pool_study.config import ValidationConfig
    from al_flows.pool_study.vasp_validation import collect_vasp_validation

    store, out, _ = vasp_study
    minima = frames_from_bytes(latest_outputs(store, "vasp_pool", "pathways", load=True)[0]["output"]["minima_blob"])[
        :1
    ]
    active = latest_outputs(store, "vasp_pool", "active_sampling", load=True)[0]["output"]
    doc = collect_vasp_validation.original(
        frames_text(minima), [None], [None], active, "vasp_pool", ValidationConfig(), "vasp"
    )
    assert doc.n_minima == 0 and len(doc.failures) == 1
    assert doc.failures[0]["frame_id"] == minima[0].info["frame_id"] and "VASP job failed" in doc.failures[0]["reason"]
