"""atomate2's real StaticMaker (custodian + pymatgen + emmet TaskDoc) against the EMT stand-in for VASP.

The stand-in (tests/vasp_standin/standin.py) is put first on PATH as ``vasp_std``; its
``reference_results`` is the truth the TaskDoc must reproduce. Failure modes are injected
through ``VASP_STANDIN_FAIL`` and every VASP launch is counted through ``VASP_STANDIN_LOG``.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("atomate2")
pytest.importorskip("custodian")

from ase.build import bulk
from atomate2.vasp.jobs.core import StaticMaker
from atomate2.vasp.run import DEFAULT_HANDLERS
from atomate2.vasp.sets.core import StaticSetGenerator
from custodian.vasp.handlers import UnconvergedErrorHandler
from custodian.vasp.validators import VaspFilesValidator
from jobflow import JobStore, run_locally
from maggma.stores import MemoryStore
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.vasp import Kpoints, Vasprun

from vasp_standin import standin

#: custodian polls the running executable every 10 s by default; this makes a job ~1 s
FAST_CUSTODIAN = {"polling_time_step": 0.05, "monitor_freq": 30}


def cu_ni_atoms(seed: int = 0):
    """16-atom fcc Cu cell (cubic 3.6 Å, repeated 2x2x1), 5 atoms -> Ni, rattled 0.05 Å."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 1))
    rng = np.random.default_rng(seed)
    atoms.symbols[rng.choice(len(atoms), 5, replace=False)] = "Ni"
    atoms.rattle(0.05, seed=seed)
    return atoms


def static_maker(system: str = "frameA", run_vasp_extra: dict | None = None, **maker_kwargs) -> StaticMaker:
    """StaticMaker writing POTCAR.spec, Gamma-only k-points, SYSTEM=<frame id>, fast custodian polling."""
    generator = StaticSetGenerator(
        user_incar_settings={
            "ENCUT": 295.4,
            "ISPIN": 1,
            "EDIFF": 1e-4,
            "ISMEAR": 0,
            "SIGMA": 0.1,
            "NELM": 40,
            "SYSTEM": system,
        },
        user_kpoints_settings=Kpoints.gamma_automatic((1, 1, 1)),
    )
    run_vasp_kwargs = {"vasp_cmd": "vasp_std", "custodian_kwargs": dict(FAST_CUSTODIAN)}
    run_vasp_kwargs.update(run_vasp_extra or {})
    return StaticMaker(
        input_set_generator=generator,
        write_input_set_kwargs={"potcar_spec": True},
        run_vasp_kwargs=run_vasp_kwargs,
        **maker_kwargs,
    )


@pytest.fixture
def vasp_log(tmp_path, monkeypatch):
    """Put the stand-in first on PATH; return the file that logs one line per VASP launch."""
    bindir = tmp_path / "bin"
    standin.install_wrapper(bindir)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    log = tmp_path / "vasp_runs.log"
    monkeypatch.setenv(standin.LOG_ENV, str(log))
    monkeypatch.delenv(standin.FAIL_ENV, raising=False)
    return log


def launches(log) -> list[list[str]]:
    """The stand-in's launches: [SYSTEM, cwd, mode] per run."""
    if not log.exists():
        return []
    return [line.split("\t") for line in log.read_text().splitlines()]


def run_job(job, tmp_path, **kwargs):
    """run_locally into tmp_path/jobs with an in-memory store; {} when the job failed."""
    root = tmp_path / "jobs"
    root.mkdir(parents=True, exist_ok=True)
    return run_locally(job, create_folders=True, root_dir=root, store=JobStore(MemoryStore()), log=False, **kwargs)


def custodian_log(log):
    """custodian.json of the (single) job directory the stand-in ran in."""
    (cwd,) = {row[1] for row in launches(log)}
    with open(os.path.join(cwd, "custodian.json")) as fh:
        return json.load(fh)


# ----------------------------------------------------------------------------------------
# the stand-in on its own (no atomate2 job)
# ----------------------------------------------------------------------------------------
def test_failure_mode_selection():
    assert standin.failure_mode("frameA", "") is None
    assert standin.failure_mode("frameA", "frameB:crash") is None
    assert standin.failure_mode("frameA", "frameB:crash, frameA:garbage") == "garbage"
    assert standin.failure_mode("frameA", "*:unconverged,frameA:crash") == "crash"  # exact beats *
    assert standin.failure_mode("x", "*:unconverged,frameA:crash") == "unconverged"
    with pytest.raises(ValueError):
        standin.failure_mode("x", "frameA:explode")


def test_stress_conversion_roundtrip():
    from ase.units import GPa

    voigt = np.array([1e-3, -2e-3, 3e-3, 4e-4, -5e-4, 6e-4])
    kb = standin.ase_stress_to_vasp_kbar(voigt)
    assert kb[0, 0] == pytest.approx(-1e-3 / (0.1 * GPa))
    assert kb[0, 1] == kb[1, 0] == pytest.approx(-6e-4 / (0.1 * GPa))  # xy
    np.testing.assert_allclose(standin.vasp_kbar_to_ase_stress(kb), voigt, rtol=1e-14)


@pytest.mark.parametrize("mode", [None, "unconverged"])
def test_standin_outputs_parse(tmp_path, monkeypatch, mode):
    from atomate2.vasp.files import write_vasp_input_set

    monkeypatch.delenv(standin.LOG_ENV, raising=False)
    if mode:
        monkeypatch.setenv(standin.FAIL_ENV, f"frameA:{mode}")
    else:
        monkeypatch.delenv(standin.FAIL_ENV, raising=False)
    atoms = cu_ni_atoms(1)
    monkeypatch.chdir(tmp_path)
    write_vasp_input_set(AseAtomsAdaptor.get_structure(atoms), static_maker().input_set_generator, potcar_spec=True)
    assert standin.run(tmp_path) == 0
    vr = Vasprun(tmp_path / "vasprun.xml")
    ref = standin.reference_results(atoms)
    steps = vr.ionic_steps[-1]["electronic_steps"]
    if mode is None:
        assert vr.converged_electronic and vr.converged
        assert len(steps) < 40 and abs(steps[-1]["e_0_energy"] - steps[-2]["e_0_energy"]) < 1e-4
        assert vr.final_energy == pytest.approx(ref["energy"], abs=1e-6)
    else:
        assert not vr.converged_electronic
        assert len(steps) == 40
        diffs = np.abs(np.diff([s["e_0_energy"] for s in steps]))
        assert diffs.min() > 1e-4
    assert ref["energy"] < 0
    np.testing.assert_allclose(vr.ionic_steps[-1]["forces"], ref["forces"], atol=1e-6)
    np.testing.assert_allclose(standin.vasp_kbar_to_ase_stress(vr.ionic_steps[-1]["stress"]), ref["stress"], atol=1e-9)


# ----------------------------------------------------------------------------------------
# atomate2 StaticMaker end to end
# ----------------------------------------------------------------------------------------
def test_static_maker_success(tmp_path, vasp_log):
    atoms = cu_ni_atoms(0)
    job = static_maker("frameA").make(AseAtomsAdaptor.get_structure(atoms))
    responses = run_job(job, tmp_path, ensure_success=True)
    task_doc = responses[job.uuid][1].output
    ref = standin.reference_results(atoms)

    assert [row[0] for row in launches(vasp_log)] == ["frameA"]  # VASP ran exactly once
    assert task_doc.state == "successful"
    assert str(task_doc.task_type) == "Static"
    assert task_doc.calcs_reversed[0].input.incar["SYSTEM"] == "frameA"
    assert task_doc.custodian[0].corrections == []

    # top-level output: energy eV, forces eV/Å (N x 3), stress 3x3 kBar with VASP's sign
    assert task_doc.output.energy == pytest.approx(ref["energy"], abs=1e-6)
    np.testing.assert_allclose(task_doc.output.forces, ref["forces"], atol=1e-6)
    assert np.shape(task_doc.output.stress) == (3, 3)
    np.testing.assert_allclose(standin.vasp_kbar_to_ase_stress(task_doc.output.stress), ref["stress"], atol=1e-8)

    # the same numbers in the last ionic step of the calculation
    calc = task_doc.calcs_reversed[0]
    assert calc.has_vasp_completed == "successful"
    step = calc.output.ionic_steps[-1]
    assert step.e_0_energy == pytest.approx(ref["energy"], abs=1e-6)
    np.testing.assert_allclose(step.forces, ref["forces"], atol=1e-6)
    np.testing.assert_allclose(standin.vasp_kbar_to_ase_stress(step.stress), ref["stress"], atol=1e-8)

    # the structure the TaskDoc reports (from CONTCAR) is the input structure
    np.testing.assert_allclose(task_doc.output.structure.cart_coords, atoms.positions, atol=1e-8)


def test_unconverged_default_handlers_custodian_gives_up(tmp_path, vasp_log, monkeypatch):
    """custodian's UnconvergedErrorHandler keeps changing ALGO/mixing and re-running until max_errors."""
    monkeypatch.setenv(standin.FAIL_ENV, "frameA:unconverged")
    job = static_maker("frameA", run_vasp_extra={"max_errors": 2}).make(AseAtomsAdaptor.get_structure(cu_ni_atoms(0)))
    assert run_job(job, tmp_path) == {}  # job failed: no response
    assert [row[2] for row in launches(vasp_log)] == ["unconverged", "unconverged"]  # one launch per allowed error
    run_log = custodian_log(vasp_log)
    assert run_log[0]["max_errors_per_job"] or run_log[0]["max_errors"]
    assert [c["errors"] for c in run_log[0]["corrections"]] == [["Unconverged"], ["Unconverged"]]

    from custodian.custodian import MaxCorrectionsPerJobError

    # max_errors_per_job defaults to max_errors, so the per-job limit is what trips
    job = static_maker("frameA", run_vasp_extra={"max_errors": 1}).make(AseAtomsAdaptor.get_structure(cu_ni_atoms(0)))
    with pytest.raises(MaxCorrectionsPerJobError):
        run_job(job, tmp_path / "again", raise_immediately=True)
    assert len(launches(vasp_log)) == 3


HANDLERS_WITHOUT_UNCONVERGED = [h for h in DEFAULT_HANDLERS if not isinstance(h, UnconvergedErrorHandler)]


@pytest.mark.parametrize("handle_unsuccessful", ["default", "error", True, False, "warn"])
def test_unconverged_reaches_task_doc(tmp_path, vasp_log, monkeypatch, handle_unsuccessful):
    """Without UnconvergedErrorHandler the TaskDoc is built (state "failed"); should_stop_children decides."""
    monkeypatch.setenv(standin.FAIL_ENV, "frameA:unconverged")
    kwargs = (
        {}
        if handle_unsuccessful == "default"
        else {"stop_children_kwargs": {"handle_unsuccessful": handle_unsuccessful}}
    )
    maker = static_maker("frameA", run_vasp_extra={"handlers": HANDLERS_WITHOUT_UNCONVERGED}, **kwargs)
    job = maker.make(AseAtomsAdaptor.get_structure(cu_ni_atoms(0)))
    if handle_unsuccessful in ("default", "error", "warn"):
        # default is SETTINGS.VASP_HANDLE_UNSUCCESSFUL == "error"; "warn" is not an option in atomate2 0.1.5
        match = "Unknown option" if handle_unsuccessful == "warn" else "not successful"
        with pytest.raises(RuntimeError, match=match):
            run_job(job, tmp_path, raise_immediately=True)
    else:
        response = run_job(job, tmp_path, ensure_success=True)[job.uuid][1]
        task_doc = response.output
        assert task_doc.state == "failed"
        assert task_doc.calcs_reversed[0].has_vasp_completed == "failed"
        assert response.stop_children is handle_unsuccessful
        # the reported energy is deliberately off (unconverged): a labeller must not use it
        ref = standin.reference_results(cu_ni_atoms(0))
        assert abs(task_doc.output.energy - ref["energy"]) > 1e-3
    assert len(launches(vasp_log)) == 1


@pytest.mark.parametrize("selector,mode", [("*", "crash"), ("frameA", "garbage")])
def test_crash_and_garbage_fail_job(tmp_path, vasp_log, monkeypatch, selector, mode):
    monkeypatch.setenv(standin.FAIL_ENV, f"{selector}:{mode}")
    job = static_maker("frameA").make(AseAtomsAdaptor.get_structure(cu_ni_atoms(0)))
    assert run_job(job, tmp_path) == {}
    # no handler recognises it; VasprunXMLValidator fails -> custodian gives up after one launch
    assert [row[2] for row in launches(vasp_log)] == [mode]
    assert custodian_log(vasp_log)[0]["validator"]["@class"] == "VasprunXMLValidator"


def test_crash_raises_validation_error(tmp_path, vasp_log, monkeypatch):
    monkeypatch.setenv(standin.FAIL_ENV, "*:crash")
    from custodian.custodian import ValidationError

    job = static_maker("frameA").make(AseAtomsAdaptor.get_structure(cu_ni_atoms(0)))
    with pytest.raises(ValidationError):
        run_job(job, tmp_path / "again", raise_immediately=True)


def test_garbage_fails_in_emmet_without_xml_validator(tmp_path, vasp_log, monkeypatch):
    """With custodian's XML validator removed, the truncated vasprun.xml fails in the TaskDoc parsing."""
    monkeypatch.setenv(standin.FAIL_ENV, "frameA:garbage")
    job = static_maker("frameA", run_vasp_extra={"validators": [VaspFilesValidator()]}).make(
        AseAtomsAdaptor.get_structure(cu_ni_atoms(0))
    )
    with pytest.raises(Exception) as info:
        run_job(job, tmp_path, raise_immediately=True)
    assert "custodian" not in type(info.value).__module__
    print(f"emmet/pymatgen parse error: {type(info.value).__module__}.{type(info.value).__name__}: {info.value}")
    assert len(launches(vasp_log)) == 1


def test_failure_selector_only_hits_its_frame(tmp_path, vasp_log, monkeypatch):
    """SELECTOR matches SYSTEM exactly: frameB runs normally while frameA would crash."""
    monkeypatch.setenv(standin.FAIL_ENV, "frameA:crash")
    atoms = cu_ni_atoms(2)
    job = static_maker("frameB").make(AseAtomsAdaptor.get_structure(atoms))
    task_doc = run_job(job, tmp_path, ensure_success=True)[job.uuid][1].output
    assert task_doc.state == "successful"
    assert task_doc.output.energy == pytest.approx(standin.reference_results(atoms)["energy"], abs=1e-6)
    assert launches(vasp_log)[0][0] == "frameB"
