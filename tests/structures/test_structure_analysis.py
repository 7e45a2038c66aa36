"""Local structure analysis: CNA, Cu-Ni intermixing, vacancy detection."""

import dataclasses

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.geometry import find_mic

from al_flows.structures.analysis import (
    Vacancy,
    _cna_triplets,
    common_neighbour_analysis,
    find_vacancies,
    intermixed_fraction,
    intermixing,
    structure_fractions,
    unlike_bonds,
)
from al_flows.structures.multilayer import cuni_multilayer

A = 3.58


def _fcc():
    return bulk("Cu", "fcc", a=3.6, cubic=True).repeat(3)


def _stack_111(sequence, d=2.55, m=4):
    """Close-packed layers stacked along z; sequence of 'A'/'B'/'C' positions (periodic)."""
    a1, a2 = np.array([d, 0, 0]), np.array([d / 2, d * np.sqrt(3) / 2, 0])
    h = d * np.sqrt(2 / 3)
    shift = {"A": 0, "B": 1, "C": 2}
    pos = []
    for layer, s in enumerate(sequence):
        off = shift[s] * (a1 + a2) / 3
        for u in range(m):
            for v in range(m):
                pos.append(u * a1 + v * a2 + off + [0, 0, layer * h])
    cell = [m * a1, m * a2, [0, 0, len(sequence) * h]]
    return Atoms("Cu" * len(pos), positions=pos, cell=cell, pbc=True)


def test_perfect_fcc_all_fcc():
    atoms = _fcc()
    labels = common_neighbour_analysis(atoms)
    assert labels.shape == (len(atoms),)
    assert set(labels) == {"fcc"}
    assert structure_fractions(atoms) == {
        "fcc": 1.0,
        "hcp": 0.0,
        "bcc": 0.0,
        "other": 0.0,
    }


def test_fcc_triplets_and_longest_chain():
    atoms = _fcc()
    from matscipy.neighbours import neighbour_list

    i, vec = neighbour_list("iD", atoms, 3.0)
    trip = _cna_triplets(vec[i == 0][None], 3.0)
    assert trip.shape == (1, 12, 3)
    assert (trip == [4, 2, 1]).all()


@pytest.mark.parametrize(
    "atoms",
    [
        bulk("Cu", "fcc", a=3.6),  # one-atom primitive cell: every neighbour is an image of itself
        bulk("Cu", "fcc", a=3.6).repeat((3, 3, 3)),  # small triclinic (rhombohedral) cell
        bulk("Ni", "fcc", a=3.52, cubic=True),  # 4 atoms, cutoff > half the cell width
    ],
)
def test_fcc_small_and_triclinic_cells(atoms):
    assert set(common_neighbour_analysis(atoms)) == {"fcc"}


def test_ideal_hcp_all_hcp():
    d = 2.55
    atoms = bulk("Cu", "hcp", a=d, c=d * np.sqrt(8 / 3)).repeat((4, 4, 3))
    assert set(common_neighbour_analysis(atoms)) == {"hcp"}
    assert structure_fractions(atoms)["hcp"] == 1.0


def test_bcc():
    atoms = bulk("Fe", "bcc", a=2.87, cubic=True).repeat(3)
    assert set(common_neighbour_analysis(atoms)) == {"bcc"}
    # the default cutoff leaves only ~4.5 % margin above the 2nd bcc shell; for thermal
    # noise pass a cutoff halfway between the 2nd (a) and 3rd (sqrt(2) a) shells
    rattled = atoms.copy()
    rattled.rattle(0.03, seed=1)
    assert structure_fractions(rattled, cutoff=0.5 * (1 + np.sqrt(2)) * 2.87)["bcc"] == 1.0


def test_111_stack_perfect_and_intrinsic_stacking_fault():
    perfect = _stack_111("ABC" * 3)
    assert set(common_neighbour_analysis(perfect)) == {"fcc"}
    # 11 layers: ABCABC|BCABC -> one reversed stacking step (intrinsic fault, "C" missing);
    # the two layers bordering the reversed step (indices 5 and 6) are hcp, the rest fcc.
    seq = "ABCABCBCABC"
    assert len(seq) == 11
    atoms = _stack_111(seq, m=4)
    labels = common_neighbour_analysis(atoms)
    layer = np.repeat(np.arange(len(seq)), 16)
    hcp_layers = sorted(set(layer[labels == "hcp"]))
    assert hcp_layers == [5, 6]
    assert np.count_nonzero(labels == "hcp") == 32
    assert np.count_nonzero(labels == "fcc") == 9 * 16
    # plain hcp stacking ABAB...
    assert set(common_neighbour_analysis(_stack_111("AB" * 3))) == {"hcp"}


def test_sheared_triclinic_and_rattled_fcc_stay_fcc():
    atoms = _fcc()
    shear = np.eye(3)
    shear[2, 0] = 0.02  # z-row gains an x component: triclinic cell, 2 % shear
    atoms.set_cell(atoms.cell[:] @ shear, scale_atoms=True)
    assert not np.allclose(atoms.cell.angles(), 90)
    assert set(common_neighbour_analysis(atoms)) == {"fcc"}

    rattled = _fcc()
    rattled.rattle(0.05, seed=0)
    assert structure_fractions(rattled)["fcc"] == 1.0


def test_random_gas_is_other():
    rng = np.random.default_rng(0)
    n = 200
    box = (n * 11.8) ** (1 / 3)
    atoms = Atoms("Cu" * n, positions=rng.uniform(0, box, (n, 3)), cell=[box] * 3, pbc=True)
    assert structure_fractions(atoms)["other"] > 0.95


def test_explicit_cutoff_and_multilayer_fcc():
    atoms = cuni_multilayer((2, 2, 4), a=A)
    assert set(common_neighbour_analysis(atoms, cutoff=3.1)) == {"fcc"}
    # a too-small cutoff finds no neighbours at all
    assert set(common_neighbour_analysis(atoms, cutoff=2.0)) == {"other"}


def test_cna_500_rattled_atoms():
    """500 rattled fcc atoms (more than one vectorised block of _CHUNK): all fcc; one vacancy makes
    its 12 neighbours 'other' and nothing else. (Timing: benchmarks/cna.py.)"""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(5)  # 500 atoms
    atoms.rattle(0.02, seed=2)
    assert (common_neighbour_analysis(atoms) == "fcc").all()
    d = atoms.get_distances(123, range(len(atoms)), mic=True)
    shell = set(np.flatnonzero((d > 0) & (d < 3.1)).tolist())
    assert len(shell) == 12
    del atoms[123]
    labels = common_neighbour_analysis(atoms)
    other = {k + (k >= 123) for k in np.flatnonzero(labels != "fcc").tolist()}  # indices before the deletion
    assert other == shell and set(labels) == {"fcc", "other"}


# --- Cu-Ni intermixing -------------------------------------------------------------


def test_unlike_bonds_pristine_multilayer_exact():
    nx, ny, nz = 2, 2, 4
    atoms = cuni_multilayer((nx, ny, nz), a=A)
    n = len(atoms)
    per_plane = 2 * nx * ny
    # 2 interfaces per periodic cell (Cu3|Ni4 and Ni7|Cu0); each atom of the Cu plane at an
    # interface has 4 nearest neighbours in the adjacent Ni plane; every bond counted once.
    expected_unlike = 2 * per_plane * 4
    res = unlike_bonds(atoms)
    assert res["unlike"] == expected_unlike == 64
    assert res["total"] == 12 * n // 2 == 384
    assert res["fraction"] == pytest.approx(64 / 384)
    assert intermixing(atoms, atoms) == 0.0


def test_swap_far_from_interface_adds_24_unlike_bonds():
    nx, ny, nz = 2, 2, 4
    ref = cuni_multilayer((nx, ny, nz), a=A)
    atoms = ref.copy()
    plane = atoms.arrays["plane"]
    cu = int(np.flatnonzero(plane == 1)[0])  # Cu plane 1: neighbours in planes 0-2, all Cu
    ni = int(np.flatnonzero(plane == 5)[0])  # Ni plane 5: neighbours in planes 4-6, all Ni
    assert atoms.get_distance(cu, ni, mic=True) > 3.1
    atoms.symbols[cu], atoms.symbols[ni] = "Ni", "Cu"
    # each swapped atom now has 12 unlike neighbours instead of 0
    assert unlike_bonds(atoms)["unlike"] == 64 + 24
    assert unlike_bonds(atoms)["total"] == 384
    assert intermixing(atoms, ref) == pytest.approx(24 / len(atoms))


def _swap(atoms, a, b):
    atoms.symbols[a], atoms.symbols[b] = atoms.symbols[b], atoms.symbols[a]


def test_intermixed_fraction_abrupt_and_deep_swap():
    atoms = cuni_multilayer((3, 3, 6), a=A)  # planes 0-5 Cu, 6-11 Ni, 18 atoms each: 216 atoms
    assert intermixed_fraction(atoms) == 0.0  # interface atoms have 4 unlike neighbours
    # min_unlike 1: the four interface planes (5|6 and 11|0)
    assert intermixed_fraction(atoms, min_unlike=1) == 72 / 216
    plane = atoms.arrays["plane"]
    _swap(atoms, int(np.flatnonzero(plane == 2)[0]), int(np.flatnonzero(plane == 8)[0]))
    # the two swapped atoms have 12 unlike neighbours; their 2 x 12 neighbours 1 each
    assert intermixed_fraction(atoms) == 2 / 216
    assert intermixed_fraction(atoms, min_unlike=1) == (72 + 2 + 24) / 216
    with pytest.raises(ValueError, match="min_unlike"):
        intermixed_fraction(atoms, min_unlike=0)


def test_intermixed_fraction_of_a_swap_across_the_interface():
    atoms = cuni_multilayer((3, 3, 6), a=A)
    plane = atoms.arrays["plane"]
    s5 = int(np.flatnonzero(plane == 5)[4])  # top Cu plane
    s6 = int(np.argmin([np.inf if plane[k] != 6 else atoms.get_distance(s5, k, mic=True) for k in range(len(atoms))]))
    assert atoms.get_distance(s5, s6, mic=True) == pytest.approx(A / np.sqrt(2))
    _swap(atoms, s5, s6)
    # by hand: the swapped pair 9 unlike neighbours each; of the Cu in plane 5 next to s5, the two
    # not next to s6 gain one (4 -> 5); of the Ni in plane 6 next to s6, the two not next to s5
    # gain one (4 -> 5); every other atom keeps at most 4
    assert intermixed_fraction(atoms) == 6 / 216
    assert intermixed_fraction(atoms, min_unlike=9) == 2 / 216
    assert intermixed_fraction(atoms, min_unlike=10) == 0.0


# --- vacancies ---------------------------------------------------------------------


def _removed_sites(pristine, defect):
    """Positions of pristine sites with no atom in ``defect``."""
    d = np.array([find_mic(defect.positions - p, defect.cell, defect.pbc)[1].min() for p in pristine.positions])
    return pristine.positions[d > 0.1]


def _assert_same_site(pos, site, cell):
    _, dist = find_mic(np.asarray(pos) - site, cell, True)
    assert dist < 1e-6


def test_pristine_has_no_vacancies():
    assert find_vacancies(cuni_multilayer((2, 2, 4), a=A)) == []
    assert find_vacancies(_fcc()) == []


@pytest.mark.parametrize("variant", ["VNi(N1)", "VNi(N3)", "VCu(C1)"])
def test_single_vacancy(variant):
    size = (3, 3, 4)
    pristine = cuni_multilayer(size, a=A)
    atoms = cuni_multilayer(size, a=A, variant=variant)
    (site,) = _removed_sites(pristine, atoms)
    vacancies = find_vacancies(atoms)
    assert len(vacancies) == 1
    (vac,) = vacancies
    assert isinstance(vac, Vacancy)
    assert len(vac.atoms) == 12
    assert vac.missing_bonds == 12
    assert vac.n_vacancies == 1
    # 4 neighbours in each of its own and the two adjacent planes; N1 / C1 touch the other layer
    assert (
        vac.elements == {"VNi(N1)": {"Cu": 4, "Ni": 8}, "VNi(N3)": {"Ni": 12}, "VCu(C1)": {"Cu": 8, "Ni": 4}}[variant]
    )
    np.testing.assert_allclose(vac.position, site, atol=1e-6)
    assert vac.fractional_z == pytest.approx(site[2] / atoms.cell[2, 2])
    with pytest.raises(dataclasses.FrozenInstanceError):
        vac.n_vacancies = 2  # frozen


@pytest.mark.parametrize("variant", ["2VNi(N1)", "2VCu(C1)"])
def test_divacancy_is_one_cluster(variant):
    size = (3, 3, 4)
    pristine = cuni_multilayer(size, a=A)
    atoms = cuni_multilayer(size, a=A, variant=variant)
    sites = _removed_sites(pristine, atoms)
    assert len(sites) == 2
    (vac,) = find_vacancies(atoms)
    assert vac.missing_bonds == 22
    assert vac.n_vacancies == 2
    assert len(vac.atoms) == 18  # 11 + 11 neighbours, 4 shared
    # its neighbourhood by hand: 6 sites in its own plane, 6 in each adjacent plane; at the interface
    # one adjacent plane is of the other element (Sprueill et al.: 12 Ni and 6 Cu for 2VNi(N1))
    assert vac.elements == {"2VNi(N1)": {"Cu": 6, "Ni": 12}, "2VCu(C1)": {"Cu": 12, "Ni": 6}}[variant]
    _assert_same_site(vac.position, sites.mean(axis=0), atoms.cell)


def test_two_distant_vacancies_are_two_clusters():
    atoms = cuni_multilayer((4, 4, 4), a=A)
    targets = [np.array([A, A, A]), np.array([3 * A, 3 * A, 3 * A])]
    remove = [int(np.argmin(np.linalg.norm(atoms.positions - t, axis=1))) for t in targets]
    sites = atoms.positions[remove]
    np.testing.assert_allclose(sites, targets)
    del atoms[remove]
    vacancies = find_vacancies(atoms)
    assert len(vacancies) == 2
    assert [v.n_vacancies for v in vacancies] == [1, 1]
    # (A, A, A) is in Cu plane 2 (nz 4): all Cu; (3A, 3A, 3A) in Ni plane 6: all Ni
    assert [v.elements for v in vacancies] == [{"Cu": 12}, {"Ni": 12}]
    assert [len(v.atoms) for v in vacancies] == [12, 12]
    found = sorted(tuple(v.position) for v in vacancies)
    np.testing.assert_allclose(found, sites, atol=1e-6)


def test_vacancy_at_periodic_boundary_is_wrapped():
    atoms = cuni_multilayer((3, 3, 3), a=A)
    corner = int(np.argmin(np.linalg.norm(atoms.positions, axis=1)))
    assert np.allclose(atoms.positions[corner], 0.0)
    del atoms[corner]
    (vac,) = find_vacancies(atoms)
    assert vac.n_vacancies == 1 and len(vac.atoms) == 12
    # the neighbours straddle all three periodic boundaries; the centroid is the corner site
    np.testing.assert_allclose(vac.position, [0.0, 0.0, 0.0], atol=1e-6)
    assert vac.fractional_z == pytest.approx(0.0, abs=1e-9)

    # in a sheared (triclinic) cell the wrapped position is still the removed site
    sheared = cuni_multilayer((3, 3, 3), a=A)
    sheared.set_cell(sheared.cell[:] + [[0, 0, 0], [0, 0, 0], [0.03 * 3 * A, 0, 0]], scale_atoms=True)
    site = sheared.positions[5].copy()
    del sheared[5]
    (vac,) = find_vacancies(sheared, cutoff=3.1)
    _assert_same_site(vac.position, site, sheared.cell)
    frac = sheared.cell.scaled_positions(np.array([vac.position]))[0]
    assert np.all((frac > -1e-9) & (frac < 1))
