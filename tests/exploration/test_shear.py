"""Perturbed stochastic shear explorer (METHODS A4) with EMT."""

import math

import numpy as np
import pytest
from ase.calculators.emt import EMT
from pydantic import ValidationError

from al_flows.exploration.shear import ShearSettings
from al_flows.exploration.shear_geometry import shear_cell, shear_strain
from al_flows.exploration.shear_sequential import explore_shear, run_shear
from al_flows.exploration.shear_steps import run_seed
from al_flows.frames.ids import frame_id
from al_flows.structures.multilayer import cuni_multilayer

SMALL = dict(sigma=0.01, shear_step=0.5, gamma_max=0.2, fmax=0.05)


def test_shear_cell_and_strain_by_hand():
    cell = np.diag([7.16, 7.16, 7.16])
    c = cell
    for _ in range(3):
        c = shear_cell(c, 0.1)
    expected = np.array([[7.16, 0.3, 0.3], [0, 7.16, 0], [0, 0, 7.16]])
    np.testing.assert_allclose(c, expected, atol=1e-12)
    assert shear_strain(c) == pytest.approx(math.sqrt(2) * 0.3 / 7.16, rel=1e-12)
    assert shear_strain(cell) == 0.0
    assert cell[0, 1] == 0.0  # input untouched


def test_settings_validation():
    s = ShearSettings()
    assert (s.n_runs, s.sigma, s.shear_step, s.gamma_max, s.max_steps, s.fmax, s.optimizer) == (
        4,
        0.05,
        0.1,
        0.33,
        None,
        0.002,
        "BFGS",
    )  # max_steps: what gamma_max needs
    for bad in ({"sigma": -0.1}, {"shear_step": 0}, {"n_runs": 0}, {"optimizer": "CG"}, {"typo": 1}):
        with pytest.raises(ValidationError):
            ShearSettings(**bad)


@pytest.fixture(scope="module")
def structure():
    atoms = cuni_multilayer((2, 2, 2))
    atoms.info["structure_id"] = "multilayer-2x2x2-pristine"
    return atoms


@pytest.fixture(scope="module")
def run0(structure):
    return run_shear(structure, EMT(), ShearSettings(**SMALL), seed=7, run=0, parent_id="p0")


def test_run_shear_frames(structure, run0):
    # 7.16 A cell: gamma per step = sqrt(2)*0.5/7.16 = 0.0988 -> 0.0988, 0.1975, 0.2963 (>= 0.2 stops)
    assert len(run0) == 3
    gammas = [f.info["gamma"] for f in run0]
    np.testing.assert_allclose(gammas, [math.sqrt(2) * 0.5 * k / 7.16 for k in (1, 2, 3)], rtol=1e-12)
    assert all(np.diff(gammas) > 0)
    assert [f.info["step"] for f in run0] == [1, 2, 3]
    for f in run0:
        assert f.info["explorer"] == "shear" and f.info["parent_id"] == "p0" and f.info["run"] == 0
        assert math.isnan(f.info["deviation"])
        assert f.info["energy"] == f.get_potential_energy()
        assert f.info["frame_id"] == frame_id(f)
        assert f.info["variant"] == "pristine"
        assert len(f) == len(structure)
        np.testing.assert_allclose(f.cell[0], [7.16, 0.5 * f.info["step"], 0.5 * f.info["step"]])
        if f.info["converged"]:
            assert np.linalg.norm(f.get_forces(), axis=1).max() < 0.05
        assert 0 < f.info["n_opt_steps"] <= 500
    assert all(f.info["converged"] for f in run0)
    # the starting structure is not modified
    assert structure.cell[0, 1] == 0.0 and structure.calc is None


def test_fresh_noise_and_reproducibility(structure, run0):
    settings = ShearSettings(**SMALL)
    again = run_shear(structure, EMT(), settings, seed=7, run=0, parent_id="p0")
    assert [f.info["frame_id"] for f in again] == [f.info["frame_id"] for f in run0]
    for a, b in zip(again, run0):  # the same float64 operations in the same order (EMT, BFGS): bitwise equal
        np.testing.assert_array_equal(a.positions, b.positions)
    other = run_shear(structure, EMT(), settings, seed=7, run=1)
    assert not np.allclose(other[0].positions, run0[0].positions)
    # a fresh draw every step: the noise of step 2 differs from that of step 1 (the
    # paper's code reuses one seed). Without relaxation the positions show it directly.
    raw = ShearSettings(sigma=0.01, shear_step=0.5, gamma_max=0.2, fmax=1e3, max_opt_steps=1)
    frames = run_shear(structure, EMT(), raw, seed=3, run=0)
    rng = np.random.default_rng((3, 0))
    d1, d2 = rng.normal(0, 0.01, (2, len(structure), 3))
    assert not np.allclose(d1, d2)
    expected1 = structure.get_scaled_positions(wrap=False) + np.linalg.solve(structure.cell[:].T, d1.T).T
    np.testing.assert_allclose(frames[0].get_scaled_positions(wrap=False), expected1, atol=1e-12)


def test_explore_shear_seeds_and_counts(structure):
    settings = ShearSettings(n_runs=2, **{**SMALL, "gamma_max": 0.15})
    frames = explore_shear([structure], EMT(), settings, seed=11)
    assert len(frames) == 4  # two steps (gamma 0.099, 0.198) per run
    assert [f.info["run"] for f in frames] == [0, 0, 1, 1]
    assert {f.info["parent_id"] for f in frames} == {"multilayer-2x2x2-pristine"}
    assert {f.info["seed"] for f in frames} == {run_seed(11, 0)}
    assert len({f.info["frame_id"] for f in frames}) == 4
    assert run_seed(11, 0) != run_seed(11, 1) and run_seed(11, 0) == run_seed(11, 0)


class _NaNAfter(EMT):
    """EMT that returns NaN forces once the cell is sheared more than ``limit`` Angstrom."""

    def __init__(self, limit):
        super().__init__()
        self.limit = limit

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, properties, system_changes)
        if self.atoms.cell[0, 1] > self.limit:
            self.results["forces"] = np.full_like(self.results["forces"], np.nan)
            self.results["energy"] = float("nan")


def test_non_finite_stops_run(structure):
    frames = run_shear(structure, _NaNAfter(0.7), ShearSettings(**SMALL), seed=0)
    assert len(frames) == 1


def test_model_deviation_recorded(structure):
    class _Dev(EMT):
        def calculate(self, atoms=None, properties=("energy",), system_changes=()):
            super().calculate(atoms, properties, system_changes)
            self.results["model_deviation"] = 0.042

    frames = run_shear(structure, _Dev(), ShearSettings(**{**SMALL, "gamma_max": 0.05}), seed=0)
    assert [f.info["deviation"] for f in frames] == [0.042]
