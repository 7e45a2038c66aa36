"""Bad input through the real entry points: each gives ONE line naming the structure/field and the fix.

Also: neighbour counting in a strongly sheared triclinic cell thinner than the cutoff is exact
(the model's and the overlap check's neighbour lists against an explicit supercell), where a
minimum-image shortcut is wrong.
"""

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from al_flows.campaign.config import ConfigError, validate_campaign
from al_flows.cli import main
from al_flows.frames.checks import (
    StructureError,
    cell_heights,
    check_structure,
    close_pairs,
    labeller_elements,
)
from al_flows.frames.dataset import Dataset
from al_flows.frames.extxyz import frames_to_bytes
from al_flows.pool_study.pool_import import import_frames
from al_flows.potential.inputs import frame_inputs
from al_flows.potential.model import ModelSettings, TrainingSettings
from al_flows.potential.training import Trainer
from al_flows.structures.initial_data import FileSource, MultilayerSource, build_structures

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "flows" / "demo_cuni_emt.yaml"
POOL = ROOT / "flows" / "cuni_pool_emt.yaml"


def one_line(exc) -> str:
    msg = str(exc.value)
    assert len(msg.splitlines()) == 1, msg
    return msg


def cu_cell(a=3.6) -> Atoms:
    return bulk("Cu", "fcc", a=a, cubic=True)


def labelled(atoms: Atoms, energy=-1.0, forces=None, **info) -> Atoms:
    atoms = atoms.copy()
    f = np.zeros((len(atoms), 3)) if forces is None else forces
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=f)
    atoms.info.update(info)
    return atoms


def naive_min_image_distance(atoms: Atoms, i: int, j: int) -> float:
    """The minimum-image shortcut: round the fractional difference. Exact only for orthogonal cells."""
    f = atoms.get_scaled_positions(wrap=False)
    df = f[j] - f[i]
    df -= np.rint(df)
    return float(np.linalg.norm(df @ atoms.cell.array))


# --------------------------------------------------------------------------- starting structures


def test_file_source_with_overlapping_atoms(tmp_path):
    atoms = cu_cell()
    atoms += Atoms("Cu", positions=[atoms.positions[1] + [0.2, 0.0, 0.0]])
    write(tmp_path / "bad.extxyz", atoms)
    with pytest.raises(StructureError) as exc:
        build_structures([FileSource(path="bad.extxyz")], tmp_path, ["Cu", "Ni"])
    assert one_line(exc) == (
        "initial.structures[0] (structure 'bad-0'): atoms 1 (Cu) and 4 (Cu) are 0.2 A apart, "
        "closer than 1.32 A (0.5 x the sum of their covalent radii); "
        f"fix the coordinates in {tmp_path / 'bad.extxyz'} or leave that frame out with initial.structures[0].index"
    )


def test_file_source_with_element_outside_elements(tmp_path):
    atoms = cu_cell()
    atoms[0].symbol = "Zr"
    write(tmp_path / "zr.extxyz", [cu_cell(), atoms])
    with pytest.raises(StructureError) as exc:
        build_structures([MultilayerSource(size=(1, 1, 1)), FileSource(path="zr.extxyz")], tmp_path, ["Cu", "Ni"])
    msg = one_line(exc)
    assert msg.startswith("initial.structures[1] (structure 'zr-1'): contains Zr, not in elements ['Cu', 'Ni']; ")
    assert msg.endswith(
        "add Zr to elements: in the campaign file (and use a labeller that covers it) or drop the structure"
    )
    # the same file without the bad frame is fine
    ok = build_structures([FileSource(path="zr.extxyz", index="0")], tmp_path, ["Cu", "Ni"])
    assert [a.info["structure_id"] for a in ok] == ["zr-0"]


def test_multilayer_with_a_lattice_constant_in_the_wrong_unit():
    with pytest.raises(StructureError) as exc:
        build_structures([MultilayerSource(size=(2, 2, 2), lattice_constant=1.5)], ".", ["Cu", "Ni"])
    msg = one_line(exc)
    assert msg.startswith("initial.structures[0] (structure 'multilayer-2x2x2-pristine'): atoms ")
    assert "1.06 A apart" in msg  # a / sqrt(2)
    assert msg.endswith("; check initial.structures[0].lattice_constant (Angstrom)")


def test_unreadable_file_source_is_one_line(tmp_path):
    (tmp_path / "junk.extxyz").write_text("this is not\nan xyz file\n")
    with pytest.raises(StructureError) as exc:
        build_structures([FileSource(path="junk.extxyz")], tmp_path, ["Cu"])
    msg = one_line(exc)
    assert msg.startswith(f"initial.structures[0].path: cannot read {tmp_path / 'junk.extxyz'} (")
    assert msg.endswith("check the file, its format and initial.structures[0].index")


@pytest.mark.parametrize(
    "make,expected",
    [
        (
            lambda: Atoms("Cu2", positions=[[0, 0, 0], [np.nan, 1, 1]], cell=[4, 4, 4], pbc=True),
            "s: non-finite position(s) (NaN or inf) of atom(s) [1]; fix the coordinates or drop the structure",
        ),
        (
            lambda: Atoms("Cu", cell=[[3, 0, 0], [0, 3, 0], [3, 3, 0]], pbc=True),
            (
                "s: the cell has zero volume (cell vectors [[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [3.0, 3.0, 0.0]] are "
                "linearly dependent); give three independent cell vectors"
            ),
        ),
        (
            lambda: Atoms("Cu", cell=[3, 3, 0], pbc=True),
            (
                "s: periodic along c but the cell vector c is zero (pbc [True, True, True]); give the full cell "
                "(extxyz: Lattice=\"...\"; POSCAR: lattice vectors) or make that direction non-periodic"
            ),
        ),
        (
            lambda: Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 2.5]], cell=[3, 3, 0], pbc=[True, True, False]),
            (
                "s: partly periodic (pbc [True, True, False]) with a degenerate cell (zero volume); "
                "the neighbour list needs a cell vector along the non-periodic direction c: add vacuum there, "
                "e.g. atoms.center(vacuum=10, axis=...)"
            ),
        ),
        (
            lambda: Atoms("H", cell=[3, 3, 0.2], pbc=True),
            (
                "s: the cell is only 0.2 A high along periodic direction c (minimum 0.5 A; heights [3.0, 3.0, 0.2] A): "
                "wrong length unit, a collapsed cell, or a badly skewed basis: "
                "fix the cell or Niggli-reduce it (ase.build.niggli_reduce)"
            ),
        ),
        (
            lambda: Atoms("Cu", cell=[3, 3, 1.0], pbc=True),
            (
                "s: atom 0 (Cu) is 1 A from its own periodic image [0, 0, 1], closer than 1.32 A (0.5 x the sum of "
                "their covalent radii); fix the coordinates (duplicated atom? fractional coordinates read as "
                "Cartesian? cell in another unit?) or drop the structure"
            ),
        ),
        (lambda: Atoms(cell=[3, 3, 3], pbc=True), "s: no atoms; drop the empty structure"),
    ],
    ids=["nan-position", "zero-volume", "zero-vector", "slab-without-c", "thin-cell", "own-image", "empty"],
)
def test_structure_checks_one_line_each(make, expected):
    with pytest.raises(StructureError) as exc:
        check_structure(make(), "s")
    assert one_line(exc) == expected


def test_fine_structures_pass():
    for atoms in (
        cu_cell(),
        bulk("Cu", "fcc", a=3.6),
        Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]]),
    ):  # cluster without cell
        check_structure(atoms, "s", ["Cu"])
    slab = cu_cell().repeat((1, 1, 2))
    slab.center(vacuum=5.0, axis=2)
    slab.pbc = [True, True, False]
    check_structure(slab, "s", ["Cu"])


# --------------------------------------------------------------------------- sheared triclinic cells


def sheared_cell() -> Atoms:
    """A 4-atom Cu cell sheared so strongly that one height (0.88 A) is far below the cutoff."""
    atoms = cu_cell()
    atoms.rattle(0.05, seed=3)
    a = 3.6
    atoms.set_cell([[a, 0, 0], [2.7 * a, a, 0], [-1.3 * a, 0.6 * a, a]], scale_atoms=True)
    return atoms


def supercell_distances(atoms: Atoms, cutoff: float) -> list[np.ndarray]:
    """Per atom, the sorted distances (> 0) to every atom of an explicit (2N+1)^3 supercell around
    the cell within ``cutoff``, N large enough for every image within the cutoff."""
    cell = atoms.cell.array
    n = math.ceil(cutoff / cell_heights(cell).min()) + 1
    shifts = np.array(list(itertools.product(range(-n, n + 1), repeat=3))) @ cell
    images = (atoms.positions[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
    out = []
    for p in atoms.positions:
        d = np.linalg.norm(images - p, axis=1)
        out.append(np.sort(d[(d > 1e-9) & (d < cutoff)]))
    return out


def test_model_neighbour_list_exact_in_sheared_cell_thinner_than_cutoff():
    atoms = sheared_cell()
    cutoff = 5.0
    heights = cell_heights(atoms.cell)
    assert heights.min() == pytest.approx(0.8779, abs=1e-3) and heights.min() < cutoff / 2  # min-image would be wrong
    inputs = frame_inputs(atoms, cutoff)
    i = inputs["_idx_i"].numpy()
    r = inputs["_positions"].numpy().astype(float)
    vec = r[inputs["_idx_j"].numpy()] - r[i] + inputs["_offsets"].numpy()
    d = np.linalg.norm(vec, axis=1)
    brute = supercell_distances(atoms, cutoff)
    for k in range(len(atoms)):
        assert len(d[i == k]) == len(brute[k]) > len(atoms)  # many images of each atom within the cutoff
        np.testing.assert_allclose(np.sort(d[i == k]), brute[k], atol=1e-4)
    # the same pairs, halved, from the overlap check's neighbour list (threshold 5.0 A for Cu-Cu)
    pairs = close_pairs(atoms, fraction=cutoff / (2 * 1.32))
    assert 2 * len(pairs) == sum(len(b) for b in brute)


def test_overlap_through_a_sheared_image_is_caught_where_min_image_misses_it():
    a = 3.6
    cell = np.array([[a, 0, 0], [2.7 * a, a, 0], [0, 0, a]])
    p0 = np.array([0.1, 0.1, 0.1])
    # atom 1 is 0.8 A from atom 0 in the image one a2 away (a2 = (9.72, 3.6, 0))
    atoms = Atoms("Cu2", positions=[p0, p0 + [0, 0.8, 0] + cell[1]], cell=cell, pbc=True)
    assert naive_min_image_distance(atoms, 0, 1) > 3.6  # the shortcut sees no problem
    pairs = close_pairs(atoms)
    assert (
        len(pairs) == 1 and pairs[0][:2] == (0, 1) and pairs[0][2] == pytest.approx(0.8) and pairs[0][4] == (0, -1, 0)
    )
    with pytest.raises(StructureError) as exc:
        check_structure(atoms, "s")
    msg = one_line(exc)
    assert msg.startswith(
        "s: atoms 0 (Cu) and 1 (Cu) are 0.8 A apart across the periodic boundary (image [0, -1, 0]), closer than 1.32 A"
    )
    atoms.wrap()  # the same structure, wrapped into the cell: same check, same pair
    assert naive_min_image_distance(atoms, 0, 1) > 3.6
    assert close_pairs(atoms)[0][2] == pytest.approx(0.8)


# --------------------------------------------------------------------------- configuration


def demo_dict():
    return yaml.safe_load(DEMO.read_text())


def test_campaign_with_element_emt_does_not_cover():
    d = demo_dict()
    d["elements"] = ["Cu", "Ni", "Zr"]
    with pytest.raises(ConfigError) as exc:
        validate_campaign(d, source="c.yaml")
    assert one_line(exc) == (
        "c.yaml: labeller.calculator: EMT has no parameters for element 'Zr' (it covers Ag, Al, Au, C, Cu, H, N, Ni, "
        "O, Pd, Pt); remove 'Zr' from elements or pick another labeller "
        "(labeller.calculator: an ASE calculator import path such as 'pkg.module.Class', or labeller kind: vasp)"
    )
    d["labeller"] = {"kind": "ase", "calculator": "ase.calculators.emt.EMT"}
    with pytest.raises(ConfigError, match="labeller.calculator: EMT has no parameters for element 'Zr'"):
        validate_campaign(d, source="c.yaml")
    d["labeller"] = {"kind": "ase", "calculator": "lj"}  # coverage unknown: not checked
    d["test_set"] = {"kind": "perturbed"}
    assert validate_campaign(d).elements == ["Cu", "Ni", "Zr"]


def test_autotest_elements_and_reference_checked():
    d = demo_dict()
    d["autotest"] = {"elements": ["Cu", "Al"]}
    with pytest.raises(ConfigError) as exc:
        validate_campaign(d, source="c.yaml")
    assert one_line(exc) == (
        "c.yaml: autotest.elements: ['Al'] not in elements ['Cu', 'Ni']; the potential only knows the campaign's "
        "elements: remove them from autotest.elements or add them to elements"
    )
    d = demo_dict()
    d.update(elements=["Cu", "Ni", "Zr"], labeller={"kind": "ase", "calculator": "lj"}, autotest={"reference": "emt"})
    with pytest.raises(ConfigError) as exc:
        validate_campaign(d, source="c.yaml")
    assert one_line(exc).startswith("c.yaml: autotest.reference: EMT has no parameters for element 'Zr' (")


def test_pool_study_labeller_checked_only_where_it_runs():
    d = yaml.safe_load(POOL.read_text())
    d["elements"] = ["Cu", "Ni", "Zr"]
    assert any(src["kind"] == "md" for src in d["pool"]["sources"])
    with pytest.raises(
        ConfigError, match=r"^cuni_pool_emt.yaml: labeller.calculator: EMT has no parameters for element 'Zr'"
    ):
        validate_campaign(d, source="cuni_pool_emt.yaml")
    d["pool"]["sources"] = [{"kind": "import", "path": "runs"}]
    d.pop("validation", None)
    assert validate_campaign(d).elements == ["Cu", "Ni", "Zr"]  # the labeller never runs


def test_emt_coverage_is_ase_parameters():
    from ase.calculators.emt import parameters

    assert (
        labeller_elements("emt")
        == frozenset(parameters)
        == {"Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt", "H", "C", "N", "O"}
    )
    assert labeller_elements("ase.calculators.lj.LennardJones") is None


def test_cli_validate_reports_a_bad_starting_structure(tmp_path, capsys):
    atoms = cu_cell()
    atoms.positions[2] = atoms.positions[0] + [0.0, 0.0, 0.1]
    write(tmp_path / "start.extxyz", atoms)
    d = demo_dict()
    d["initial"]["structures"] = [{"kind": "file", "path": "start.extxyz"}]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(d))
    assert main(["validate", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(
        f"error: {tmp_path / 'c.yaml'}: initial.structures[0] (structure 'start-0'): atoms 0 (Cu) and 2 (Cu) are "
        "0.1 A apart"
    )
    write(tmp_path / "start.extxyz", cu_cell())
    assert main(["validate", str(tmp_path / "c.yaml")]) == 0
    assert "structures: 1 starting structure(s) from file and multilayer sources checked" in capsys.readouterr().out


# --------------------------------------------------------------------------- pool import


def test_pool_import_frame_with_nan_forces(tmp_path):
    good = labelled(cu_cell(), forces=np.full((4, 3), 0.1))
    bad = labelled(cu_cell(), forces=np.array([[0.1, 0.1, 0.1], [np.nan, 0, 0], [0, 0, 0], [0, 0, 0]]))
    bad.positions[0] += 0.01
    path = tmp_path / "pool.extxyz"
    path.write_bytes(frames_to_bytes([good, bad]))
    with pytest.raises(ValueError) as exc:
        import_frames(path)
    assert one_line(exc) == f"{path}: frame 1: non-finite forces; drop this step with index=/stride or fix the file"
    assert len(import_frames(path, index="0")) == 1


def test_pool_import_frame_with_overlapping_atoms(tmp_path):
    bad = cu_cell()
    bad.positions[3] = bad.positions[1] + [0.05, 0.0, 0.0]
    path = tmp_path / "pool.extxyz"
    path.write_bytes(frames_to_bytes([labelled(cu_cell()), labelled(bad)]))
    with pytest.raises(StructureError) as exc:
        import_frames(path)
    assert one_line(exc) == (
        f"{path}: frame 1: atoms 1 (Cu) and 3 (Cu) are 0.05 A apart, closer than 1.32 A (0.5 x the sum of their "
        "covalent radii); fix the file or leave this step out (index=/stride)"
    )


def test_pool_import_mixed_periodicity_in_one_file(tmp_path):
    cluster = Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]])
    path = tmp_path / "pool.extxyz"
    path.write_bytes(frames_to_bytes([labelled(cu_cell()), labelled(cluster, forces=np.zeros((2, 3)))]))
    with pytest.raises(StructureError) as exc:
        import_frames(path)
    msg = one_line(exc)
    assert msg.startswith(f"{path}: frame 1 (")
    assert "has pbc [False, False, False] but frame 0 (" in msg
    assert msg.endswith(
        "has [True, True, True]; mixed periodicity: give every frame its cell and pbc "
        "(extxyz: Lattice=\"...\" pbc=\"T T T\") or drop the odd frames"
    )


# --------------------------------------------------------------------------- datasets and training

SMALL = ModelSettings(n_atom_basis=8, n_interactions=1, n_rbf=8, cutoff=4.0)


def test_trainer_rejects_an_empty_dataset():
    with pytest.raises(StructureError) as exc:
        Trainer([], SMALL, TrainingSettings(epochs=1), seed=0, elements=["Cu"])
    assert one_line(exc) == (
        "training frames: no frames to train on; label structures first (initial: n_rattled / label_structures) "
        "or check that the pool sources hold labelled frames"
    )


@pytest.mark.parametrize(
    "make,expected",
    [
        (
            lambda: cu_cell(),
            (
                "training frames: frame 1 (structure 'x1'): missing label(s) ['energy', 'forces']; "
                "label it (energy and forces) before training on it or adding it to a dataset"
            ),
        ),
        (
            lambda: labelled(cu_cell(), energy=float("nan")),
            "training frames: frame 1 (structure 'x1'): non-finite energy (nan); relabel it or drop it",
        ),
        (
            lambda: labelled(cu_cell(), forces=np.zeros((3, 3))),
            "training frames: frame 1 (structure 'x1'): forces have shape (3, 3), expected (4, 3) for its 4 atoms; "
            "relabel it or drop it",
        ),
        (
            lambda: labelled(
                Atoms("CuZr", positions=[[0, 0, 0], [2.5, 0, 0]], cell=[6, 6, 6], pbc=True), forces=np.zeros((2, 3))
            ),
            "training frames: frame 1 (structure 'x1'): contains Zr, not in elements ['Cu', 'Ni']; add it to elements: "
            "in the campaign file or drop those frames",
        ),
        (
            lambda: labelled(Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]]), forces=np.zeros((2, 3))),
            (
                "training frames: frame 1 (structure 'x1') has pbc [False, False, False] but frame 0 (structure 'x0') "
                "has [True, True, True]; mixed periodicity: give every frame its cell and pbc "
                "(extxyz: Lattice=\"...\" pbc=\"T T T\") or drop the odd frames"
            ),
        ),
    ],
    ids=["no-labels", "nan-energy", "forces-shape", "element", "mixed-pbc"],
)
def test_trainer_rejects_bad_frames(make, expected):
    frames = [labelled(cu_cell(), structure_id="x0"), make()]
    frames[1].info["structure_id"] = "x1"
    with pytest.raises(StructureError) as exc:
        Trainer(frames, SMALL, TrainingSettings(epochs=1), seed=0, elements=["Cu", "Ni"])
    assert one_line(exc) == expected


def test_trainer_accepts_good_frames():
    frames = [labelled(cu_cell()), labelled(sheared_cell(), energy=-2.0)]
    trainer = Trainer(frames, SMALL, TrainingSettings(epochs=1), seed=0, elements=["Cu", "Ni"])
    assert trainer.zs == [28, 29] and trainer.energies_np.tolist() == [-1.0, -2.0]


def test_dataset_rejects_nan_positions_and_labels():
    bad = labelled(cu_cell())
    bad.positions[1, 2] = np.nan
    with pytest.raises(StructureError) as exc:
        Dataset([labelled(cu_cell()), bad])
    assert (
        one_line(exc)
        == "frame 1: non-finite position(s) (NaN or inf) of atom(s) [1]; fix the coordinates or drop the structure"
    )
    nan_forces = labelled(cu_cell(), forces=np.full((4, 3), np.inf))
    with pytest.raises(StructureError) as exc:
        Dataset().add([nan_forces])
    assert one_line(exc).endswith(": non-finite forces on atom(s) [0, 1, 2, 3]; relabel it or drop it")
    assert one_line(exc).startswith("frame 0 (frame_id ")


def test_ensemble_rejects_an_element_it_was_not_trained_for():
    from al_flows.potential.ensemble import Ensemble
    from al_flows.potential.model import build_member

    ensemble = Ensemble([build_member(SMALL, ["Cu", "Ni"], seed) for seed in (0, 1)], SMALL)
    atoms = cu_cell()
    atoms[2].symbol = "Al"
    atoms.info["structure_id"] = "explored-7"
    with pytest.raises(StructureError) as exc:
        ensemble.predict([cu_cell(), atoms])
    assert one_line(exc) == (
        "frame 1 (structure 'explored-7'): elements ['Al'] unknown to the ensemble (trained on ['Ni', 'Cu']); "
        "add them to elements: in the campaign file (the members are trained for those only) or drop those frames"
    )


def test_a_perturbed_test_set_without_perturbation_is_refused():
    """rattle_sigma and strain_max both 0 make every perturbed test frame a starting structure (training data)."""
    d = demo_dict()
    d["test_set"] = {"kind": "perturbed", "rattle_sigma": 0, "strain_max": 0}
    with pytest.raises(ConfigError) as exc:
        validate_campaign(d, source="c.yaml")
    assert one_line(exc).startswith("c.yaml: test_set: with kind perturbed, rattle_sigma and strain_max are both 0")
    assert "set rattle_sigma > 0" in one_line(exc)
    d["test_set"]["strain_max"] = 0.01  # strained copies differ from the starting structures
    assert validate_campaign(d).test_set.strain_max == 0.01
