"""Initial-data generators: ANI-Al random cells (METHODS B) and DP-GEN initial sets (METHODS C)."""

import math

import numpy as np
import pytest
from ase.data import atomic_masses, atomic_numbers
from ase.neighborlist import neighbor_list
from pydantic import ValidationError

from al_flows.frames.extxyz import frames_from_bytes, frames_to_bytes
from al_flows.frames.ids import frame_id
from al_flows.structures.displaced_halves import displaced_halves, oriented_cell
from al_flows.structures.generators import (
    AMU_PER_A3,
    DPGEN_LATTICES,
    LATTICES,
    DPGenInitSettings,
    RandomCellSettings,
    dpgen_initial_sets,
    lattice_supercell,
    random_cells,
    reference_nn_distance,
)


def min_distance(atoms, cutoff=4.0):
    d = neighbor_list("d", atoms, cutoff)
    return float(d.min()) if d.size else math.inf


# --------------------------------------------------------------------------- random cells


def test_random_cell_settings_defaults_and_validation():
    s = RandomCellSettings()
    assert (s.n_cells, s.edge_min, s.edge_max, s.density_min, s.density_max, s.min_distance) == (
        400,
        10.5,
        17.0,
        1.80,
        4.05,
        1.8,
    )
    assert s.composition is None and s.max_atoms is None
    assert RandomCellSettings.from_dict(s.as_dict()) == s
    for bad in ({"edge_min": 18.0}, {"density_min": 5.0}, {"min_distance": 6.0}, {"n_cells": 0}, {"typo": 1}):
        with pytest.raises(ValidationError):
            RandomCellSettings(**bad)


@pytest.fixture(scope="module")
def al_cells():
    return random_cells(RandomCellSettings(n_cells=25), ["Al"], seed=11)


def test_random_cells_geometry_density_and_provenance(al_cells):
    s = RandomCellSettings()
    m_al = atomic_masses[atomic_numbers["Al"]]
    assert len(al_cells) == 25
    for k, atoms in enumerate(al_cells):
        cell = atoms.cell[:]
        assert np.all(atoms.pbc)
        np.testing.assert_array_equal(cell, np.diag(np.diag(cell)))  # orthorhombic, axis-aligned
        edges = np.diag(cell)
        assert np.all((edges >= s.edge_min) & (edges <= s.edge_max))
        frac = atoms.get_scaled_positions(wrap=False)
        assert np.all((frac >= 0) & (frac < 1))
        volume = atoms.get_volume()
        rho = atoms.get_masses().sum() / volume / AMU_PER_A3
        target = atoms.info["target_density"]
        assert s.density_min <= target <= s.density_max
        # n = round(target * V / m): realised density within half an atom's mass of the target
        assert abs(rho - target) <= 0.5 * m_al / volume / AMU_PER_A3 + 1e-9
        assert len(atoms) == round(target * volume * AMU_PER_A3 / m_al)
        assert atoms.info["density"] == pytest.approx(rho)
        assert min_distance(atoms) >= s.min_distance - 1e-9
        info = atoms.info
        assert (info["explorer"], info["parent_id"], info["round"], info["structure_id"]) == (
            "random_cell",
            "",
            -1,
            f"random-{k}",
        )
        assert info["frame_id"] == frame_id(atoms)
    assert len({a.info["frame_id"] for a in al_cells}) == len(al_cells)
    densities = [a.info["target_density"] for a in al_cells]
    assert max(densities) - min(densities) > 1.0  # the range is actually sampled


def test_min_distance_check_is_not_vacuous():
    """Without rejection, dense random cells do have pairs below 1.8 A; with a larger
    min_distance the constraint still holds."""
    loose = random_cells(RandomCellSettings(n_cells=3, min_distance=0.0, density_min=4.0), ["Al"], seed=1)
    assert min(min_distance(a) for a in loose) < 1.8
    strict = random_cells(RandomCellSettings(n_cells=3, min_distance=2.3, density_max=2.5), ["Al"], seed=1)
    assert min(min_distance(a) for a in strict) >= 2.3 - 1e-9


def test_random_cells_composition_weights():
    s = RandomCellSettings(n_cells=20, edge_max=13.0, composition={"Al": 0.8, "Cu": 0.2})
    cells = random_cells(s, ["Al", "Cu"], seed=5)
    symbols = np.concatenate([a.get_chemical_symbols() for a in cells])
    assert symbols.size > 1000
    assert np.mean(symbols == "Cu") == pytest.approx(0.2, abs=0.03)
    equal = random_cells(RandomCellSettings(n_cells=10, edge_max=13.0), ["Al", "Cu"], seed=5)
    symbols = np.concatenate([a.get_chemical_symbols() for a in equal])
    assert np.mean(symbols == "Cu") == pytest.approx(0.5, abs=0.04)
    for atoms in cells:
        assert min_distance(atoms) >= 1.8 - 1e-9
    with pytest.raises(ValueError, match="composition keys"):
        random_cells(s, ["Al", "Ni"], seed=5)


def test_random_cells_seeded():
    s = RandomCellSettings(n_cells=3, edge_max=12.0)
    a, b, c = (random_cells(s, ["Al"], seed) for seed in (7, 7, 8))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.positions, y.positions)
        np.testing.assert_array_equal(x.cell[:], y.cell[:])
        assert x.info["frame_id"] == y.info["frame_id"]
    assert [x.info["frame_id"] for x in a] != [z.info["frame_id"] for z in c]
    assert not np.allclose(a[0].cell[:], c[0].cell[:])


def test_max_atoms_cap():
    with pytest.raises(ValueError, match="max_atoms 250"):
        random_cells(RandomCellSettings(max_atoms=250), ["Al"], seed=0)  # 4.05 g/cm^3 * 17^3 A^3 -> ~444 Al
    cells = random_cells(RandomCellSettings(n_cells=5, max_atoms=250, edge_max=13.0), ["Al"], seed=0)
    assert all(len(a) <= 250 for a in cells)


def test_impossible_packing_raises():
    s = RandomCellSettings(n_cells=1, min_distance=3.5, density_min=4.0, max_tries=50, max_restarts=1)
    with pytest.raises(RuntimeError, match="could not place"):
        random_cells(s, ["Al"], seed=0)


# --------------------------------------------------------------------------- DP-GEN


def test_dpgen_settings_validation():
    s = DPGenInitSettings()
    assert tuple(s.lattices) == DPGEN_LATTICES == ("fcc", "hcp", "sc", "diamond")  # Zhang et al.: no bcc
    assert s.atom_sigma == 0.01 and s.cell_pert_fraction == 0.03
    assert (min(s.scales), max(s.scales), s.displacement_min, s.displacement_max) == (0.96, 1.04, 0.2, 10.0)
    assert s.displaced_kinds() == ["fcc", "hcp"] and s.displacement_mode == "planes" and s.dilate_displaced
    assert (s.displacement_planes, s.displacement_planes_hcp) == (["100", "110", "111"], ["0001", "10-10", "11-20"])
    assert DPGenInitSettings(displaced_lattices=None).displaced_kinds() == list(DPGEN_LATTICES)
    assert DPGenInitSettings(lattices=["hcp", "bcc"]).displaced_kinds() == ["hcp"]  # only lattices that are built
    assert DPGenInitSettings.from_dict(s.as_dict()) == s
    bad_cases = (
        {"lattices": ["bct"]},
        {"scales": [0.0]},
        {"displacement_directions": [(0, 0, -1)]},
        {"displacement_min": 5.0, "displacement_max": 1.0},
        {"repeat": (0, 1, 1)},
        {"typo": 1},
        {"displacement_planes": ["112"]},
        {"displacement_planes_hcp": ["100"]},
        {"displacement_mode": "shear"},
        {"displaced_min_layers": 1},
    )
    for bad in bad_cases:
        with pytest.raises(ValidationError):
            DPGenInitSettings(**bad)


def test_reference_nn_and_supercell_sizes():
    assert reference_nn_distance("Al") == pytest.approx(4.05 / math.sqrt(2))
    assert reference_nn_distance("Fe") == pytest.approx(2.87 * math.sqrt(3) / 2)
    assert reference_nn_distance("Si") == pytest.approx(5.43 * math.sqrt(3) / 4)
    for lat, n in zip(LATTICES, (32, 16, 16, 8, 64)):
        atoms = lattice_supercell(lat, 2.5, (2, 2, 2))
        assert len(atoms) == n
        assert min_distance(atoms) == pytest.approx(2.5, abs=1e-9)


@pytest.fixture(scope="module")
def al_sets():
    return dpgen_initial_sets(DPGenInitSettings(n_perturbed=4), ["Al"], seed=3)


def _plane(atoms):
    return atoms.info["plane"].strip("()")


def test_dpgen_counts_lattices_and_provenance(al_sets):
    s = DPGenInitSettings(n_perturbed=4)
    # 4 lattices x 5 scales x 4 copies; fcc and hcp x 3 planes x 2 distances x 5 scales
    assert len(al_sets) == 4 * 5 * 4 + 2 * 3 * 2 * 5 == 140
    assert {a.info["kind"] for a in al_sets} == set(DPGEN_LATTICES)
    assert len({a.info["frame_id"] for a in al_sets}) == len(al_sets)
    nn = reference_nn_distance("Al")
    for atoms in al_sets:
        info = atoms.info
        assert (info["explorer"], info["round"], info["parent_id"]) == ("dpgen_init", -1, "")
        assert info["frame_id"] == frame_id(atoms)
        if info["displaced"]:
            assert len(atoms) == len(oriented_cell(info["kind"], _plane(atoms), nn))
        else:
            assert len(atoms) == len(lattice_supercell(info["kind"], nn))  # atom count preserved
        assert min_distance(atoms) > 1.0
    planes = {(a.info["kind"], a.info["plane"]) for a in al_sets if a.info["displaced"]}
    assert planes == {("fcc", "(100)"), ("fcc", "(110)"), ("fcc", "(111)")} | {
        ("hcp", "(0001)"),
        ("hcp", "(10-10)"),
        ("hcp", "(11-20)"),
    }
    assert sorted({a.info["scale"] for a in al_sets if a.info["displaced"]}) == s.scales
    shown = [a for a in al_sets if a.info["displaced"]][-2:]
    back = frames_from_bytes(frames_to_bytes(shown))
    assert back[-1].info["displacement"] == shown[-1].info["displacement"]
    with_bcc = dpgen_initial_sets(
        DPGenInitSettings(lattices=[*DPGEN_LATTICES, "bcc"], n_perturbed=1, n_displaced=0), ["Al"], 0
    )
    assert [a.info["kind"] for a in with_bcc].count("bcc") == 5  # bcc on request only


# volume per atom / nn^3 of each lattice (hcp at ideal c/a), by hand
V_OVER_NN3 = {"fcc": 1 / math.sqrt(2), "hcp": 1 / math.sqrt(2), "sc": 1.0, "diamond": 8 / (3 * math.sqrt(3))}


def test_dpgen_scaling_of_nn_distance_and_volume_without_noise():
    s = DPGenInitSettings(
        scales=[0.96, 1.0, 1.04], n_perturbed=1, atom_sigma=0.0, cell_pert_fraction=0.0, n_displaced=0
    )
    frames = dpgen_initial_sets(s, ["Al"], seed=0)
    nn = reference_nn_distance("Al")
    assert len(frames) == 12 and [a.info["kind"] for a in frames[::3]] == list(DPGEN_LATTICES)
    for atoms in frames:
        ratio = min_distance(atoms) / nn
        assert ratio == pytest.approx(atoms.info["scale"], abs=1e-9)
        assert 0.96 - 1e-12 <= ratio <= 1.04 + 1e-12
        v = atoms.get_volume() / len(atoms)
        assert v == pytest.approx(V_OVER_NN3[atoms.info["kind"]] * (atoms.info["scale"] * nn) ** 3, rel=1e-12)
        assert not atoms.info["displaced"]


def test_dpgen_cell_strain_and_atom_noise(al_sets):
    nn = reference_nn_distance("Al")
    resid, strains = [], []
    for atoms in (a for a in al_sets if not a.info["displaced"]):
        base = lattice_supercell(atoms.info["kind"], nn)
        scaled0 = atoms.info["scale"] * base.cell[:]
        eps = np.linalg.solve(scaled0, atoms.cell[:]) - np.eye(3)  # cell = s*cell0 @ (I + eps)
        np.testing.assert_allclose(eps, eps.T, atol=1e-10)
        assert np.abs(eps).max() <= 0.03 + 1e-12
        strains.append(np.abs(eps).max())
        ideal = atoms.info["scale"] * base.positions @ (np.eye(3) + eps)
        resid.append(atoms.positions - ideal)
    resid = np.concatenate(resid)
    assert resid.std() == pytest.approx(0.01, rel=0.1)
    assert np.abs(resid.mean()) < 0.001
    assert np.abs(resid).max() < 0.06
    assert max(strains) > 0.02  # the bound is approached, not trivially met


# the plane normals in Cartesian: cubic (hkl) along [hkl]; hcp (a1 along x) the (0001), (2-1-10) and (01-10)
# members of the families, from the reciprocal vectors h b1 + k b2 of a1 = (1, 0), a2 = (-1/2, sqrt3/2)
NORMALS = {
    ("fcc", "100"): (1, 0, 0),
    ("fcc", "110"): (1, 1, 0),
    ("fcc", "111"): (1, 1, 1),
    ("hcp", "0001"): (0, 0, 1),
    ("hcp", "11-20"): (
        2 * 1 - 0,
        2 / math.sqrt(3) - 2 / math.sqrt(3),
        0,
    ),  # 2 b1 - b2, b1 = (1, 1/sqrt3), b2 = (0, 2/sqrt3)
    ("hcp", "10-10"): (0, 2 / math.sqrt(3), 0),  # b2
}


def _heights(atoms, n):
    return np.unique(np.round(atoms.positions @ n, 6))


def test_displaced_halves_geometry():
    nn = reference_nn_distance("Al")
    for (lat, plane), normal in NORMALS.items():
        n = np.array(normal, dtype=float) / np.linalg.norm(normal)
        base = oriented_cell(lat, plane, nn)
        assert min_distance(base) == pytest.approx(nn, abs=1e-9)  # a perfect crystal, no atom doubled
        assert abs(base.cell[0] @ n) < 1e-9 and abs(base.cell[1] @ n) < 1e-9  # in-plane vectors span the plane
        atoms, top, shift = displaced_halves(base, 3.0)
        np.testing.assert_allclose(shift, 3.0 * n, atol=1e-12)  # along the normal, by the distance
        np.testing.assert_allclose(atoms.positions[~top], base.positions[~top])
        np.testing.assert_allclose(atoms.positions[top], base.positions[top] + shift)  # rigid
        np.testing.assert_allclose(atoms.cell[2], base.cell[2] + shift)
        h_bot, h_top = _heights(base[~top], n), _heights(base[top], n)
        assert len(h_bot) >= 2 and len(h_top) >= 2 and h_bot.max() < h_top.min()  # cut by a plane, 2+ layers each
        gap = h_top.min() - h_bot.max()
        spacings = np.diff(_heights(base, n))
        assert gap == pytest.approx(
            spacings.max(), abs=3e-6
        )  # heights rounded to 1e-6; the widest layer gap is the one opened
        assert min_distance(atoms) == pytest.approx(nn, abs=1e-6)  # the halves moved apart, not into each other
    # hcp {10-10}: cut between the pairs of corrugated layers (spacing a/sqrt3), not inside one (a/(2 sqrt3))
    base = oriented_cell("hcp", "10-10", nn)
    _, top, _ = displaced_halves(base, 1.0)
    n = np.array([0, 1.0, 0])
    assert _heights(base[top], n).min() - _heights(base[~top], n).max() == pytest.approx(nn / math.sqrt(3), abs=1e-6)


def test_dpgen_displaced_halves_dilated_and_perturbed(al_sets):
    nn = reference_nn_distance("Al")
    displaced = [a for a in al_sets if a.info["displaced"]]
    assert len(displaced) == 60
    distances = [a.info["distance"] for a in displaced]
    assert min(distances) >= 0.2 and max(distances) <= 10.0
    resid = []
    for atoms in displaced:
        base = oriented_cell(atoms.info["kind"], _plane(atoms), nn)
        shift = np.array(atoms.info["displacement"])
        n = np.array(NORMALS[atoms.info["kind"], _plane(atoms)], dtype=float)
        np.testing.assert_allclose(shift, atoms.info["distance"] * n / np.linalg.norm(n), atol=1e-12)
        _, top, _ = displaced_halves(base, atoms.info["distance"])
        cell0 = base.cell[:].copy()
        cell0[2] += shift
        s = atoms.info["scale"]
        eps = np.linalg.solve(s * cell0, atoms.cell[:]) - np.eye(3)  # cell = s * (displaced cell) @ (I + eps)
        np.testing.assert_allclose(eps, eps.T, atol=1e-10)
        assert np.abs(eps).max() <= 0.03 + 1e-12
        ideal = s * (base.positions + np.outer(top, shift)) @ (np.eye(3) + eps)  # halves moved, then dilated
        resid.append(atoms.positions - ideal)
    resid = np.concatenate(resid)
    assert resid.std() == pytest.approx(0.01, rel=0.1) and np.abs(resid).max() < 0.06  # then the atom noise


def test_dpgen_displaced_halves_directions_mode():
    """The earlier construction, kept reachable: every lattice, split along c of the repeat supercell, moved along
    [uvw] of the conventional cell, not dilated."""
    s = DPGenInitSettings(
        lattices=list(LATTICES),
        n_perturbed=0,
        n_displaced=10,
        displacement_mode="directions",
        displaced_lattices=None,
        dilate_displaced=False,
    )
    displaced = dpgen_initial_sets(s, ["Al"], seed=3)
    nn = reference_nn_distance("Al")
    assert len(displaced) == 50 and all(a.info["displaced"] for a in displaced)
    distances = [a.info["distance"] for a in displaced]
    assert min(distances) >= 0.2 and max(distances) <= 10.0 and max(distances) - min(distances) > 5.0
    assert {a.info["direction"] for a in displaced} == {"[100]", "[110]", "[001]", "[101]", "[111]"}
    for atoms in displaced:
        base = lattice_supercell(atoms.info["kind"], nn)
        shift = np.array(atoms.info["displacement"])
        assert np.linalg.norm(shift) == pytest.approx(atoms.info["distance"])
        assert shift[2] >= -1e-12  # the halves never move into each other
        top = base.get_scaled_positions(wrap=False)[:, 2] >= 0.5 - 1e-6
        assert 0 < top.sum() < len(base) and top.sum() == len(base) // 2
        moved = atoms.positions - base.positions
        assert np.abs(moved[~top]).max() < 0.06  # bottom half: only the 0.01 A noise
        assert np.abs(moved[top] - shift).max() < 0.06  # top half: the stated vector
        np.testing.assert_allclose(atoms.cell[:2], base.cell[:2])
        np.testing.assert_allclose(atoms.cell[2], base.cell[2] + shift)
        assert atoms.info["scale"] == 1.0


def test_dpgen_alloy_decoration_and_vegard_nn():
    s = DPGenInitSettings(
        composition={"Cu": 0.75, "Ni": 0.25},
        n_perturbed=3,
        scales=[1.0],
        atom_sigma=0.0,
        cell_pert_fraction=0.0,
        n_displaced=2,
    )
    frames = dpgen_initial_sets(s, ["Cu", "Ni"], seed=9)
    symbols = np.concatenate([a.get_chemical_symbols() for a in frames])
    assert set(symbols) == {"Cu", "Ni"}
    assert np.mean(symbols == "Ni") == pytest.approx(0.25, abs=0.04)
    assert len({tuple(a.numbers) for a in frames if a.info["kind"] == "fcc"}) > 1  # decorated per frame
    nn = 0.75 * reference_nn_distance("Cu") + 0.25 * reference_nn_distance("Ni")
    fcc = next(a for a in frames if a.info["kind"] == "fcc" and not a.info["displaced"])
    assert min_distance(fcc) == pytest.approx(nn, abs=1e-9)
    custom = dpgen_initial_sets(s.model_copy(update={"nn_distances": {"Cu": 2.6, "Ni": 2.4}}), ["Cu", "Ni"], seed=9)
    fcc = next(a for a in custom if a.info["kind"] == "fcc" and not a.info["displaced"])
    assert min_distance(fcc) == pytest.approx(0.75 * 2.6 + 0.25 * 2.4, abs=1e-9)
    with pytest.raises(ValueError, match="not in elements"):
        dpgen_initial_sets(DPGenInitSettings(nn_distances={"Al": 2.8}), ["Cu"], seed=0)


def test_dpgen_seeded():
    s = DPGenInitSettings(n_perturbed=1, n_displaced=1, lattices=["fcc", "hcp"])
    a, b, c = (dpgen_initial_sets(s, ["Al"], seed) for seed in (4, 4, 5))
    assert [x.info["frame_id"] for x in a] == [y.info["frame_id"] for y in b]
    assert not {x.info["frame_id"] for x in a} & {z.info["frame_id"] for z in c}
