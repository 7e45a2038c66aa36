"""Shear runs reach gamma_max at any cell size: the number of steps follows from gamma_max,
shear_step and the cell; a cap that stops short is refused at validation."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from ase.calculators.calculator import Calculator, all_changes

from al_flows.campaign.config import ConfigError, check_campaign_structures, validate_campaign
from al_flows.exploration.shear import ShearSettings
from al_flows.exploration.shear_geometry import run_steps, shear_strain, steps_to_gamma
from al_flows.exploration.shear_sequential import explore_shear
from al_flows.pool_study.shear_study import pathways, step_record
from al_flows.structures.multilayer import cuni_multilayer
from helpers import TINY


class Flat(Calculator):
    """Zero energy and forces: every relaxation converges at once, so a run is pure shear."""

    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = {"energy": 0.0, "forces": np.zeros((len(self.atoms), 3))}


def test_paper_size_cell_needs_42_steps_of_0_1_angstrom():
    atoms = cuni_multilayer((5, 5, 5), a=3.58)
    assert atoms.cell[0, 0] == pytest.approx(17.9)
    # gamma after n steps = sqrt(2) * 0.1 n / 17.9 (no initial shear): 0.33 needs n >= 41.77
    assert steps_to_gamma(atoms.cell[:], 0.1, 0.33) == 42 == math.ceil(0.33 * 17.9 / (math.sqrt(2) * 0.1))
    assert run_steps(ShearSettings(shear_step=0.1, gamma_max=0.33), atoms.cell[:]) == 42
    # the old default cap of 30 steps stopped at gamma 0.237
    assert math.sqrt(2) * 0.1 * 30 / 17.9 == pytest.approx(0.237, abs=5e-4)
    assert run_steps(ShearSettings(shear_step=0.1, gamma_max=0.33, max_steps=50), atoms.cell[:]) == 42


def test_steps_count_initial_shear_and_exact_hits():
    cell = np.diag([10.0, 10.0, 10.0])
    assert steps_to_gamma(cell, 0.5, 0.5 * math.sqrt(2) / 10 * 3) == 3  # lands exactly on gamma_max
    sheared = cell.copy()
    sheared[0, 1] = sheared[0, 2] = 1.0  # gamma already 0.1414
    assert steps_to_gamma(sheared, 0.5, 0.33) == math.ceil((0.33 * 10 / math.sqrt(2) - 1.0) / 0.5)
    assert steps_to_gamma(sheared, 0.5, 0.1) == 0


def test_config_with_a_cap_short_of_gamma_max_is_refused():
    settings = copy.deepcopy(TINY)
    settings["initial"]["structures"][0].update(size=[5, 5, 5], variants=["pristine"])
    settings["explorers"][0].update(shear_step=0.1, gamma_max=0.33, max_steps=30)
    config = validate_campaign(settings)
    with pytest.raises(
        ValueError, match=r"explorers\[0\]\.max_steps: 30 steps of 0.1 Angstrom reach gamma 0.237 .* needs 42"
    ):
        check_campaign_structures(config, ".")
    settings["explorers"][0].pop("max_steps")
    assert check_campaign_structures(validate_campaign(settings), ".") == 1


def test_cli_validate_refuses_the_short_cap(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    settings = copy.deepcopy(TINY)
    settings["initial"]["structures"][0].update(size=[5, 5, 5], variants=["pristine"])
    settings["explorers"][0].update(shear_step=0.1, gamma_max=0.33, max_steps=30)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(settings))
    exe = Path(sys.executable).parent / "al-flows"
    out = subprocess.run([str(exe), "validate", str(path)], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "explorers[0].max_steps" in out.stderr
    assert isinstance(ConfigError("x"), ValueError)


@pytest.mark.parametrize("batched", [False, True])
def test_paper_size_runs_end_at_gamma_max_and_pathways_keep_those_minima(batched):
    """Two runs on the 500-atom multilayer with a flat calculator: 42 frames each, the last at
    gamma >= 0.33 (0.3318), so the validation stage (minima of pathways at gamma_max) gets them."""
    atoms = cuni_multilayer((5, 5, 5), a=3.58)
    settings = ShearSettings(n_runs=2, sigma=0.0, shear_step=0.1, gamma_max=0.33, fmax=0.01, max_opt_steps=5)
    if batched:
        from al_flows.exploration.shear_batched import explore_shear_batched

        class FlatEnsemble:  # what relax_batched reads: mean energies, per-member forces (members, atoms, 3)
            def predict(self, frames, batch_size=None):
                from types import SimpleNamespace

                n = [len(f) for f in frames]
                return SimpleNamespace(mean_energies=np.zeros(len(frames)), forces=[np.zeros((2, k, 3)) for k in n])

        dropped = []
        frames = explore_shear_batched([atoms], FlatEnsemble(), settings, seed=1, dropped=dropped)
        assert dropped == []
    else:
        frames = explore_shear([atoms], Flat(), settings, seed=1)
    by_run = {}
    for f in frames:
        by_run.setdefault(f.info["run"], []).append(f)
    assert sorted(by_run) == [0, 1]
    for run_frames in by_run.values():
        assert [f.info["step"] for f in run_frames] == list(range(1, 43))
        assert run_frames[-2].info["gamma"] < 0.33 <= run_frames[-1].info["gamma"]
        assert run_frames[-1].info["gamma"] == pytest.approx(math.sqrt(2) * 4.2 / 17.9)
        assert shear_strain(run_frames[-1].cell[:]) == pytest.approx(run_frames[-1].info["gamma"])
    records = [step_record(f, atoms) for f in frames[:1] + frames[41:42] + frames[42:43] + frames[-1:]]
    paths = pathways([r for r in records if r["step"] in (1, 42)], tol=1e-3)
    assert paths and all(p["final_gamma"] >= 0.33 for p in paths)  # what shear_pathways keeps for validation


def test_cut_crystals_are_rotated_so_every_run_starts_at_gamma_zero_and_reaches_gamma_max():
    from al_flows.exploration.shear_geometry import shear_start
    from al_flows.structures.displaced_halves import displaced_halves, oriented_cell
    from al_flows.validation.heldout import sheared_rattled

    # fcc cut along (110): a1 lies along z, so gamma = |(c01, c02)| / c00 of the raw cell is |a1| / 0
    cut, _, _ = displaced_halves(oriented_cell("fcc", "110", 2.55, symbol="Cu"), 1.0)
    assert abs(cut.cell[0, 0]) < 1e-9
    start = shear_start(cut)
    a1 = np.linalg.norm(cut.cell[0])
    np.testing.assert_allclose(start.cell[0], [a1, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(start.cell.cellpar(), cut.cell.cellpar(), atol=1e-9)  # a rigid rotation
    np.testing.assert_allclose(start.get_all_distances(mic=True), cut.get_all_distances(mic=True), atol=1e-9)
    assert shear_strain(start.cell[:]) == 0.0
    assert steps_to_gamma(start.cell[:], 0.5, 0.2) == math.ceil(0.2 * a1 / (math.sqrt(2) * 0.5))
    frames = explore_shear([cut], Flat(), ShearSettings(n_runs=1, sigma=0.0, shear_step=0.5, gamma_max=0.2), seed=0)
    assert len(frames) == math.ceil(0.2 * a1 / (math.sqrt(2) * 0.5))
    assert frames[-1].info["gamma"] >= 0.2 > frames[-2].info["gamma"]
    gammas = [f.info["gamma"] for f in sheared_rattled([cut], 5, 0.2, 0.0, seed=1)]
    assert all(0.0 <= g <= 0.2 for g in gammas)
    # a cell with a1 along +x is returned as it is, to the bit (earlier campaigns are unchanged)
    layer = cuni_multilayer((2, 2, 2))
    kept = shear_start(layer)
    assert (kept.cell[:] == layer.cell[:]).all() and (kept.positions == layer.positions).all()
