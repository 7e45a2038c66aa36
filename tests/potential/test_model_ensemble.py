"""SchNet member, training and ensemble (al_flows.potential.model / training / ensemble) on EMT Cu-Ni data."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.optimize import BFGS
from pydantic import ValidationError

from al_flows.potential.ensemble import Ensemble, EnsemblePrediction
from al_flows.potential.model import ModelSettings, TrainingSettings, build_member
from al_flows.potential.training import TrainedMember, train_member
from al_flows.potential.weights import BLOB_FORMAT, member_from_bytes, member_to_bytes

MODEL = ModelSettings(n_atom_basis=32, n_interactions=2, n_rbf=16, cutoff=4.5)
TRAINING = TrainingSettings(epochs=12, batch_size=8, lr=3e-3, lr_patience=50, val_fraction=0.2)


def _cuni(seed: int, rattle: float = 0.05, repeat=(2, 2, 2), shear: float = 0.0):
    """Cu fcc (a = 3.6 A) with ~30 % Ni, optional +shear A on cell[0,1] and cell[0,2], rattled."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(repeat)
    if shear:
        cell = atoms.cell.array.copy()
        cell[0, 1] = cell[0, 2] = shear
        atoms.set_cell(cell, scale_atoms=True)
    symbols = np.array(atoms.get_chemical_symbols())
    symbols[rng.random(len(atoms)) < 0.3] = "Ni"
    atoms.set_chemical_symbols(symbols.tolist())
    atoms.rattle(rattle, seed=int(rng.integers(2**31)))
    return atoms


REFS = {"Cu": -3.7, "Ni": -5.5}  # eV/atom added to EMT energies, DFT-like magnitudes


def _label(atoms):
    """EMT energy + per-element references (eV), EMT forces (eV/A), as a SinglePointCalculator."""
    atoms = atoms.copy()
    atoms.calc = EMT()
    energy = atoms.get_potential_energy() + sum(REFS[s] for s in atoms.get_chemical_symbols())
    forces = atoms.get_forces()
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
    return atoms


@pytest.fixture(scope="module")
def frames():
    out = []
    for k in range(40):
        atoms = _label(_cuni(k, shear=1.5 if k % 4 == 0 else 0.0))
        atoms.info["frame_id"] = f"f{k:03d}"
        out.append(atoms)
    return out


@pytest.fixture(scope="module")
def trained(frames) -> list[TrainedMember]:
    return [train_member(frames, MODEL, TRAINING, seed=s) for s in (0, 1)]


@pytest.fixture(scope="module")
def ensemble(trained) -> Ensemble:
    return Ensemble.from_bytes([t.blob for t in trained])


def _mixed_frames():
    """Frames of different sizes: 32 atoms, 31 (one removed), sheared 32, a 4-atom cell, 108 atoms."""
    a = _cuni(100)
    b = _cuni(101)
    del b[5]
    c = _cuni(102, shear=1.5)
    d = _cuni(103, repeat=(1, 1, 1))
    e = _cuni(104, repeat=(3, 3, 3))
    return [a, b, c, d, e]


def test_settings_validate():
    assert ModelSettings().model_dump() == {
        "kind": "schnet",
        "n_atom_basis": 128,
        "n_interactions": 2,
        "n_rbf": 50,
        "cutoff": 6.0,
        "lmax": None,
    }
    assert TrainingSettings().lr == 1e-4 and TrainingSettings().rho == 0.01
    for bad in ({"cutoff": 0}, {"n_rbf": -1}, {"unknown": 1}):
        with pytest.raises(ValidationError):
            ModelSettings(**bad)
    for bad in ({"lr_decay": 1.0}, {"val_fraction": 0.5}, {"lr_patience": 0}, {"rho": -1}):
        with pytest.raises(ValidationError):
            TrainingSettings(**bad)


def test_member_matches_stock_schnetpack(trained):
    """The fast member (symmetric pairs, custom softplus) gives stock schnetpack SchNet's numbers."""
    import copy

    import schnetpack as spk

    module, settings, _ = member_from_bytes(trained[0].blob)
    stock = copy.deepcopy(module)
    stock.representation = spk.representation.SchNet(
        n_atom_basis=settings.n_atom_basis,
        n_interactions=settings.n_interactions,
        radial_basis=spk.nn.GaussianRBF(settings.n_rbf, settings.cutoff),
        cutoff_fn=spk.nn.CosineCutoff(settings.cutoff),
    )
    stock.representation.load_state_dict(module.representation.state_dict())
    test = _mixed_frames()
    fast = Ensemble([module], settings).predict(test)
    ref = Ensemble([stock], settings).predict(test)
    np.testing.assert_allclose(fast.energies, ref.energies, rtol=0, atol=1e-4)
    for f, r in zip(fast.forces, ref.forces):
        np.testing.assert_allclose(f, r, rtol=0, atol=1e-5)


def test_forces_are_minus_energy_gradient(ensemble):
    """Analytic forces = -dE/dx by central differences, in float64: a float64 copy of each member
    with float64 inputs (_energy64). In float32 the difference quotient would be limited by the
    energy's round-off, ulp(124 eV) / h = 7.6e-6 eV / 2e-3 A ~ 4e-3 eV/A, the size of any useful
    tolerance. In float64, h = 1e-4 A: truncation h^2 / 6 |d3E/dx3| (measured 1e-8 eV/A here,
    |d3E/dx3| ~ 6 eV/A^3 from the h = 1e-3 error) and round-off eps64 |E| / h = 3e-10 eV/A; the
    tolerance 1e-6 eV/A allows third derivatives up to 600 eV/A^3."""
    import copy

    atoms = _cuni(7, shear=1.5)
    pred = ensemble.predict([atoms])
    h = 1e-4
    for k, member in enumerate(ensemble.members):
        energy = _energy64(copy.deepcopy(member).double())
        analytic = energy(atoms, stress=True)["forces"].detach().numpy()
        # the float32 ensemble gives the float64 member's forces to float32 round-off: positions
        # rounded to float32 (ulp 9.5e-7 A below 16 A) times curvatures of <= 25 eV/A^2 is 2.4e-5
        # eV/A, plus the float32 sums (measured difference 4.9e-6 eV/A)
        np.testing.assert_allclose(pred.forces[0][k], analytic, rtol=0, atol=5e-5)
        for atom, axis in ((3, 0), (17, 2)):
            e = []
            for sign in (1, -1):
                moved = atoms.copy()
                moved.positions[atom, axis] += sign * h
                e.append(energy(moved))
            fd = -(e[0] - e[1]) / (2 * h)
            assert abs(analytic[atom, axis]) > 1e-2  # a non-trivial force
            assert analytic[atom, axis] == pytest.approx(fd, abs=1e-6)


def test_training_reduces_validation_error(trained, frames):
    for t in trained:
        assert len(t.curve) == TRAINING.epochs
        assert [row["epoch"] for row in t.curve] == list(range(1, TRAINING.epochs + 1))
        first, best = t.curve[0]["val_force_rmse"], t.val_force_rmse
        assert best < 0.7 * first
        assert t.curve[t.best_epoch - 1]["val_force_rmse"] == pytest.approx(best)
        assert t.curve[t.best_epoch - 1]["val_loss"] == min(r["val_loss"] for r in t.curve)
        assert t.n_train == 32 and t.n_val == 8
        assert sorted(t.train_ids + t.val_ids) == [a.info["frame_id"] for a in frames]
        assert set(t.curve[0]) == {
            "epoch",
            "train_loss",
            "val_loss",
            "val_force_rmse",
            "val_energy_rmse_per_atom",
            "lr",
        }
    assert trained[0].val_ids != trained[1].val_ids  # the split follows the seed


def test_loaded_member_predicts_total_energies(ensemble, frames):
    # the per-element references travel inside the module: total energies near the EMT labels
    pred = ensemble.predict(frames[:10])
    labels = np.array([a.get_potential_energy() for a in frames[:10]])
    per_atom = np.abs(pred.energies - labels[None]) / len(frames[0])
    assert per_atom.max() < 0.1  # eV/atom, against references of -3.7 / -5.5 eV/atom
    forces = np.concatenate([a.get_forces() for a in frames[:10]])
    rmse = np.sqrt(np.mean((np.concatenate(pred.mean_forces) - forces) ** 2))
    assert rmse < 0.6 * np.sqrt(np.mean(forces**2))


def test_seed_determines_member(trained, frames):
    again = train_member(frames, MODEL, TRAINING.model_copy(update={"epochs": 2}), seed=0)
    again2 = train_member(frames, MODEL, TRAINING.model_copy(update={"epochs": 2}), seed=0)
    other = train_member(frames, MODEL, TRAINING.model_copy(update={"epochs": 2}), seed=5)
    test = _mixed_frames()
    p = [Ensemble.from_bytes([t.blob]).predict(test) for t in (again, again2, other)]
    np.testing.assert_array_equal(p[0].energies, p[1].energies)
    for f0, f1 in zip(p[0].forces, p[1].forces):
        np.testing.assert_array_equal(f0, f1)
    assert again.val_ids == again2.val_ids and again.curve == again2.curve
    assert np.abs(p[0].energies - p[2].energies).max() > 1e-3
    # untrained members differ by seed too
    a, b = (build_member(MODEL, ["Cu", "Ni"], seed=s) for s in (3, 4))
    sa, sb = a.state_dict(), b.state_dict()
    assert any(not torch.equal(sa[k], sb[k]) for k in sa)
    assert all(torch.equal(v, build_member(MODEL, ["Ni", "Cu"], seed=3).state_dict()[k]) for k, v in sa.items())


def test_blob_round_trip(trained):
    blob = trained[0].blob
    payload = torch.load(io.BytesIO(blob), weights_only=True)
    assert payload["format"] == BLOB_FORMAT
    assert payload["elements"] == [28, 29]
    assert payload["atomrefs_eV"] == pytest.approx(REFS, abs=0.6)  # fitted on near-collinear compositions
    module, settings, extra = member_from_bytes(blob)
    assert settings == MODEL
    assert extra["seed"] == 0 and extra["best_epoch"] == trained[0].best_epoch
    blob2 = member_to_bytes(module, settings, extra)
    test = _mixed_frames()
    p1 = Ensemble.from_bytes([blob]).predict(test)
    p2 = Ensemble.from_bytes([blob2]).predict(test)
    p3 = Ensemble([module], settings).predict(test)
    for p in (p2, p3):
        np.testing.assert_array_equal(p1.energies, p.energies)
        for f1, f in zip(p1.forces, p.forces):
            np.testing.assert_array_equal(f1, f)
    with pytest.raises(TypeError):
        member_to_bytes(module, settings, {"bad": object()})
    with pytest.raises(ValueError):
        member_from_bytes(member_to_bytes(module, settings, {})[:0] or torch_save_plain({"format": "other"}))


def torch_save_plain(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_batched_prediction_matches_single_frames(ensemble):
    test = _mixed_frames()
    batched = ensemble.predict(test, batch_size=3)
    assert isinstance(batched, EnsemblePrediction)
    assert batched.energies.shape == (2, len(test))
    assert [f.shape for f in batched.forces] == [(2, len(a), 3) for a in test]
    # one evaluation, batched or alone: float32 sums in another order. Forces: ulp(2.3 eV/A) = 2.4e-7
    # times the terms summed; energies: only the float32 atomwise sum before the float64 reference
    # (model.energy_reference) rounds, |E - sum atomref| << |E|. Measured <= 5.5e-7 eV, 4.8e-7 eV/A.
    for k, atoms in enumerate(test):
        single = ensemble.predict([atoms])
        np.testing.assert_allclose(batched.energies[:, k], single.energies[:, 0], rtol=0, atol=1e-5)
        np.testing.assert_allclose(batched.forces[k], single.forces[0], rtol=0, atol=1e-5)
        f = batched.forces[k]
        by_hand = np.sqrt(((f - f.mean(axis=0)) ** 2).sum(axis=-1).mean(axis=0)).max()
        assert batched.deviation[k] == pytest.approx(by_hand, rel=1e-12)
        np.testing.assert_allclose(batched.mean_forces[k], f.mean(axis=0))
    np.testing.assert_allclose(batched.mean_energies, batched.energies.mean(axis=0))
    np.testing.assert_allclose(batched.energy_std, batched.energies.std(axis=0))
    assert (batched.deviation > 0).all()
    # chunks capped by neighbour pairs give the same numbers
    capped = Ensemble(ensemble.members, ensemble.settings, max_pairs=3000).predict(test)
    np.testing.assert_allclose(capped.energies, batched.energies, rtol=0, atol=1e-5)
    with torch.no_grad():  # forces need autograd even inside no_grad
        np.testing.assert_allclose(ensemble.predict(test[:1]).forces[0], batched.forces[0], rtol=0, atol=1e-5)
    # a 4-atom cell (cutoff > cell) is the 108-atom cell's unit: energy extensive over images
    unit = _cuni(103, repeat=(1, 1, 1))
    p = ensemble.predict([unit, unit.repeat((3, 3, 3))])
    np.testing.assert_allclose(p.energies[:, 1], 27 * p.energies[:, 0], atol=1e-3)


def test_unknown_element_rejected(ensemble):
    atoms = _cuni(1)
    atoms[0].symbol = "Al"
    with pytest.raises(ValueError, match="Al"):
        ensemble.predict([atoms])


def test_calculator_mean_and_relaxation(ensemble):
    atoms = _cuni(11, rattle=0.1, shear=1.5)
    pred = ensemble.predict([atoms])
    atoms.calc = ensemble.calculator()
    e0 = atoms.get_potential_energy()
    assert e0 == pytest.approx(pred.mean_energies[0], abs=1e-9)
    np.testing.assert_allclose(atoms.get_forces(), pred.mean_forces[0], atol=1e-9)
    res = atoms.calc.results
    assert res["model_deviation"] == pytest.approx(pred.deviation[0])
    assert res["energy_std"] == pytest.approx(pred.energy_std[0])
    np.testing.assert_allclose(res["member_energies"], pred.energies[:, 0])
    assert res["free_energy"] == res["energy"]
    BFGS(atoms, logfile=None).run(fmax=0.05, steps=30)
    assert atoms.get_potential_energy() < e0 - 0.05
    assert np.abs(atoms.get_forces()).max() < np.abs(pred.mean_forces[0]).max()


def test_sheared_small_cell_invariances(ensemble):
    atoms = _cuni(21, rattle=0.05, shear=1.5)  # 32 atoms, 7.2 A cell: cutoff 4.5 A > half the height
    heights = atoms.cell.volume / np.linalg.norm(np.cross(atoms.cell[[1, 2, 0]], atoms.cell[[2, 0, 1]]), axis=1)
    assert heights.min() / 2 < MODEL.cutoff
    variants = []
    moved = atoms.copy()
    moved.positions += np.array([1.3, -2.7, 0.4])
    variants.append(moved)
    wrapped = moved.copy()
    wrapped.wrap()
    variants.append(wrapped)
    image = atoms.copy()
    image.positions[4] += atoms.cell[0] - 2 * atoms.cell[2]
    variants.append(image)
    rebased = atoms.copy()  # same lattice, other basis: a2 <- a2 + a1, a3 <- a3 - a2
    cell = atoms.cell.array.copy()
    cell[1] += cell[0]
    cell[2] -= cell[1]
    rebased.set_cell(cell, scale_atoms=False)
    rebased.wrap()
    variants.append(rebased)
    ref = ensemble.predict([atoms])
    pred = ensemble.predict(variants)
    for k in range(len(variants)):
        np.testing.assert_allclose(pred.energies[:, k], ref.energies[:, 0], rtol=0, atol=1e-4)
        np.testing.assert_allclose(pred.forces[k], ref.forces[0], rtol=0, atol=1e-4)


# ----------------------------------------------------------------------------- stress

VOIGT = {(0, 0): 0, (1, 1): 1, (2, 2): 2, (1, 2): 3, (0, 2): 4, (0, 1): 5}


def _triclinic_cuni():
    """8-atom periodic triclinic Cu-Ni cell (all three cell angles off 90 degrees), rattled."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    cell = atoms.cell.array.copy()
    cell[0, 1], cell[0, 2], cell[1, 2] = 0.7, 0.4, -0.3
    atoms.set_cell(cell, scale_atoms=True)
    atoms = atoms.repeat((2, 1, 1))
    atoms.numbers[[1, 4, 6]] = 28
    atoms.rattle(0.1, seed=2)
    return atoms


def _fd_stress(energy, atoms, i, j, h):
    """ASE-convention stress component (1/V) dE/d eps_ij by central differences of ``energy`` under
    the homogeneous strain r -> (1 + eps) r, eps symmetric (eps_ij = eps_ji = h for a shear)."""
    e = []
    for sign in (1, -1):
        eps = np.zeros((3, 3))
        eps[i, j] = eps[j, i] = sign * h
        strained = atoms.copy()
        strained.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        e.append(energy(strained))
    return (e[0] - e[1]) / (2 * h * atoms.get_volume()) / (1 if i == j else 2)


def _energy64(module):
    """Energy (eV) of one frame from a float64 copy of a member: frame_inputs with positions, cell
    and offsets rebuilt in float64 (float32 positions would limit the finite differences)."""
    from al_flows.potential.inputs import collate_inputs, frame_inputs

    def energy(atoms, stress=False):
        inputs = collate_inputs([frame_inputs(atoms, MODEL.cutoff)])
        cell = atoms.cell.array
        shifts = np.rint(inputs["_offsets"].double().numpy() @ np.linalg.inv(cell))
        inputs["_positions"] = torch.from_numpy(atoms.positions.copy())
        inputs["_cell"] = torch.from_numpy(cell.copy())[None]
        inputs["_offsets"] = torch.from_numpy(shifts @ cell)
        with torch.enable_grad():
            out = module(inputs)
        return out if stress else float(out["energy"][0].detach())

    return energy


def test_member_stress_is_the_strain_derivative_of_its_energy(ensemble):
    import copy

    from al_flows.potential.stress import enable_stress, stress_enabled, stress_to_voigt

    atoms = _triclinic_cuni()
    # the finite-difference helper reproduces ASE's own convention (EMT's analytic stress)
    emt = atoms.copy()
    emt.calc = EMT()

    def e_emt(a):
        a.calc = EMT()
        return a.get_potential_energy()

    for (i, j), k in VOIGT.items():
        assert _fd_stress(e_emt, atoms, i, j, 1e-4) == pytest.approx(emt.get_stress()[k], rel=1e-5, abs=1e-8)

    # float64 copy of a trained member: analytic stress = FD of its own energy (xx and shear yz)
    module = copy.deepcopy(ensemble.members[0]).double()
    state = {k: v.clone() for k, v in module.state_dict().items()}
    energy = _energy64(module)
    assert enable_stress(module) is module and stress_enabled(module)
    assert type(module.input_modules[0]).__name__ == "Strain" and len(module.input_modules) == 2
    assert module.state_dict().keys() == state.keys()  # no new parameters or buffers
    out = energy(atoms, stress=True)
    stress = stress_to_voigt(out["stress"], torch.as_tensor(atoms.cell.array)[None])[0]
    assert abs(stress[VOIGT[0, 0]]) > 1e-2 and abs(stress[VOIGT[1, 2]]) > 1e-2  # eV/A^3, non-trivial
    for (i, j), k in VOIGT.items():  # xx, yy, zz, yz, xz, xy: ~1e-6 relative (O(h^2) truncation)
        assert stress[k] == pytest.approx(_fd_stress(energy, atoms, i, j, 1e-4), rel=2e-5)
    enable_stress(module, False)
    assert not stress_enabled(module) and len(module.input_modules) == 1 and "stress" not in energy(atoms, True)

    # the float32 ensemble gives the same stress (FD with a larger step: float32 energies). Round-off
    # of the quotient: each energy (|E| = 32 eV, 8 atoms) is off by ~ulp(32 eV) = 3.8e-6 eV, plus the
    # float32 rounding of the strained positions (ulp 4.8e-7 A x |F| <= 1 eV/A x 8 atoms ~ 4e-6 eV),
    # so ~1e-5 eV / (2 h V = 0.19 A^3) = 5e-5 eV/A^3 at most, below the tolerance (>= 8e-5 eV/A^3 for
    # these |stress| >= 0.04 eV/A^3; measured differences <= 4.2e-6 eV/A^3)
    pred = ensemble.predict([atoms], stress=True)
    assert pred.stresses.shape == (2, 1, 6)
    np.testing.assert_allclose(pred.stresses[0, 0], stress, rtol=0, atol=1e-3 * np.abs(stress).max())
    for i, j in ((0, 0), (1, 2)):
        fd = _fd_stress(lambda a: ensemble.predict([a]).energies[:, 0], atoms, i, j, 1e-3)
        np.testing.assert_allclose(pred.stresses[:, 0, VOIGT[i, j]], fd, rtol=2e-3, atol=2e-6)


def test_stress_prediction_leaves_energies_forces_and_members_unchanged(ensemble):
    from al_flows.potential.stress import stress_enabled

    test = _mixed_frames()
    molecule = _cuni(5, repeat=(1, 1, 1))
    molecule.pbc = False
    molecule.cell = np.zeros((3, 3))
    test.append(molecule)
    states = [{k: v.clone() for k, v in m.state_dict().items()} for m in ensemble.members]
    plain = ensemble.predict(test, batch_size=3)
    with_stress = ensemble.predict(test, batch_size=3, stress=True)
    assert plain.stresses is None and plain.mean_stresses is None
    assert with_stress.stresses.shape == (2, len(test), 6)
    # the stress path multiplies positions by the identity strain (exact in float32) and runs the same
    # operations: equal numbers (measured: bitwise), 1e-7 leaves room for a reordered float64 energy sum
    np.testing.assert_allclose(with_stress.energies, plain.energies, rtol=0, atol=1e-7)
    for f1, f0 in zip(with_stress.forces, plain.forces):
        np.testing.assert_allclose(f1, f0, rtol=0, atol=1e-7)
    assert np.isfinite(with_stress.stresses[:, :-1]).all() and np.isnan(with_stress.stresses[:, -1]).all()
    np.testing.assert_allclose(with_stress.mean_stresses, with_stress.stresses.mean(axis=0))
    # members are back to energy + forces only, weights untouched
    assert not any(stress_enabled(m) for m in ensemble.members)
    for m, state in zip(ensemble.members, states):
        assert all(torch.equal(v, state[k]) for k, v in m.state_dict().items())
    # batched stress = single-frame stress; a left-handed basis of the same cell gives the same stress:
    # one evaluation, float32 sums in another order, ulp(|stress| <= 0.18 eV/A^3) = 1.5e-8 times the
    # terms summed (measured 4.5e-8 eV/A^3)
    single = ensemble.predict(test[2:3], stress=True)
    np.testing.assert_allclose(with_stress.stresses[:, 2], single.stresses[:, 0], rtol=0, atol=1e-6)
    left = test[2].copy()
    left.set_cell(test[2].cell.array[[1, 0, 2]], scale_atoms=False)
    assert np.linalg.det(left.cell.array) < 0
    np.testing.assert_allclose(
        ensemble.predict([left], stress=True).stresses[:, 0], single.stresses[:, 0], rtol=0, atol=1e-6
    )


def test_calculator_stress(ensemble):
    from ase.calculators.calculator import PropertyNotImplementedError

    atoms = _cuni(12, shear=1.5)
    pred = ensemble.predict([atoms], stress=True)
    atoms.calc = ensemble.calculator()
    assert "stress" in atoms.calc.implemented_properties
    atoms.get_forces()
    assert "stress" not in atoms.calc.results  # computed only when asked
    np.testing.assert_allclose(atoms.get_stress(), pred.mean_stresses[0], rtol=0, atol=1e-9)
    assert atoms.get_potential_energy() == pytest.approx(pred.mean_energies[0], abs=1e-9)
    molecule = atoms.copy()
    molecule.pbc = False
    molecule.calc = ensemble.calculator()
    with pytest.raises(PropertyNotImplementedError):
        molecule.get_stress()


def test_npt_md_with_the_ensemble(ensemble):
    """NPT exploration driven by the real ensemble (stress from the members): runs, records volume
    and pressure, changes the cell, and leaves the members without stress."""
    from al_flows.exploration.md import NVTSettings, nvt_explore
    from al_flows.potential.stress import stress_enabled

    atoms = _cuni(31, rattle=0.02)
    s = NVTSettings(
        n_runs=2,
        temperatures_K=[100.0],
        n_steps=6,
        timestep_fs=1.0,
        record_every=3,
        ensemble="npt",
        pressure_GPa=1.0,
        barostat_tau_ps=0.05,
        compressibility_per_GPa=0.05,
    )
    frames = nvt_explore([atoms], ensemble, s, round_=0, seed=1)
    assert len(frames) == 4
    for f in frames:
        assert f.info["volume_A3"] == pytest.approx(f.get_volume()) and np.isfinite(f.info["pressure_GPa"])
    assert len({round(f.get_volume(), 6) for f in frames}) > 1
    assert not any(stress_enabled(m) for m in ensemble.members)
