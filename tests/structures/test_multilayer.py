"""Cu-Ni multilayer builder (METHODS A1)."""

import numpy as np
import pytest

from al_flows.structures.multilayer import VARIANTS, cuni_multilayer, plane_of

A = 3.58


def _plane_counts(atoms, nz):
    return np.bincount(atoms.arrays["plane"], minlength=2 * nz)


def test_pristine_counts_composition_and_planes():
    nx, ny, nz = 3, 2, 4
    atoms = cuni_multilayer((nx, ny, nz), a=A)
    assert len(atoms) == 4 * nx * ny * nz == 96
    assert atoms.get_chemical_symbols().count("Cu") == atoms.get_chemical_symbols().count("Ni") == 48
    assert atoms.pbc.all()
    np.testing.assert_allclose(atoms.cell.lengths(), [nx * A, ny * A, nz * A])
    assert atoms.info["variant"] == "pristine"
    assert tuple(atoms.info["size"]) == (nx, ny, nz)
    assert atoms.info["lattice_constant"] == A

    plane = atoms.arrays["plane"]
    z = atoms.positions[:, 2]
    # plane index follows z, 2*nz planes, each with 2*nx*ny atoms, spacing a/2
    assert list(plane) == sorted(plane)
    np.testing.assert_allclose(z, plane * A / 2, atol=1e-9)
    assert list(_plane_counts(atoms, nz)) == [2 * nx * ny] * (2 * nz)
    zs = np.array([z[plane == p].mean() for p in range(2 * nz)])
    np.testing.assert_allclose(np.diff(zs), A / 2)
    symbols = np.array(atoms.get_chemical_symbols())
    assert set(symbols[plane < nz]) == {"Cu"}
    assert set(symbols[plane >= nz]) == {"Ni"}


def test_plane_of():
    assert plane_of("N1", 5) == 5
    assert plane_of("N3", 5) == 7
    assert plane_of("C1", 5) == 4
    assert plane_of("C3", 5) == 2
    assert plane_of("VNi(N2)", 3) == 4
    assert plane_of("2VCu(C1)", 2) == 1
    with pytest.raises(ValueError, match="nz"):
        plane_of("N3", 2)
    with pytest.raises(ValueError, match="name"):
        plane_of("X1", 2)


@pytest.mark.parametrize("variant", VARIANTS[1:])
def test_vacancy_variants(variant):
    size = (3, 3, 3)
    nz = size[2]
    pristine = cuni_multilayer(size, a=A)
    atoms = cuni_multilayer(size, a=A, variant=variant)
    n_vac = 2 if variant.startswith("2") else 1
    assert len(atoms) == len(pristine) - n_vac
    assert atoms.info["variant"] == variant
    lost = _plane_counts(pristine, nz) - _plane_counts(atoms, nz)
    target = plane_of(variant, nz)
    assert lost[target] == n_vac
    assert lost.sum() == n_vac
    element = "Ni" if "VNi" in variant else "Cu"
    assert pristine.get_chemical_symbols().count(element) - atoms.get_chemical_symbols().count(element) == n_vac
    # the removed sites: positions of the pristine cell missing from the variant
    kept = {tuple(np.round(p, 6)) for p in atoms.positions}
    removed = np.array([p for p in pristine.positions if tuple(np.round(p, 6)) not in kept])
    assert len(removed) == n_vac
    np.testing.assert_allclose(removed[:, 2], target * A / 2, atol=1e-9)
    if n_vac == 2:
        assert np.linalg.norm(removed[0] - removed[1]) == pytest.approx(A / np.sqrt(2))


def test_deterministic_and_named_planes():
    a1 = cuni_multilayer((2, 2, 3), variant="VNi(N3)")
    a2 = cuni_multilayer((2, 2, 3), variant="VNi(N3)")
    np.testing.assert_array_equal(a1.positions, a2.positions)
    assert plane_of("N3", 3) == 5  # topmost plane of a nz=3 stack


def test_small_divacancy_uses_periodic_neighbour():
    atoms = cuni_multilayer((1, 1, 2), variant="2VCu(C1)")
    assert len(atoms) == 6
    assert _plane_counts(atoms, 2)[1] == 0


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"size": (2, 2, 2), "variant": "VNi(N3)"}, "variant"),
        ({"size": (3, 3, 2), "variant": "VCu(C3)"}, "variant"),
        ({"variant": "VNi(N4)"}, "variant"),
        ({"variant": "bogus"}, "variant"),
        ({"size": (0, 2, 2)}, "size"),
        ({"size": (2, -1, 2)}, "size"),
        ({"size": (2, 2)}, "size"),
        ({"a": -3.5}, "a"),
    ],
)
def test_bad_inputs(kwargs, word):
    with pytest.raises(ValueError, match=rf"^{word}:") as exc:
        cuni_multilayer(**kwargs)
    assert "\n" not in str(exc.value)
