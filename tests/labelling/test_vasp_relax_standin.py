"""The VASP stand-in's relaxation mode (IBRION = 1, 2, 3; NSW > 0; ISIF = 2), on its own and
under atomate2's real RelaxMaker (custodian with its default handlers + emmet TaskDoc).

The stand-in (tests/vasp_standin/standin.py) relaxes the ionic positions at fixed cell with
ASE's BFGS on ``standin.reference_results`` and writes one ionic step per force evaluation.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("atomate2")
pytest.importorskip("custodian")

import test_vasp_standin
from ase.calculators.emt import EMT
from ase.optimize import BFGS
from atomate2.vasp.jobs.core import RelaxMaker
from atomate2.vasp.run import DEFAULT_HANDLERS
from atomate2.vasp.sets.core import RelaxSetGenerator
from custodian.vasp.handlers import UnconvergedErrorHandler
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.vasp import Incar, Kpoints, Oszicar, Outcar, Poscar, Vasprun, Xdatcar
from test_vasp_standin import FAST_CUSTODIAN, cu_ni_atoms, launches, run_job

from vasp_standin import standin

#: fixture: the stand-in first on PATH as vasp_std/vasp_gam; returns the file logging its launches
vasp_log = test_vasp_standin.vasp_log

FMAX = 0.01  # |EDIFFG| of the relaxations below, eV/Å


def relax_maker(system: str = "relaxA", run_vasp_extra: dict | None = None, **incar) -> RelaxMaker:
    """RelaxMaker: fixed-cell relaxation (ISIF 2) to 0.01 eV/Å, POTCAR.spec, Gamma-only k-points,
    SYSTEM=<system>, atoms never re-sorted, fast custodian polling; ``incar`` overrides INCAR tags."""
    generator = RelaxSetGenerator(
        user_incar_settings={
            "ISIF": 2,
            "ENCUT": 295.4,
            "ISPIN": 1,
            "EDIFFG": -FMAX,
            "NSW": 100,
            "KSPACING": None,
            "SYSTEM": system,
            **incar,
        },
        user_kpoints_settings=Kpoints.gamma_automatic((1, 1, 1)),
        sort_structure=False,
    )
    run_vasp_kwargs = {"vasp_cmd": "vasp_std", "custodian_kwargs": dict(FAST_CUSTODIAN)}
    run_vasp_kwargs.update(run_vasp_extra or {})
    return RelaxMaker(
        input_set_generator=generator, write_input_set_kwargs={"potcar_spec": True}, run_vasp_kwargs=run_vasp_kwargs
    )


def write_inputs(directory, atoms, **incar):
    """INCAR (a fixed-cell relaxation to 0.01 eV/Å unless ``incar`` says otherwise), POSCAR, KPOINTS, POTCAR.spec."""
    settings = {"SYSTEM": "relaxA", "ENCUT": 295.4, "ISPIN": 1, "EDIFF": 1e-5, "ISMEAR": 0, "SIGMA": 0.2, "NELM": 200}
    settings.update({"IBRION": 2, "ISIF": 2, "NSW": 100, "EDIFFG": -FMAX})
    settings.update(incar)
    settings = {k: v for k, v in settings.items() if v is not None}
    directory.mkdir(parents=True, exist_ok=True)
    Incar(settings).write_file(directory / "INCAR")
    Poscar(AseAtomsAdaptor.get_structure(atoms), comment="relax").write_file(directory / "POSCAR")
    Kpoints.gamma_automatic((1, 1, 1)).write_file(directory / "KPOINTS")
    names, _ = standin._species_groups(atoms.get_chemical_symbols())
    (directory / "POTCAR.spec").write_text("\n".join(names) + "\n")
    return directory


def ase_bfgs(atoms, fmax: float, nsw: int):
    """Independent reference: ASE's own ``BFGS.run`` with EMT (the shifts do not change forces);
    returns (relaxed atoms, number of force evaluations = VASP ionic steps)."""
    work = atoms.copy()
    work.calc = EMT()
    opt = BFGS(work, logfile=None)
    opt.run(fmax=fmax, steps=nsw - 1)
    return work, opt.nsteps + 1


def max_force(forces) -> float:
    return float(np.linalg.norm(np.asarray(forces, dtype=float), axis=1).max())


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(standin.FAIL_ENV, raising=False)
    monkeypatch.delenv(standin.LOG_ENV, raising=False)


# ----------------------------------------------------------------------------------------
# the stand-in on its own
# ----------------------------------------------------------------------------------------
def test_relax_trajectory_is_ase_bfgs():
    atoms = cu_ni_atoms(0)
    frames = standin.relax_trajectory(atoms, nsw=100, ediffg=-FMAX)
    relaxed, n_evals = ase_bfgs(atoms, FMAX, 100)
    assert len(frames) == n_evals > 5
    assert [f.info["relax_step"] for f in frames] == list(range(n_evals))
    assert frames[-1].info["relax_converged"] and not any(f.info["relax_converged"] for f in frames[:-1])
    assert frames[-1].info["fmax"] <= FMAX < frames[-2].info["fmax"]
    np.testing.assert_allclose(frames[-1].get_scaled_positions(), relaxed.get_scaled_positions(wrap=True), atol=1e-10)
    for frame in (frames[0], frames[len(frames) // 2], frames[-1]):
        ref = standin.reference_results(frame)
        assert frame.get_potential_energy() == pytest.approx(ref["energy"], abs=1e-10)
        ts = standin.RELAX_ENTROPY_PER_ATOM * len(frame)
        assert frame.get_potential_energy(force_consistent=True) == pytest.approx(ref["energy"] - ts / 2, abs=1e-10)
        np.testing.assert_allclose(frame.get_forces(), ref["forces"], atol=1e-10)
    assert frames[-1].get_potential_energy() < frames[0].get_potential_energy() - 0.01
    assert frames[0].get_potential_energy() == pytest.approx(standin.reference_results(atoms)["energy"], abs=1e-10)


def test_relax_run_writes_every_ionic_step(tmp_path, no_env):
    atoms = cu_ni_atoms(0)
    write_inputs(tmp_path, atoms)
    assert standin.run(tmp_path) == 0
    frames = standin.relax_trajectory(atoms, nsw=100, ediffg=-FMAX)
    n = len(frames)

    vr = Vasprun(tmp_path / "vasprun.xml")
    assert len(vr.ionic_steps) == n < 100
    assert vr.converged_ionic and vr.converged_electronic and vr.converged
    assert vr.parameters["IBRION"] == 2 and vr.parameters["ISIF"] == 2 and vr.parameters["NSW"] == 100
    assert vr.parameters["EDIFFG"] == -FMAX
    for step, frame in zip(vr.ionic_steps, frames):
        ref = standin.reference_results(AseAtomsAdaptor.get_atoms(step["structure"]))
        assert step["e_0_energy"] == pytest.approx(ref["energy"], abs=1e-8)
        assert step["e_0_energy"] == pytest.approx(frame.get_potential_energy(), abs=1e-8)
        np.testing.assert_allclose(step["forces"], ref["forces"], atol=1e-9)
        np.testing.assert_allclose(standin.vasp_kbar_to_ase_stress(step["stress"]), ref["stress"], atol=1e-9)
    assert vr.final_energy == pytest.approx(frames[-1].get_potential_energy(), abs=1e-8)
    assert max_force(vr.ionic_steps[-1]["forces"]) <= FMAX
    assert vr.final_structure == vr.ionic_steps[-1]["structure"]

    # CONTCAR is the last ionic step's structure
    contcar = Poscar.from_file(tmp_path / "CONTCAR").structure
    np.testing.assert_allclose(contcar.frac_coords, vr.ionic_steps[-1]["structure"].frac_coords, atol=1e-12)

    # OSZICAR: one "N F= E0= d E =" line per ionic step, d E the change of F
    osz = Oszicar(tmp_path / "OSZICAR")
    assert len(osz.ionic_steps) == len(osz.electronic_steps) == n
    ts = standin.RELAX_ENTROPY_PER_ATOM * len(atoms)
    for k, (line, frame) in enumerate(zip(osz.ionic_steps, frames)):
        assert line["E0"] == pytest.approx(frame.get_potential_energy(), abs=1e-6)
        assert line["F"] == pytest.approx(frame.get_potential_energy() - ts / 2, abs=1e-6)
        assert line["dE"] == pytest.approx(line["F"] - (osz.ionic_steps[k - 1]["F"] if k else 0.0), abs=1e-5)
    assert osz.final_energy == pytest.approx(frames[-1].get_potential_energy(), abs=1e-6)

    # XDATCAR: every ionic step
    xdat = Xdatcar(tmp_path / "XDATCAR")
    assert len(xdat.structures) == n
    np.testing.assert_allclose(xdat.structures[-1].frac_coords, contcar.frac_coords, atol=1e-7)

    # OUTCAR: every ionic step for ASE, the run stats for pymatgen, VASP's last word
    from ase.io import read

    outcar_frames = read(tmp_path / "OUTCAR", ":", format="vasp-out")
    assert len(outcar_frames) == n
    assert outcar_frames[-1].get_potential_energy() == pytest.approx(frames[-1].get_potential_energy(), abs=1e-6)
    np.testing.assert_allclose(outcar_frames[-1].get_forces(), frames[-1].get_forces(), atol=1e-6)
    text = (tmp_path / "OUTCAR").read_text()
    assert text.count("aborting loop because EDIFF is reached") == n
    assert standin.RELAX_CONVERGED_LINE in text and "EDIFFG = -1.0E-02" in text
    assert "ETOTAL" not in text and "kinetic" not in (tmp_path / "vasprun.xml").read_text()  # no MD terms
    assert Outcar(tmp_path / "OUTCAR").run_stats["Elapsed time (sec)"] >= 0


def test_nsw_reached_is_not_converged(tmp_path, no_env):
    write_inputs(tmp_path, cu_ni_atoms(0), NSW=3)
    assert standin.run(tmp_path) == 0
    vr = Vasprun(tmp_path / "vasprun.xml")
    assert len(vr.ionic_steps) == 3 and not vr.converged_ionic and vr.converged_electronic
    assert max_force(vr.ionic_steps[-1]["forces"]) > FMAX
    assert standin.RELAX_CONVERGED_LINE not in (tmp_path / "OUTCAR").read_text()
    assert len(Oszicar(tmp_path / "OSZICAR").ionic_steps) == 3


@pytest.mark.parametrize("ediffg", [1e-3, None, 0.0])
def test_energy_criterion(tmp_path, no_env, ediffg):
    """EDIFFG >= 0 (absent: 10 x EDIFF): stop once |dE| between two ionic steps < EDIFFG; EDIFFG = 0: NSW steps."""
    nsw = 30
    write_inputs(tmp_path, cu_ni_atoms(0), EDIFFG=ediffg, EDIFF=1e-4, NSW=nsw)
    assert standin.run(tmp_path) == 0
    vr = Vasprun(tmp_path / "vasprun.xml")
    tol = 1e-3 if ediffg is None else ediffg  # VASP default 10 x EDIFF
    assert vr.parameters["EDIFFG"] == pytest.approx(tol)
    d_e = np.abs(np.diff([s["e_fr_energy"] for s in vr.ionic_steps]))
    if ediffg == 0.0:
        assert len(vr.ionic_steps) == nsw and vr.converged_ionic  # pymatgen: EDIFFG = 0 runs NSW steps
        assert standin.RELAX_CONVERGED_LINE not in (tmp_path / "OUTCAR").read_text()
    else:
        assert 2 <= len(vr.ionic_steps) < nsw and vr.converged_ionic
        assert d_e[-1] < tol and np.all(d_e[:-1] >= tol)
        assert standin.RELAX_CONVERGED_LINE in (tmp_path / "OUTCAR").read_text()


@pytest.mark.parametrize("ibrion", [1, 3])
def test_other_ibrion_relax_too(tmp_path, no_env, ibrion):
    atoms = cu_ni_atoms(0)
    write_inputs(tmp_path, atoms, IBRION=ibrion)
    assert standin.run(tmp_path) == 0
    vr = Vasprun(tmp_path / "vasprun.xml")
    assert len(vr.ionic_steps) == len(standin.relax_trajectory(atoms, 100, ediffg=-FMAX))
    assert vr.converged_ionic and vr.parameters["IBRION"] == ibrion


def test_cell_relaxation_refused(tmp_path, no_env):
    """ISIF != 2: a clear message on stderr, nonzero exit, no outputs."""
    write_inputs(tmp_path, cu_ni_atoms(0), ISIF=3)
    with pytest.raises(ValueError, match="only relaxes ionic positions at fixed cell"):
        standin.run(tmp_path)
    proc = subprocess.run([sys.executable, standin.__file__], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    assert "fixed cell (ISIF = 2); got ISIF = 3" in proc.stderr
    assert not (tmp_path / "vasprun.xml").exists() and not (tmp_path / "OUTCAR").exists()


def test_garbage_truncates_vasprun(tmp_path, monkeypatch):
    monkeypatch.delenv(standin.LOG_ENV, raising=False)
    monkeypatch.setenv(standin.FAIL_ENV, "relaxA:garbage")
    write_inputs(tmp_path, cu_ni_atoms(0))
    assert standin.run(tmp_path) == 0
    with pytest.raises(SyntaxError):  # lxml's XMLSyntaxError
        Vasprun(tmp_path / "vasprun.xml")
    assert standin.RELAX_CONVERGED_LINE in (tmp_path / "OUTCAR").read_text()


def test_static_and_md_incars_are_not_relaxations():
    assert not standin.is_relax_incar(Incar({"IBRION": -1, "NSW": 0}))
    assert not standin.is_relax_incar(Incar({"IBRION": 2, "NSW": 0}))
    assert not standin.is_relax_incar(Incar({"IBRION": 0, "NSW": 10}))
    assert standin.is_md_incar(Incar({"IBRION": 0, "NSW": 10}))
    assert standin.is_relax_incar(Incar({"IBRION": 2, "NSW": 10})) and not standin.is_md_incar(
        Incar({"IBRION": 2, "NSW": 10})
    )


@pytest.mark.parametrize("nsw", [100, 3])
def test_default_custodian_handlers(tmp_path, no_env, nsw):
    """atomate2's default handlers on a relaxation run by the executable (stdout -> vasp.out as custodian
    does): none fires on a converged one; only UnconvergedErrorHandler when NSW ran out."""
    write_inputs(tmp_path, cu_ni_atoms(0), NSW=nsw)
    standin.install_wrapper(tmp_path / "bin")
    with open(tmp_path / "vasp.out", "w") as out, open(tmp_path / "std_err.txt", "w") as err:
        assert (
            subprocess.run(
                [str(tmp_path / "bin" / "vasp_std")], cwd=tmp_path, stdout=out, stderr=err, check=False
            ).returncode
            == 0
        )
    assert (standin.RELAX_CONVERGED_LINE in (tmp_path / "vasp.out").read_text()) == (nsw == 100)
    fired = [type(h).__name__ for h in DEFAULT_HANDLERS if h.check(str(tmp_path))]
    assert fired == ([] if nsw == 100 else ["UnconvergedErrorHandler"])


# ----------------------------------------------------------------------------------------
# atomate2 RelaxMaker end to end
# ----------------------------------------------------------------------------------------
def test_relax_maker_end_to_end(tmp_path, vasp_log):
    atoms = cu_ni_atoms(0)
    start = standin.reference_results(atoms)
    job = relax_maker("relaxA").make(AseAtomsAdaptor.get_structure(atoms))
    task_doc = run_job(job, tmp_path, ensure_success=True)[job.uuid][1].output

    assert [row[0] for row in launches(vasp_log)] == ["relaxA"]  # VASP ran exactly once
    assert task_doc.state == "successful"
    # emmet calls ISIF = 2 + IBRION > 0 a "Deformation" ("Structure Optimization" is ISIF = 3 only)
    assert str(task_doc.task_type) == "Deformation"
    assert task_doc.custodian[0].corrections == []
    calc = task_doc.calcs_reversed[0]
    assert calc.has_vasp_completed == "successful"
    assert calc.input.incar["IBRION"] == 2 and calc.input.incar["ISIF"] == 2 and calc.input.incar["EDIFFG"] == -FMAX

    # the TaskDoc's energy is the stand-in's energy of the TaskDoc's (relaxed) structure
    relaxed = AseAtomsAdaptor.get_atoms(task_doc.output.structure)
    ref = standin.reference_results(relaxed)
    assert task_doc.output.energy == pytest.approx(ref["energy"], abs=1e-5)
    assert max_force(task_doc.output.forces) < FMAX and max_force(ref["forces"]) < FMAX
    np.testing.assert_allclose(task_doc.output.forces, ref["forces"], atol=1e-6)
    assert task_doc.output.energy < start["energy"] - 0.01
    assert relaxed.get_chemical_symbols() == atoms.get_chemical_symbols()  # sort_structure=False keeps the order

    # as many ionic steps as the optimiser's force evaluations, from the POSCAR the stand-in read
    (cwd,) = {row[1] for row in launches(vasp_log)}
    (poscar_file,) = glob.glob(os.path.join(cwd, "POSCAR.orig*"))  # custodian's copy of the input
    poscar = Poscar.from_file(poscar_file).structure
    n_ionic = len(calc.output.ionic_steps)
    reference, n_evals = ase_bfgs(AseAtomsAdaptor.get_atoms(poscar), FMAX, 100)
    assert n_ionic == n_evals == len(standin.relax_trajectory(AseAtomsAdaptor.get_atoms(poscar), 100, ediffg=-FMAX))
    assert 1 < n_ionic < 100
    np.testing.assert_allclose(relaxed.get_scaled_positions(), reference.get_scaled_positions(wrap=True), atol=1e-8)
    assert calc.output.ionic_steps[0].e_0_energy == pytest.approx(
        standin.reference_results(AseAtomsAdaptor.get_atoms(poscar))["energy"], abs=1e-6
    )
    energies = [s.e_0_energy for s in calc.output.ionic_steps]
    assert energies[-1] == min(energies) == pytest.approx(task_doc.output.energy, abs=1e-8)


def test_relax_maker_unconverged_continues_from_contcar(tmp_path, vasp_log):
    """NSW too small: custodian's UnconvergedErrorHandler sets IBRION = 1, copies CONTCAR to POSCAR
    and reruns until a run converges within NSW; the TaskDoc holds the last run."""
    atoms = cu_ni_atoms(0)
    job = relax_maker("relaxB", run_vasp_extra={"max_errors": 10}, NSW=6).make(AseAtomsAdaptor.get_structure(atoms))
    task_doc = run_job(job, tmp_path, ensure_success=True)[job.uuid][1].output
    corrections = task_doc.custodian[0].corrections
    assert len(corrections) >= 1 and all(c["errors"] == ["Unconverged"] for c in corrections)
    assert corrections[0]["actions"] == [
        {"dict": "INCAR", "action": {"_set": {"IBRION": 1}}},
        {"file": "CONTCAR", "action": {"_file_copy": {"dest": "POSCAR"}}},
    ]
    assert len(launches(vasp_log)) == len(corrections) + 1
    assert task_doc.state == "successful"
    assert task_doc.calcs_reversed[0].input.incar["IBRION"] == 1
    ref = standin.reference_results(AseAtomsAdaptor.get_atoms(task_doc.output.structure))
    assert task_doc.output.energy == pytest.approx(ref["energy"], abs=1e-5)
    assert max_force(ref["forces"]) < FMAX
    assert len(task_doc.calcs_reversed[0].output.ionic_steps) < 6


def test_relax_maker_handlers_without_unconverged_fail_task(tmp_path, vasp_log):
    """Without UnconvergedErrorHandler an NSW-limited relaxation reaches the TaskDoc as "failed"."""
    handlers = [h for h in DEFAULT_HANDLERS if not isinstance(h, UnconvergedErrorHandler)]
    maker = relax_maker("relaxC", run_vasp_extra={"handlers": handlers}, NSW=3)
    maker = replace(maker, stop_children_kwargs={"handle_unsuccessful": False})
    task_doc = run_job(maker.make(AseAtomsAdaptor.get_structure(cu_ni_atoms(0))), tmp_path, ensure_success=True)
    (response,) = task_doc.values()
    doc = response[1].output
    assert doc.state == "failed" and len(doc.calcs_reversed[0].output.ionic_steps) == 3
    assert len(launches(vasp_log)) == 1
