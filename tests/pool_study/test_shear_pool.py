"""The pool made the way of Sprueill et al.: labeller shear paths with every optimiser step a
frame, and labeller MD at each strain."""

from __future__ import annotations

import numpy as np
import pytest
from ase.calculators.emt import EMT
from ase.optimize import BFGS

from al_flows.campaign.config import validate_campaign
from al_flows.exploration.shear import ShearSettings
from al_flows.exploration.shear_geometry import shear_cell
from al_flows.pool_study.shear_pool import labeller_shear_pool, labeller_shear_trajectories
from al_flows.structures.multilayer import cuni_multilayer


@pytest.fixture(scope="module")
def start():
    atoms = cuni_multilayer((2, 2, 2), a=3.58)
    atoms.info["structure_id"] = "pristine"
    return atoms


SETTINGS = ShearSettings(n_runs=1, sigma=0.02, shear_step=0.5, gamma_max=0.2, fmax=0.05, max_opt_steps=50)


def test_every_optimiser_step_is_a_frame_with_its_gamma(start):
    steps, relaxed = labeller_shear_trajectories([start], EMT, SETTINGS, seed=3, labeller="ase:emt")
    # gamma per step: sqrt(2) * 0.5 / 7.16 = 0.0988 -> 3 steps reach 0.2
    assert [f.info["step"] for f in relaxed] == [1, 2, 3]
    assert relaxed[-2].info["gamma"] < 0.2 <= relaxed[-1].info["gamma"]
    # the same walk by hand: perturb (same rng), shear, BFGS; one frame per yield of irun
    rng = np.random.default_rng((3, 0, 0))
    work = start.copy()
    work.calc = EMT()
    want = []
    for _ in range(3):
        work.positions = work.positions + rng.normal(0.0, 0.02, size=(len(work), 3))
        work.set_cell(shear_cell(work.cell[:], 0.5), scale_atoms=True)
        for _ in BFGS(work, logfile=None).irun(fmax=0.05, steps=50):
            want.append((work.get_potential_energy(), work.positions.copy()))
    assert len(steps) == len(want) > 3  # more than the minima: the relaxation trajectories
    for f, (energy, pos) in zip(steps, want, strict=True):
        assert f.get_potential_energy() == pytest.approx(energy, abs=1e-9)
        np.testing.assert_allclose(f.positions, pos, atol=1e-9)  # float64 EMT, the same operations: exact
    for f in steps:  # each frame carries the labeller's forces at its own positions
        ref = f.copy()
        ref.calc = EMT()
        np.testing.assert_allclose(f.get_forces(), ref.get_forces(), atol=1e-9)
    assert {f.info["opt_step"] for f in steps if f.info["step"] == 1} == set(
        range(sum(1 for f in steps if f.info["step"] == 1))
    )
    assert max(np.linalg.norm(f.get_forces(), axis=1).max() for f in relaxed) < 0.05


def test_pool_adds_md_at_each_strain(start):
    frames = labeller_shear_pool([start], EMT, SETTINGS, 3, "ase:emt", [1000.0, 1500.0], 20, 1.0, 10)
    md = [f for f in frames if f.info["explorer"] == "labeller_shear_md"]
    shear = [f for f in frames if f.info["explorer"] == "labeller_shear"]
    assert len(md) == 3 * 2 * 2  # 3 strains x 2 temperatures x (20 steps / 10)
    assert sorted({round(f.info["gamma"], 6) for f in md}) == sorted(
        {round(f.info["gamma"], 6) for f in shear if "opt_step" in f.info}
    )
    assert {f.info["temperature_K"] for f in md} == {1000.0, 1500.0}
    assert len({f.info["frame_id"] for f in frames}) == len(frames)


def test_config_source_and_refusals():
    base = {
        "workflow": "pool_study",
        "name": "p",
        "elements": ["Cu", "Ni"],
        "pool": {
            "sources": [
                {
                    "kind": "labeller_shear",
                    "structures": [{"kind": "multilayer", "size": [2, 2, 2]}],
                    "shear_step": 0.5,
                    "gamma_max": 0.2,
                }
            ]
        },
    }
    config = validate_campaign(base)
    src = config.pool.sources[0]
    assert src.kind == "labeller_shear" and src.md_temperatures_K == [1000.0, 1500.0] and src.fmax == 0.01
    vasp = {**base, "labeller": {"kind": "vasp"}}
    with pytest.raises(Exception, match=r"pool.sources\[0\]: kind labeller_shear runs the labeller itself"):
        validate_campaign(vasp)
