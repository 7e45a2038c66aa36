"""Import of existing DFT data (al_flows.pool_study.pool_import) from real VASP-format files.

The files come from the EMT stand-in's MD mode (tests/vasp_standin/standin.py):
``write_vasp_md_run`` runs velocity-Verlet MD on the stand-in's energy surface and
writes vasprun.xml, OUTCAR and XDATCAR as VASP does; the frames it returns are the truth.
"""

from __future__ import annotations

import gzip
import math
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.io import write
from ase.units import GPa

from al_flows.frames.dataset import Dataset
from al_flows.frames.extxyz import frames_to_bytes
from al_flows.frames.ids import frame_id
from al_flows.pool_study.import_files import find_vasp_outputs
from al_flows.pool_study.pool_import import import_frames, import_tree
from al_flows.pool_study.vasp_outputs import XDATCAR_TOLERANCE
from vasp_standin import standin

N_STEPS = 6
POTIM = 2.0
TEBEG = 600.0

# file precision of the stand-in's outputs (see standin.write_md_outputs)
XML_POS, XML_F, XML_E = 1e-10, 1e-10, 1e-9
OUT_POS, OUT_F, OUT_E = 1e-5 + 1e-9, 1e-6 + 1e-9, 1e-8 + 1e-10
EXTXYZ = 5e-9 + 1e-12  # per-atom arrays in extxyz: 8 decimals


def cu_ni_atoms(seed: int = 0):
    """16-atom fcc Cu cell (cubic 3.6 Å, 2x2x1), 5 atoms -> Ni at random sites (so the
    species blocks interleave: several POTCAR entries), rattled 0.05 Å."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 1))
    rng = np.random.default_rng(seed)
    atoms.symbols[rng.choice(len(atoms), 5, replace=False)] = "Ni"
    atoms.rattle(0.05, seed=seed)
    return atoms


def md_run(directory, seed=0, n_steps=N_STEPS, **kwargs):
    return standin.write_vasp_md_run(
        directory, cu_ni_atoms(seed), n_steps=n_steps, potim=POTIM, tebeg=TEBEG, seed=seed, **kwargs
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(run directory, the stand-in's frames) of one 6-step AIMD run."""
    directory = tmp_path_factory.mktemp("md") / "run"
    frames = md_run(directory)
    return directory, frames


def copy_run(src: Path, dst: Path, names=("vasprun.xml", "OUTCAR", "XDATCAR")) -> Path:
    dst.mkdir(parents=True)
    for name in names:
        shutil.copy(src / name, dst / name)
    return dst


def mic_max(a, b, cell) -> float:
    from ase.geometry import find_mic

    return float(find_mic(a - b, cell, pbc=True)[1].max())


def assert_frames_match(frames, truth, steps, pos_tol, f_tol, e_tol, stress_tol=1e-8):
    assert len(frames) == len(steps)
    for atoms, k in zip(frames, steps):
        ref = truth[k]
        assert atoms.info["source_step"] == k
        assert atoms.get_chemical_symbols() == ref.get_chemical_symbols()
        np.testing.assert_allclose(atoms.cell[:], ref.cell[:], atol=1e-9)
        np.testing.assert_allclose(atoms.positions, ref.positions, atol=pos_tol, rtol=0)
        res, want = atoms.calc.results, ref.calc.results
        assert res["energy"] == pytest.approx(want["energy"], abs=e_tol, rel=0)
        assert res["free_energy"] == pytest.approx(want["free_energy"], abs=e_tol, rel=0)
        np.testing.assert_allclose(res["forces"], want["forces"], atol=f_tol, rtol=0)
        np.testing.assert_allclose(res["stress"], want["stress"], atol=stress_tol, rtol=0)
        assert res["forces"].shape == (len(ref), 3) and res["stress"].shape == (6,)


def one_line_error(excinfo, *needles):
    text = str(excinfo.value)
    assert "\n" not in text, text
    for needle in needles:
        assert str(needle) in text, (needle, text)
    return text


# ----------------------------------------------------------------------------------------
# the stand-in's MD mode
# ----------------------------------------------------------------------------------------
def test_md_standin_trajectory_is_md(run):
    _, truth = run
    assert len(truth) == N_STEPS
    # a real trajectory: atoms move, forces are EMT's, energies are the stand-in's reference
    assert mic_max(truth[-1].positions, truth[0].positions, truth[0].cell) > 0.02
    for frame in truth:
        ref = standin.reference_results(frame)
        assert frame.calc.results["energy"] == pytest.approx(ref["energy"], abs=1e-10)
        np.testing.assert_allclose(frame.calc.results["forces"], ref["forces"], atol=1e-10)
        ts = standin.MD_ENTROPY_PER_ATOM * len(frame)
        assert frame.calc.results["free_energy"] == pytest.approx(ref["energy"] - ts / 2, abs=1e-12)
    # NVE velocity Verlet conserves E_pot(free) + E_kin to well below the step-to-step changes
    total = np.array([f.calc.results["free_energy"] + f.info["ekin"] for f in truth])
    epot = np.array([f.calc.results["free_energy"] for f in truth])
    assert np.ptp(total) < 0.1 * np.ptp(epot)
    assert 100 < truth[0].info["temperature"] < 2000
    # deterministic for a given seed, different for another
    again = standin.md_trajectory(cu_ni_atoms(0), 3, potim=POTIM, tebeg=TEBEG, seed=0)
    np.testing.assert_allclose(again[2].positions, truth[2].positions, atol=1e-12)  # truth went through POSCAR
    other = standin.md_trajectory(cu_ni_atoms(0), 3, potim=POTIM, tebeg=TEBEG, seed=1)
    assert np.abs(other[2].positions - truth[2].positions).max() > 1e-4


def test_md_standin_files_parse_with_pymatgen(run):
    from pymatgen.io.vasp import Oszicar, Outcar, Vasprun, Xdatcar

    directory, truth = run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen: no POTCAR with matching TITEL (POTCAR.spec only)
        vr = Vasprun(directory / "vasprun.xml")
        outcar = Outcar(directory / "OUTCAR")
        xdatcar = Xdatcar(directory / "XDATCAR")
    assert len(vr.ionic_steps) == N_STEPS and vr.converged_electronic
    assert vr.parameters["IBRION"] == 0 and vr.parameters["NSW"] == N_STEPS and vr.parameters["POTIM"] == POTIM
    for step, frame in zip(vr.ionic_steps, truth):
        assert step["e_0_energy"] == pytest.approx(frame.calc.results["energy"], abs=XML_E)
        assert step["e_fr_energy"] == pytest.approx(frame.calc.results["free_energy"], abs=XML_E)
        np.testing.assert_allclose(step["forces"], frame.calc.results["forces"], atol=XML_F)
        np.testing.assert_allclose(
            standin.vasp_kbar_to_ase_stress(step["stress"]), frame.calc.results["stress"], atol=1e-10
        )
        np.testing.assert_allclose(step["structure"].cart_coords, frame.positions, atol=XML_POS)
    assert vr.final_energy == pytest.approx(truth[-1].calc.results["energy"], abs=XML_E)
    assert outcar.final_energy == pytest.approx(truth[-1].calc.results["energy"], abs=OUT_E)
    assert outcar.final_fr_energy == pytest.approx(truth[-1].calc.results["free_energy"], abs=OUT_E)
    assert outcar.run_stats["cores"] == 1
    assert len(xdatcar.structures) == N_STEPS
    np.testing.assert_allclose(xdatcar.structures[3].cart_coords, truth[3].positions, atol=1e-6)
    oszicar = Oszicar(directory / "OSZICAR")
    assert len(oszicar.ionic_steps) == N_STEPS
    assert oszicar.ionic_steps[-1]["E0"] == pytest.approx(truth[-1].calc.results["energy"], abs=1e-7)


def test_standin_executable_md_mode_writes_the_same_run(run, tmp_path, monkeypatch):
    """INCAR with IBRION=0, NSW>0: standin.run (what vasp_std executes) does the MD of write_vasp_md_run."""
    directory, truth = run
    work = tmp_path / "exe"
    work.mkdir()
    for name in ("INCAR", "POSCAR", "KPOINTS", "POTCAR.spec"):
        shutil.copy(directory / name, work / name)
    monkeypatch.setenv(standin.MD_SEED_ENV, "0")
    monkeypatch.delenv(standin.FAIL_ENV, raising=False)
    monkeypatch.delenv(standin.LOG_ENV, raising=False)
    assert standin.run(work) == 0
    assert {"vasprun.xml", "OUTCAR", "XDATCAR", "OSZICAR", "CONTCAR"} <= {p.name for p in work.iterdir()}
    frames = import_frames(work)
    assert_frames_match(frames, truth, range(N_STEPS), XML_POS, XML_F, XML_E)


# ----------------------------------------------------------------------------------------
# VASP run directories and files
# ----------------------------------------------------------------------------------------
def test_vasprun_frames_equal_standin_with_provenance(run):
    directory, truth = run
    frames = import_frames(directory)
    assert_frames_match(frames, truth, range(N_STEPS), XML_POS, XML_F, XML_E)
    for k, atoms in enumerate(frames):
        info = atoms.info
        assert info["source_file"] == "vasprun.xml"  # relative to the directory given
        assert info["source_step"] == k
        assert info["source_format"] == "vasprun"
        assert info["explorer"] == "import" and info["round"] == -1 and info["labeller"] == "vasp"
        assert info["energy_convention"] == "sigma0"
        assert info["parent_id"] == "" and info["model_id"] == "" and math.isnan(info["deviation"])
        assert info["frame_id"] == frame_id(atoms)
        assert info["source_meta"] == {
            "IBRION": 0, "NSW": N_STEPS, "POTIM": POTIM, "TEBEG": TEBEG, "TEEND": TEBEG, "SMASS": -3.0,
            "ISIF": 2, "ISMEAR": 0, "SIGMA": 0.1, "ENCUT": 400.0, "NBLOCK": 1,
        }  # fmt: skip
        assert atoms.constraints == []
    assert len({a.info["frame_id"] for a in frames}) == N_STEPS
    # frames go straight into a Dataset and survive its serialisation
    ds = Dataset(frames)
    assert len(ds) == N_STEPS
    back = Dataset.from_bytes(ds.to_bytes())
    assert back[2].info["source_meta"]["POTIM"] == POTIM
    assert back[2].calc.results["energy"] == frames[2].calc.results["energy"]


def test_outcar_and_vasprun_give_the_same_frames(run):
    directory, truth = run
    xml = import_frames(directory, fmt="vasprun")
    out = import_frames(directory, fmt="outcar")
    single = import_frames(directory / "OUTCAR")  # the file alone: absolute source_file
    assert_frames_match(out, truth, range(N_STEPS), OUT_POS, OUT_F, OUT_E)
    assert len(xml) == len(out) == len(single) == N_STEPS
    for a, b, c in zip(xml, out, single):
        assert a.get_chemical_symbols() == b.get_chemical_symbols()
        np.testing.assert_allclose(a.positions, b.positions, atol=OUT_POS, rtol=0)
        np.testing.assert_allclose(a.cell[:], b.cell[:], atol=1e-8)
        assert a.calc.results["energy"] == pytest.approx(b.calc.results["energy"], abs=OUT_E)
        assert a.calc.results["free_energy"] == pytest.approx(b.calc.results["free_energy"], abs=OUT_E)
        np.testing.assert_allclose(a.calc.results["forces"], b.calc.results["forces"], atol=OUT_F, rtol=0)
        np.testing.assert_allclose(a.calc.results["stress"], b.calc.results["stress"], atol=1e-8, rtol=0)
        assert sorted(a.calc.results) == sorted(b.calc.results) == ["energy", "forces", "free_energy", "stress"]
        assert b.info["source_format"] == "outcar" and b.info["source_file"] == "OUTCAR"
        assert a.info["source_meta"] == b.info["source_meta"]
        assert c.info["source_file"] == str((directory / "OUTCAR").resolve())
        np.testing.assert_array_equal(b.positions, c.positions)


def test_energy_convention(run):
    """Default: energy(sigma->0) on both paths (= the stand-in's reference energy, = what the
    project's VASP labeller stores); energy='free': TOTEN on both paths."""
    directory, truth = run
    ts = standin.MD_ENTROPY_PER_ATOM * len(truth[0])
    assert ts / 2 > 100 * OUT_E  # the conventions are distinguishable
    for fmt, tol in (("vasprun", XML_E), ("outcar", OUT_E)):
        e0 = import_frames(directory, fmt=fmt)
        free = import_frames(directory, fmt=fmt, energy="free")
        for a, b, ref in zip(e0, free, truth):
            assert a.calc.results["energy"] == pytest.approx(standin.reference_results(ref)["energy"], abs=tol)
            assert b.calc.results["energy"] == pytest.approx(ref.calc.results["energy"] - ts / 2, abs=tol)
            assert b.calc.results["free_energy"] == b.calc.results["energy"]
            assert b.info["energy_convention"] == "free"
            np.testing.assert_array_equal(a.calc.results["forces"], b.calc.results["forces"])
    with pytest.raises(ValueError, match="energy must be one of"):
        import_frames(directory, energy="e_wo_entrp")


def test_stride_and_index(run):
    directory, truth = run
    assert [a.info["source_step"] for a in import_frames(directory, stride=2)] == [0, 2, 4]
    assert [a.info["source_step"] for a in import_frames(directory, index="1:", stride=2)] == [1, 3, 5]
    assert [a.info["source_step"] for a in import_frames(directory, index=slice(None, None, -1), stride=3)] == [5, 2]
    last = import_frames(directory, index=-1)
    assert [a.info["source_step"] for a in last] == [N_STEPS - 1]
    assert_frames_match(last, truth, [N_STEPS - 1], XML_POS, XML_F, XML_E)
    assert [a.info["source_step"] for a in import_frames(directory / "OUTCAR", index="2:4")] == [2, 3]
    with pytest.raises(ValueError) as excinfo:
        import_frames(directory, index=N_STEPS)
    one_line_error(excinfo, "vasprun.xml", "out of range")
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="stride"):
            import_frames(directory, stride=bad)


def test_gzipped_files(run, tmp_path):
    directory, truth = run
    gz = copy_run(directory, tmp_path / "gz")
    for name in ("vasprun.xml", "OUTCAR", "XDATCAR"):
        with open(gz / name, "rb") as src, gzip.open(gz / f"{name}.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        (gz / name).unlink()
    assert {k: p.name for k, p in find_vasp_outputs(gz).items()} == {
        "vasprun": "vasprun.xml.gz",
        "outcar": "OUTCAR.gz",
        "xdatcar": "XDATCAR.gz",
    }
    frames = import_frames(gz)  # XDATCAR.gz is checked too
    assert [a.info["source_file"] for a in frames] == ["vasprun.xml.gz"] * N_STEPS
    assert_frames_match(frames, truth, range(N_STEPS), XML_POS, XML_F, XML_E)
    out = import_frames(gz / "OUTCAR.gz")
    assert out[0].info["source_format"] == "outcar"
    assert_frames_match(out, truth, range(N_STEPS), OUT_POS, OUT_F, OUT_E)
    # same numbers as the plain files
    plain = import_frames(directory)
    for a, b in zip(frames, plain):
        assert a.calc.results["energy"] == b.calc.results["energy"]
        np.testing.assert_array_equal(a.calc.results["forces"], b.calc.results["forces"])
        assert a.info["frame_id"] == b.info["frame_id"]
    # plain and compressed copies of one file: ambiguous
    shutil.copy(directory / "OUTCAR", gz / "OUTCAR")
    with pytest.raises(ValueError) as excinfo:
        import_frames(gz)
    one_line_error(excinfo, "OUTCAR and OUTCAR.gz", "keep one")


# ----------------------------------------------------------------------------------------
# XDATCAR
# ----------------------------------------------------------------------------------------
def shift_xdatcar(path: Path, config: int, atom: int, dfrac: float) -> None:
    lines = path.read_text().splitlines()
    start = lines.index(f"Direct configuration={config:6d}")
    row = lines[start + 1 + atom].split()
    row[0] = f"{float(row[0]) + dfrac:.8f}"
    lines[start + 1 + atom] = "  " + " ".join(row)
    path.write_text("\n".join(lines) + "\n")


def test_xdatcar_consistency_check(run, tmp_path):
    directory, _ = run
    # untouched: consistent (import_frames of the run directory checks it)
    assert len(import_frames(directory)) == N_STEPS
    # tampered: one atom of configuration 3 (0-based step 2) moved by 0.01 * 7.2 Å
    bad = copy_run(directory, tmp_path / "bad")
    shift_xdatcar(bad / "XDATCAR", config=3, atom=4, dfrac=0.01)
    for fmt in ("auto", "outcar"):
        with pytest.raises(ValueError) as excinfo:
            import_frames(bad, fmt=fmt)
        one_line_error(excinfo, bad / "XDATCAR", "configuration 2", "check_xdatcar=False")
    assert len(import_frames(bad, check_xdatcar=False)) == N_STEPS
    # a displacement below the tolerance passes (XDATCAR has 8 decimals, OUTCAR 5)
    near = copy_run(directory, tmp_path / "near")
    shift_xdatcar(near / "XDATCAR", config=3, atom=4, dfrac=0.2 * XDATCAR_TOLERANCE / 7.2)
    assert len(import_frames(near)) == N_STEPS
    # a wrapped coordinate (x -> x + 1) is the same position: minimum image
    wrapped = copy_run(directory, tmp_path / "wrapped")
    shift_xdatcar(wrapped / "XDATCAR", config=2, atom=0, dfrac=1.0)
    assert len(import_frames(wrapped)) == N_STEPS
    # a different number of configurations
    short = copy_run(directory, tmp_path / "short")
    text = (short / "XDATCAR").read_text()
    (short / "XDATCAR").write_text(text[: text.index(f"Direct configuration={N_STEPS:6d}")])
    with pytest.raises(ValueError) as excinfo:
        import_frames(short)
    one_line_error(excinfo, short / "XDATCAR", f"{N_STEPS - 1} configurations", f"{N_STEPS} ionic steps")


def test_xdatcar_every_nblock_steps(tmp_path):
    """NBLOCK=2: VASP writes configurations 2, 4, 6 (numbered by step); they are checked against
    those steps, and an XDATCAR-only import names them as steps 1, 3, 5."""
    truth = md_run(tmp_path / "nb", incar={"NBLOCK": 2})
    text = (tmp_path / "nb" / "XDATCAR").read_text()
    assert re.findall(r"Direct configuration=\s*(\d+)", text) == ["2", "4", "6"]
    frames = import_frames(tmp_path / "nb")
    assert len(frames) == N_STEPS and frames[0].info["source_meta"]["NBLOCK"] == 2
    assert import_frames(tmp_path / "nb", fmt="outcar")[0].info["source_meta"]["NBLOCK"] == 2
    shift_xdatcar(tmp_path / "nb" / "XDATCAR", config=4, atom=0, dfrac=0.01)
    with pytest.raises(ValueError) as excinfo:
        import_frames(tmp_path / "nb")
    one_line_error(excinfo, "XDATCAR", "configuration 3")
    only = copy_run(tmp_path / "nb", tmp_path / "only", names=("XDATCAR",))
    unlabelled = import_frames(only, require_labels=False)
    assert [a.info["source_step"] for a in unlabelled] == [1, 3, 5]
    assert mic_max(unlabelled[2].positions, truth[5].positions, truth[5].cell) < 1e-6


def test_xdatcar_only_directory(run, tmp_path):
    directory, truth = run
    only = copy_run(directory, tmp_path / "only", names=("XDATCAR",))
    with pytest.raises(ValueError) as excinfo:
        import_frames(only)
    text = one_line_error(excinfo)
    assert text == (
        f"{only / 'XDATCAR'} holds positions only; energies and forces come from OUTCAR or vasprun.xml: "
        "add one, or pass require_labels=False"
    )
    with pytest.raises(ValueError, match="holds positions only"):
        import_frames(only / "XDATCAR")  # the file itself: same rule
    frames = import_frames(only, require_labels=False)
    assert len(frames) == N_STEPS
    for k, (atoms, ref) in enumerate(zip(frames, truth)):
        assert atoms.calc is None  # explicitly unlabelled
        assert atoms.info["source_format"] == "xdatcar" and atoms.info["source_file"] == "XDATCAR"
        assert atoms.info["source_step"] == k and atoms.info["labeller"] == ""
        assert atoms.info["explorer"] == "import" and atoms.info["frame_id"] == frame_id(atoms)
        assert atoms.get_chemical_symbols() == ref.get_chemical_symbols()
        assert mic_max(atoms.positions, ref.positions, ref.cell) < 1e-6
    with pytest.raises(ValueError, match="missing label"):
        Dataset(frames)


# ----------------------------------------------------------------------------------------
# extxyz
# ----------------------------------------------------------------------------------------
def test_extxyz_round_trip_keeps_labels_and_provenance(run, tmp_path):
    directory, _ = run
    frames = import_frames(directory)
    path = tmp_path / "pool.extxyz"
    path.write_bytes(frames_to_bytes(frames))
    back = import_frames(path)
    assert len(back) == N_STEPS
    for k, (a, b) in enumerate(zip(frames, back)):
        assert b.calc.results["energy"] == a.calc.results["energy"]
        assert b.calc.results["free_energy"] == a.calc.results["free_energy"]
        # ASE's extxyz writer prints per-atom arrays with 8 decimals
        np.testing.assert_allclose(b.calc.results["forces"], a.calc.results["forces"], atol=EXTXYZ, rtol=0)
        np.testing.assert_allclose(b.positions, a.positions, atol=EXTXYZ, rtol=0)
        np.testing.assert_allclose(b.calc.results["stress"], a.calc.results["stress"], rtol=1e-15)
        info = b.info
        # this import
        assert (
            info["source_file"] == str(path.resolve())
            and info["source_step"] == k
            and info["source_format"] == "extxyz"
        )
        # the original DFT file and the rest of the provenance
        assert info["origin_source_file"] == "vasprun.xml" and info["origin_source_step"] == k
        assert info["origin_source_format"] == "vasprun"
        assert info["labeller"] == "vasp" and info["energy_convention"] == "sigma0"
        assert info["source_meta"] == a.info["source_meta"]
        assert info["explorer"] == "import" and info["round"] == -1 and "origin_explorer" not in info
        assert info["frame_id"] == a.info["frame_id"]
    # compressed, and energy='free' (the stored free_energy)
    with gzip.open(tmp_path / "pool.extxyz.gz", "wb") as fh:
        fh.write(path.read_bytes())
    zipped = import_frames(tmp_path / "pool.extxyz.gz", energy="free")
    assert zipped[1].info["source_format"] == "extxyz" and zipped[1].info["origin_source_step"] == 1
    assert [a.calc.results["energy"] for a in zipped] == [a.calc.results["free_energy"] for a in frames]
    # a second round trip keeps the first origin
    path2 = tmp_path / "sub" / "again.extxyz"
    path2.parent.mkdir()
    path2.write_bytes(frames_to_bytes(back))
    again = import_frames(path2, root=tmp_path)
    assert again[3].info["source_file"] == "sub/again.extxyz"
    assert again[3].info["origin_source_file"] == "vasprun.xml" and again[3].info["origin_source_step"] == 3


def test_plain_extxyz_labels_and_require_labels(tmp_path):
    atoms = [cu_ni_atoms(s) for s in range(3)]
    labelled = []
    for i, a in enumerate(atoms):
        a = a.copy()
        ref = standin.reference_results(a)
        from ase.calculators.singlepoint import SinglePointCalculator

        a.calc = SinglePointCalculator(a, energy=ref["energy"], forces=ref["forces"])
        a.info = {"explorer": "shear", "round": 2, "note": f"n{i}"} if i == 1 else {}
        labelled.append(a)
    path = tmp_path / "other.xyz"
    write(path, labelled, format="extxyz")  # written by plain ASE, no al_info
    frames = import_frames(path)
    for k, (got, a) in enumerate(zip(frames, labelled)):
        assert got.calc.results["energy"] == pytest.approx(a.calc.results["energy"], rel=1e-12)
        np.testing.assert_allclose(got.calc.results["forces"], a.calc.results["forces"], atol=EXTXYZ, rtol=0)
        assert (
            got.info["labeller"] == "extxyz" and got.info["source_step"] == k and got.info["source_format"] == "extxyz"
        )
    assert frames[1].info["note"] == "n1"
    assert frames[1].info["origin_explorer"] == "shear" and frames[1].info["origin_round"] == 2
    assert frames[1].info["explorer"] == "import" and frames[1].info["round"] == -1
    # positions only
    bare = tmp_path / "bare.extxyz"
    write(bare, atoms, format="extxyz")
    with pytest.raises(ValueError) as excinfo:
        import_frames(bare)
    one_line_error(excinfo, bare, "frame 0 has no energy and forces", "require_labels=False")
    frames = import_frames(bare, require_labels=False)
    assert [f.calc for f in frames] == [None] * 3 and frames[0].info["labeller"] == ""
    # non-finite labels
    nan = labelled[0].copy()
    from ase.calculators.singlepoint import SinglePointCalculator

    nan.calc = SinglePointCalculator(nan, energy=float("nan"), forces=labelled[0].calc.results["forces"])
    write(tmp_path / "nan.extxyz", [labelled[1], nan], format="extxyz")
    with pytest.raises(ValueError) as excinfo:
        import_frames(tmp_path / "nan.extxyz")
    one_line_error(excinfo, tmp_path / "nan.extxyz", "frame 1", "non-finite energy")


# ----------------------------------------------------------------------------------------
# trees
# ----------------------------------------------------------------------------------------
def test_import_tree_two_runs_deterministic(tmp_path):
    root = tmp_path / "pool"
    truth_b = md_run(root / "run_b", seed=1, n_steps=4)
    truth_a = md_run(root / "nested" / "run_a", seed=2, n_steps=3)
    # run_b keeps only a gzipped OUTCAR (plus XDATCAR): imported from the OUTCAR
    (root / "run_b" / "vasprun.xml").unlink()
    with open(root / "run_b" / "OUTCAR", "rb") as src, gzip.open(root / "run_b" / "OUTCAR.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    (root / "run_b" / "OUTCAR").unlink()
    extra = import_frames(root / "nested" / "run_a", index="0")
    (root / "zz.extxyz").write_bytes(frames_to_bytes(extra))
    (root / ".hidden").mkdir()
    shutil.copy(root / "run_b" / "XDATCAR", root / ".hidden" / "XDATCAR")

    frames = import_tree(root)
    keys = [(a.info["source_file"], a.info["source_step"]) for a in frames]
    assert keys == [("nested/run_a/vasprun.xml", k) for k in range(3)] + [("run_b/OUTCAR.gz", k) for k in range(4)] + [
        ("zz.extxyz", 0)
    ]
    assert_frames_match(frames[:3], truth_a, range(3), XML_POS, XML_F, XML_E)
    assert_frames_match(frames[3:7], truth_b, range(4), OUT_POS, OUT_F, OUT_E)
    assert frames[7].info["origin_source_file"] == "vasprun.xml"  # relative to the run it was first imported from
    again = import_tree(root)
    assert [(a.info["source_file"], a.info["source_step"], a.info["frame_id"]) for a in again] == [
        (a.info["source_file"], a.info["source_step"], a.info["frame_id"]) for a in frames
    ]
    strided = import_tree(root, stride=2)
    assert [(a.info["source_file"], a.info["source_step"]) for a in strided] == [
        ("nested/run_a/vasprun.xml", 0), ("nested/run_a/vasprun.xml", 2),
        ("run_b/OUTCAR.gz", 0), ("run_b/OUTCAR.gz", 2),
        ("zz.extxyz", 0),
    ]  # fmt: skip
    # a broken run: raise (one line, naming its file), or skip it with a warning
    (root / "run_c").mkdir()
    (root / "run_c" / "OUTCAR").write_text(" vasp.6.4.2\n POTCAR:    PAW_PBE Cu 22Jun2005\n")
    with pytest.raises(ValueError) as excinfo:
        import_tree(root)
    one_line_error(excinfo, root / "run_c" / "OUTCAR", "cannot parse")
    with pytest.warns(UserWarning, match="run_c"):
        assert len(import_tree(root, on_error="warn")) == 8
    # nothing to import
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("nothing here")
    with pytest.raises(ValueError) as excinfo:
        import_tree(tmp_path / "empty")
    one_line_error(excinfo, tmp_path / "empty", "no VASP run directory")


# ----------------------------------------------------------------------------------------
# broken inputs: one-line errors naming the file and the fix
# ----------------------------------------------------------------------------------------
def test_truncated_outcar(run, tmp_path):
    directory, truth = run
    lines = (directory / "OUTCAR").read_text().splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith(" POSITION ")]
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "OUTCAR").write_text("".join(lines[: starts[3] + 5]))  # inside step 3's force table
    with pytest.raises(ValueError) as excinfo:
        import_frames(cut / "OUTCAR")
    one_line_error(excinfo, cut / "OUTCAR", "incomplete OUTCAR", "allow_incomplete=True", "3 complete ionic steps")
    with pytest.raises(ValueError, match="incomplete OUTCAR"):
        import_frames(cut)  # the directory: same
    partial = import_frames(cut / "OUTCAR", allow_incomplete=True)
    assert_frames_match(partial, truth, range(3), OUT_POS, OUT_F, OUT_E)
    # cut inside the header: cannot be parsed at all
    (cut / "OUTCAR").write_text("".join(lines[:20]))
    with pytest.raises(ValueError) as excinfo:
        import_frames(cut / "OUTCAR", allow_incomplete=True)
    one_line_error(excinfo, cut / "OUTCAR", "cannot parse as OUTCAR")
    # a killed run whose vasprun.xml is complete up to the same point, with an XDATCAR with one more step
    killed = copy_run(directory, tmp_path / "killed", names=("XDATCAR",))
    (killed / "OUTCAR").write_text("".join(lines[: starts[3] + 5]))
    with pytest.raises(ValueError, match="incomplete OUTCAR"):
        import_frames(killed)
    assert len(import_frames(killed, allow_incomplete=True)) == 3


def test_garbage_vasprun_falls_back_to_outcar(tmp_path):
    truth = md_run(tmp_path / "g", garbage=True)
    with pytest.warns(UserWarning, match="incomplete vasprun.xml"):
        frames = import_frames(tmp_path / "g")
    assert {a.info["source_format"] for a in frames} == {"outcar"}
    assert_frames_match(frames, truth, range(N_STEPS), OUT_POS, OUT_F, OUT_E)
    with pytest.raises(ValueError) as excinfo:
        import_frames(tmp_path / "g" / "vasprun.xml")
    one_line_error(excinfo, tmp_path / "g" / "vasprun.xml", "incomplete vasprun.xml", "allow_incomplete=True")
    partial = import_frames(tmp_path / "g" / "vasprun.xml", allow_incomplete=True, check_xdatcar=False)
    assert 0 < len(partial) < N_STEPS
    assert_frames_match(partial, truth, range(len(partial)), XML_POS, XML_F, XML_E)
    # both unusable: one line naming both files
    (tmp_path / "g" / "OUTCAR").write_text((tmp_path / "g" / "OUTCAR").read_text()[:300])
    with pytest.raises(ValueError) as excinfo:
        import_frames(tmp_path / "g")
    one_line_error(excinfo, tmp_path / "g" / "vasprun.xml", tmp_path / "g" / "OUTCAR")


def test_forces_shape_mismatch_in_vasprun(run, tmp_path):
    directory, _ = run
    bad = copy_run(directory, tmp_path / "bad", names=("vasprun.xml",))
    text = (bad / "vasprun.xml").read_text(encoding="ISO-8859-1")
    blocks = [m.start() for m in re.finditer(r'<varray name="forces" >', text)]
    row = text.index("<v>", blocks[1])
    text = text[:row] + text[text.index("\n", row) + 1 :]  # drop one force row of step 1
    (bad / "vasprun.xml").write_text(text, encoding="ISO-8859-1")
    with pytest.raises(ValueError) as excinfo:
        import_frames(bad)
    one_line_error(excinfo, bad / "vasprun.xml", "ionic step 1", "forces have shape (15, 3), expected (16, 3)")


def test_non_finite_forces_in_outcar(run, tmp_path):
    directory, _ = run
    bad = copy_run(directory, tmp_path / "nan", names=("OUTCAR",))
    lines = (bad / "OUTCAR").read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(" POSITION ")]
    parts = lines[starts[2] + 3].split()
    parts[4] = "NaN"
    lines[starts[2] + 3] = " " + "   ".join(parts)
    (bad / "OUTCAR").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError) as excinfo:
        import_frames(bad)
    one_line_error(excinfo, bad / "OUTCAR", "ionic step 2", "non-finite forces", "index=")
    # stepping over it is the fix the message names
    assert [a.info["source_step"] for a in import_frames(bad, index="3:")] == [3, 4, 5]


def test_missing_and_unknown_paths(tmp_path):
    with pytest.raises(FileNotFoundError) as excinfo:
        import_frames(tmp_path / "nope")
    one_line_error(excinfo, tmp_path / "nope", "no such file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError) as excinfo:
        import_frames(tmp_path / "empty")
    one_line_error(excinfo, tmp_path / "empty", "no vasprun.xml, OUTCAR or XDATCAR")
    with pytest.raises(FileNotFoundError, match="no OUTCAR"):
        import_frames(tmp_path / "empty", fmt="outcar")
    (tmp_path / "mystery.dat").write_text("1 2 3\n")
    with pytest.raises(ValueError) as excinfo:
        import_frames(tmp_path / "mystery.dat")
    one_line_error(excinfo, "mystery.dat", "pass fmt=")
    with pytest.raises(ValueError, match="fmt must be one of"):
        import_frames(tmp_path / "mystery.dat", fmt="poscar")


# ----------------------------------------------------------------------------------------
# the project's own static VASP runs and real VASP files shipped with ASE
# ----------------------------------------------------------------------------------------
def test_static_standin_run_directory(tmp_path, monkeypatch):
    """A run of the stand-in's static mode (what the campaign's VASP labeller produces) imports as one frame."""
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.vasp import Incar, Kpoints, Poscar

    monkeypatch.delenv(standin.FAIL_ENV, raising=False)
    monkeypatch.delenv(standin.LOG_ENV, raising=False)
    atoms = cu_ni_atoms(5)
    structure = AseAtomsAdaptor.get_structure(atoms)
    poscar = Poscar(structure)
    Incar(
        {"SYSTEM": "static", "ENCUT": 300, "ISMEAR": 0, "SIGMA": 0.1, "NSW": 0, "IBRION": -1, "EDIFF": 1e-5}
    ).write_file(tmp_path / "INCAR")
    poscar.write_file(tmp_path / "POSCAR")
    Kpoints.gamma_automatic((1, 1, 1)).write_file(tmp_path / "KPOINTS")
    (tmp_path / "POTCAR.spec").write_text("\n".join(poscar.site_symbols) + "\n")
    assert standin.run(tmp_path) == 0
    (frame,) = import_frames(tmp_path)
    ref = standin.reference_results(atoms)
    assert frame.info["source_format"] == "vasprun" and frame.info["source_meta"]["NSW"] == 0
    assert frame.calc.results["energy"] == pytest.approx(ref["energy"], abs=XML_E)
    np.testing.assert_allclose(frame.calc.results["forces"], ref["forces"], atol=1e-10)
    np.testing.assert_allclose(frame.calc.results["stress"], ref["stress"], atol=1e-10)
    np.testing.assert_allclose(frame.positions, atoms.positions, atol=1e-10)


ASE_VASP_TESTDATA = Path(__import__("ase").__file__).parent / "test" / "testdata" / "vasp"


@pytest.mark.skipif(not (ASE_VASP_TESTDATA / "OUTCAR_example_1").is_file(), reason="ASE test data not installed")
def test_real_vasp_outcar_from_ase_testdata():
    """A real VASP 5.3.3 OUTCAR (18 Ni atoms, spin-polarised, one ionic step) shipped with ASE."""
    path = ASE_VASP_TESTDATA / "OUTCAR_example_1"
    (atoms,) = import_frames(path)
    res = atoms.calc.results
    assert atoms.get_chemical_formula() == "Ni18" and len(atoms) == 18
    assert res["energy"] == pytest.approx(-68.23102426, abs=1e-8)  # energy(sigma->0)
    assert res["free_energy"] == pytest.approx(-68.22868532, abs=1e-8)  # TOTEN
    np.testing.assert_allclose(res["forces"][0], [0.030415, -0.114705, -0.460114], atol=1e-9)
    np.testing.assert_allclose(res["forces"][-1], [-0.000170, -0.427894, -0.523640], atol=1e-9)
    np.testing.assert_allclose(atoms.positions[1], [16.82152, 15.71963, 17.66895], atol=1e-9)
    xx, yy, zz, xy, yz, zx = -4.29429, -4.58894, -4.50342, 0.50047, -0.94049, 0.36481  # "in kB" line
    np.testing.assert_allclose(res["stress"], -np.array([xx, yy, zz, yz, zx, xy]) * 0.1 * GPa, atol=1e-12)
    assert atoms.info["source_file"] == str(path.resolve()) and atoms.info["source_format"] == "outcar"
    assert atoms.info["source_meta"]["ENCUT"] == 300.0 and atoms.info["source_meta"]["IBRION"] == -1
    assert 0 < abs(res["free_energy"] - res["energy"]) < 0.01
    assert import_frames(path, energy="free")[0].calc.results["energy"] == pytest.approx(-68.22868532, abs=1e-8)


@pytest.mark.skipif(not (ASE_VASP_TESTDATA / "vasprun_pstress.xml").is_file(), reason="ASE test data not installed")
def test_real_vasprun_from_ase_testdata():
    """A real vasprun.xml (diamond C2, PSTRESS = 1 kbar, NSW = 0) against numbers read off the file
    by hand (not through ASE, which the importer uses). The file's <calculation> holds one ionic
    step: cell rows (0, 1.785, 1.785), (1.785, 0, 1.785), (1.785, 1.785, 0) A, volume 11.37482325 A^3,
    fractional positions (0, 0, 0) and (1/4, 1/4, 1/4), forces all 0.00000000, stress diagonal
    -165.99562580 kbar (off-diagonal 0); final <energy> e_fr_energy -20.23985977 eV, which includes
    PV (VASP writes the enthalpy there); last <scstep> e_fr_energy -20.24695937, e_0_energy -20.24720095;
    parameters IBRION -1, NSW 0, SIGMA 0.2, ENMAX 400 (VASP's name for ENCUT in vasprun)."""
    path = ASE_VASP_TESTDATA / "vasprun_pstress.xml"
    frames = import_frames(path)
    assert len(frames) == 1  # one ionic step
    (atoms,) = frames
    assert atoms.get_chemical_formula() == "C2" and atoms.pbc.all()
    np.testing.assert_allclose(
        atoms.cell[:], [[0, 1.785, 1.785], [1.785, 0, 1.785], [1.785, 1.785, 0]], rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(atoms.positions, [[0, 0, 0], [0.8925, 0.8925, 0.8925]], rtol=0, atol=1e-12)
    kbar = 0.1 * 1e9 / 1.602176634e-19 / 1e30  # eV/A^3 (1 kbar = 0.1 GPa; 2019 SI elementary charge)
    pv = 1.0 * kbar * 11.37482325  # eV, PSTRESS x volume = 7.0996e-3 eV
    res = atoms.calc.results
    # free energy: the enthalpy less PV, which is the last SC step's e_fr_energy (both printed to
    # 1e-8 eV; the unit constant is ASE's CODATA to 1e-8 relative: 1e-7 eV covers both)
    assert res["free_energy"] == pytest.approx(-20.23985977 - pv, abs=1e-7)
    assert res["free_energy"] == pytest.approx(-20.24695937, abs=1e-7)
    # energy (sigma -> 0): free energy + (e_0 - e_fr) of the last SC step = -20.24720095 eV
    assert res["energy"] == pytest.approx(-20.24695937 + (-20.24720095 + 20.24695937), abs=1e-7)
    assert atoms.info["energy_convention"] == "sigma0"
    np.testing.assert_array_equal(res["forces"], np.zeros((2, 3)))
    # ASE convention (positive = tensile, eV/A^3, Voigt xx yy zz yz xz xy) is minus VASP's kbar
    s = 165.99562580 * kbar  # 0.1036063 eV/A^3
    np.testing.assert_allclose(res["stress"], [s, s, s, 0, 0, 0], rtol=1e-8, atol=1e-12)
    assert atoms.info["source_meta"]["NSW"] == 0 and atoms.info["source_meta"]["IBRION"] == -1
    assert atoms.info["source_meta"]["ENCUT"] == 400.0 and atoms.info["source_meta"]["SIGMA"] == 0.2
