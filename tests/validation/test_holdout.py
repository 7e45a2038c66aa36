"""Test sets that test: relaxed and nonequilibrium frames labelled by the labeller, and the
force R^2 / relative RMSE that say whether a force RMSE means anything."""

from __future__ import annotations

import numpy as np
import pytest
from ase.calculators.emt import EMT

import al_flows.active_learning.config as config_module
from al_flows.exploration.shear_geometry import shear_strain
from al_flows.structures.multilayer import cuni_multilayer
from al_flows.validation.heldout import force_errors, holdout_errors, labeller_test_frames, sheared_rattled


def test_force_errors_by_hand():
    ref = [np.array([[1.0, -1.0, 0.0], [2.0, 0.0, 0.0]])]
    pred = [np.array([[1.5, -1.0, 0.0], [2.0, 0.5, 0.0]])]
    e = force_errors(pred, ref)
    # residuals: 0.5, 0, 0, 0, 0.5, 0 -> SS_res 0.5, RMSE sqrt(0.5/6); mean ref 1/3, SS_tot = sum((r - 1/3)^2)
    r = np.array([1.0, -1.0, 0.0, 2.0, 0.0, 0.0])
    assert e["force_rmse"] == pytest.approx(np.sqrt(0.5 / 6), rel=1e-12)
    assert e["force_r2"] == pytest.approx(1 - 0.5 / np.sum((r - 1 / 3) ** 2), rel=1e-12)
    assert e["force_rel_rmse"] == pytest.approx(np.sqrt(0.5 / 6) / np.sqrt(np.mean(r**2)), rel=1e-12)
    zero = force_errors([np.zeros((2, 3))], ref)  # predicting zero force
    assert zero["force_rel_rmse"] == pytest.approx(1.0)
    assert zero["force_r2"] < 0.05  # no better than the mean (here slightly worse: the mean is not 0)
    assert force_errors([np.ones((1, 3))], [np.ones((1, 3))])["force_r2"] is None  # constant reference: undefined


@pytest.fixture(scope="module")
def mixed_frames():
    starts = [cuni_multilayer((2, 2, 2), a=3.58, variant=v) for v in ("pristine", "VNi(N1)")]
    for a, v in zip(starts, ("pristine", "VNi(N1)"), strict=True):
        a.info["structure_id"] = v
    settings = config_module.TestSetConfig(
        kind="mixed",
        n_runs=1,
        sigma=0.02,
        shear_step=0.5,
        gamma_max=0.33,
        fmax=0.05,
        md_temperatures_K=[300.0, 900.0],
        md_steps=40,
        md_interval=10,
        n_sheared=3,
    )
    return starts, settings, labeller_test_frames(starts, EMT, settings, seed=4, labeller="ase:emt")


def test_mixed_test_set_holds_both_subsets_labelled_by_the_labeller(mixed_frames):
    starts, settings, frames = mixed_frames
    kinds = {}
    for a in frames:
        kinds.setdefault(a.info["test_kind"], []).append(a)
    assert set(kinds) == {"shear_relaxed", "md_300K", "md_900K", "sheared_rattled"}
    assert {a.info["subset"] for a in kinds["shear_relaxed"]} == {"relaxed"}
    assert {a.info["subset"] for k in ("md_300K", "md_900K", "sheared_rattled") for a in kinds[k]} == {"nonequilibrium"}
    # MD: second half of each 40-step run, every 10th step -> steps 30 and 40, per structure and temperature
    assert sorted(a.info["step"] for a in kinds["md_300K"]) == [30, 30, 40, 40]
    assert len(kinds["sheared_rattled"]) == 3 * len(starts)
    for a in frames:  # labels are the labeller's own numbers (EMT recomputed: same code, same inputs)
        ref = a.copy()
        ref.calc = EMT()
        assert a.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-10)
        np.testing.assert_allclose(a.get_forces(), ref.get_forces(), atol=1e-10)
        assert a.info["labeller"] == "ase:emt" and a.info["round"] == -1
    relaxed_fmax = max(np.linalg.norm(a.get_forces(), axis=1).max() for a in kinds["shear_relaxed"])
    noneq_fmax = [
        np.linalg.norm(a.get_forces(), axis=1).max() for k in ("md_900K", "sheared_rattled") for a in kinds[k]
    ]
    assert relaxed_fmax < settings.fmax + 1e-9  # relaxed with the labeller to fmax
    assert min(noneq_fmax) > 4 * settings.fmax  # nonequilibrium frames carry real forces
    assert len({a.info["frame_id"] for a in frames}) == len(frames)


def test_sheared_copies_are_sheared_like_the_explorer_and_within_gamma_max():
    starts = [cuni_multilayer((2, 2, 2), a=3.58)]
    copies = sheared_rattled(starts, 20, gamma_max=0.3, sigma=0.0, seed=1)
    gammas = np.array([shear_strain(c.cell[:]) for c in copies])
    np.testing.assert_allclose(gammas, [c.info["gamma"] for c in copies], rtol=1e-12)
    assert gammas.min() >= 0 and gammas.max() <= 0.3 and gammas.std() > 0.05
    for c in copies:
        assert c.cell[0, 1] == pytest.approx(c.cell[0, 2])  # along [011], as the shear explorer


def test_holdout_errors_per_subset(mixed_frames):
    _, _, frames = mixed_frames
    ref_e = np.array([a.get_potential_energy() for a in frames])
    forces = [a.get_forces() for a in frames]
    exact = holdout_errors(frames, ref_e, forces)
    assert exact["force_rmse"] == 0 and exact["force_r2"] == 1.0 and exact["energy_rmse_per_atom"] == 0
    zero = holdout_errors(frames, ref_e, [np.zeros_like(f) for f in forces])
    relaxed = [a for a in frames if a.info["subset"] == "relaxed"]
    want = np.sqrt(np.mean(np.concatenate([a.get_forces().ravel() for a in relaxed]) ** 2))
    assert zero["subsets"]["relaxed"]["force_rmse"] == pytest.approx(want, rel=1e-12)
    assert zero["subsets"]["relaxed"]["n_frames"] == len(relaxed)
    assert zero["subsets"]["nonequilibrium"]["n_frames"] == len(frames) - len(relaxed)
    assert zero["force_rel_rmse"] == pytest.approx(1.0)
