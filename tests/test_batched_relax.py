"""Batched relaxation (al_flows.batched_relax) and the batched shear explorer: equal to ASE's
optimisers run one replica at a time, with one ensemble prediction per step for all replicas."""

from __future__ import annotations

import numpy as np
import pytest
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms
from ase.optimize import BFGS, FIRE, LBFGS

from al_flows.batched_relax import FIREParameters, relax_batched
from al_flows.ensemble import Ensemble, EnsembleCalculator, EnsemblePrediction
from al_flows.model import ModelSettings, build_member
from al_flows.multilayer import cuni_multilayer
from al_flows.shear import ShearSettings, explore_shear, explore_shear_batched, shear_cell

ASE_OPT = {"FIRE": FIRE, "BFGS": BFGS, "LBFGS": LBFGS}


class Counting:
    """Wraps an ensemble and records the number of frames of every ``predict`` call."""

    def __init__(self, ensemble):
        self.ensemble = ensemble
        self.calls: list[int] = []

    def predict(self, frames, **kwargs):
        self.calls.append(len(frames))
        return self.ensemble.predict(frames, **kwargs)


class EmtPair:
    """Ensemble stand-in with a real minimum: member 0 is EMT, member 1 EMT with forces scaled by
    (1 + spread); NaN everywhere once cell[0,1] exceeds ``nan_above`` (Angstrom)."""

    def __init__(self, spread=0.1, nan_above=None):
        self.spread, self.nan_above = spread, nan_above

    def predict(self, frames, batch_size=64, stress=False):
        energies, forces = [], []
        for a in frames:
            b = a.copy()
            b.calc = EMT()
            e, f = b.get_potential_energy(), b.get_forces()
            if self.nan_above is not None and a.cell[0, 1] > self.nan_above:
                e, f = np.nan, np.full_like(f, np.nan)
            energies.append([e, e * (1 + self.spread)])
            forces.append(np.stack([f, f * (1 + self.spread)]))
        return EnsemblePrediction(np.array(energies).T, forces)


@pytest.fixture(scope="module")
def schnet():
    """Two tiny random SchNet members (real model path: neighbour lists, collation, autograd forces)."""
    ms = ModelSettings(n_atom_basis=16, n_interactions=1, n_rbf=10, cutoff=4.0)
    return Ensemble([build_member(ms, ["Cu", "Ni"], seed) for seed in (1, 2)], ms)


def _e_tol(energy: float) -> float:
    """1e-6 eV, or the float32 round-off of a summed total energy where that is larger: a batched
    forward pass sums the per-atom energies of a replica in another order (one float32 ulp of
    17.8 eV is 1.9e-6 eV); forces and positions are not affected."""
    return max(1e-6, 3e-7 * abs(energy))


def _perturbed(size=(2, 2, 2), variant="pristine", sigma=0.05, seed=0, shear=0.2):
    atoms = cuni_multilayer(size, variant=variant)
    atoms.positions += np.random.default_rng(seed).normal(0.0, sigma, atoms.positions.shape)
    atoms.set_cell(shear_cell(atoms.cell[:], shear), scale_atoms=True)
    return atoms


def _ase_relax(atoms, ensemble, fmax, steps, optimizer="FIRE", **kwargs):
    work = atoms.copy()
    work.calc = EnsembleCalculator(ensemble)
    opt = ASE_OPT[optimizer](work, logfile=None, trajectory=None, **kwargs)
    converged = opt.run(fmax=fmax, steps=steps)
    return work, opt.nsteps, bool(converged)


@pytest.mark.parametrize("downhill", [False, True])
def test_single_replica_follows_ase_fire_step_for_step(schnet, downhill):
    start = _perturbed()
    fire = FIREParameters(downhill_check=downhill)
    for n in (1, 2, 3, 8, 25):
        ref, nsteps, _ = _ase_relax(start, schnet, fmax=1e-9, steps=n, downhill_check=downhill)
        (got,) = relax_batched([start], schnet, fmax=1e-9, max_steps=n, fire=fire)
        assert got.n_steps == nsteps == n and not got.converged and got.finite
        np.testing.assert_allclose(got.positions, ref.positions, rtol=0, atol=1e-6)
        assert got.energy == pytest.approx(ref.get_potential_energy(), abs=1e-6)
        np.testing.assert_allclose(got.forces, ref.get_forces(), rtol=0, atol=1e-6)
        assert got.deviation == pytest.approx(ref.calc.results["model_deviation"], abs=1e-6)
    assert start.calc is None and start.cell[0, 1] == pytest.approx(0.2)  # input untouched


def test_single_replica_converges_as_ase_fire():
    ens = EmtPair()
    start = _perturbed(sigma=0.08)
    ref, nsteps, converged = _ase_relax(start, ens, fmax=0.01, steps=500)
    (got,) = relax_batched([start], ens, fmax=0.01, max_steps=500)
    assert converged and got.converged and got.n_steps == nsteps > 10
    np.testing.assert_allclose(got.positions, ref.positions, rtol=0, atol=1e-9)
    assert np.linalg.norm(got.forces, axis=1).max() < 0.01


def test_replicas_of_different_sizes_batched_equal_alone(schnet):
    starts = [_perturbed(seed=1), _perturbed(variant="VNi(N1)", seed=2), _perturbed(size=(2, 2, 3), seed=3),
              _perturbed(sigma=0.02, seed=4)]
    assert [len(a) for a in starts] == [32, 31, 48, 32]
    counting = Counting(schnet)
    together = relax_batched(starts, counting, fmax=1e-9, max_steps=30)
    assert counting.calls == [4] * 31  # one prediction of all running replicas per step
    for atoms, got in zip(starts, together):
        (alone,) = relax_batched([atoms], schnet, fmax=1e-9, max_steps=30)
        ref, nsteps, _ = _ase_relax(atoms, schnet, fmax=1e-9, steps=30)
        assert got.n_steps == alone.n_steps == nsteps == 30
        for other in (alone, ref):
            positions = other.positions
            np.testing.assert_allclose(got.positions, positions, rtol=0, atol=1e-6)
        assert got.energy == pytest.approx(alone.energy, abs=_e_tol(alone.energy))
        assert got.energy == pytest.approx(ref.get_potential_energy(), abs=_e_tol(alone.energy))
        np.testing.assert_allclose(got.forces, alone.forces, rtol=0, atol=1e-5)
        np.testing.assert_allclose(got.forces, ref.get_forces(), rtol=0, atol=1e-5)
        np.testing.assert_allclose(got.member_forces, alone.member_forces, rtol=0, atol=1e-5)
        assert got.deviation == pytest.approx(alone.deviation, abs=1e-6)
        assert got.deviation == pytest.approx(ref.calc.results["model_deviation"], abs=1e-6)


@pytest.mark.parametrize("optimizer", ["FIRE", "BFGS", "LBFGS"])
def test_converged_replicas_leave_the_batch(optimizer):
    ens = EmtPair()
    starts = [_perturbed(sigma=s, seed=k) for k, s in enumerate((0.02, 0.1, 0.05))]
    counting = Counting(ens)
    got = relax_batched(starts, counting, fmax=0.01, max_steps=300, optimizer=optimizer)
    refs = [_ase_relax(a, ens, fmax=0.01, steps=300, optimizer=optimizer) for a in starts]
    for g, (ref, nsteps, converged) in zip(got, refs):
        assert g.converged and converged and g.n_steps == nsteps
        np.testing.assert_allclose(g.positions, ref.positions, rtol=0, atol=1e-9)
        assert g.deviation == pytest.approx(0.05 * np.linalg.norm(ref.get_forces() / 1.05, axis=1).max(), rel=1e-9)
    steps = sorted(g.n_steps for g in got)
    assert len(set(steps)) > 1
    # batch sizes: 3 until the fastest converges, then 2, then 1; one call per step
    assert counting.calls == [3] * (steps[0] + 1) + [2] * (steps[1] - steps[0]) + [1] * (steps[2] - steps[1])


def test_max_steps_cap_and_zero_steps():
    ens = EmtPair()
    start = _perturbed(sigma=0.1)
    (capped,) = relax_batched([start], ens, fmax=1e-6, max_steps=4)
    assert capped.n_steps == 4 and not capped.converged and capped.finite
    (none,) = relax_batched([start], ens, fmax=1e-6, max_steps=0)
    assert none.n_steps == 0 and not none.converged
    np.testing.assert_array_equal(none.positions, start.positions)


def test_non_finite_replica_stops_alone():
    ens = EmtPair(nan_above=0.5)
    good, bad = _perturbed(shear=0.2), _perturbed(shear=0.6, seed=1)
    got = relax_batched([good, bad], ens, fmax=0.01, max_steps=200)
    assert got[0].finite and got[0].converged
    assert not got[1].finite and not got[1].converged and got[1].n_steps == 0 and np.isnan(got[1].energy)
    with pytest.raises(ValueError, match="constraints"):
        constrained = good.copy()
        constrained.set_constraint(FixAtoms([0]))
        relax_batched([constrained], ens)
    with pytest.raises(ValueError, match="optimizer"):
        relax_batched([good], ens, optimizer="CG")


SHEAR = dict(n_runs=2, sigma=0.03, shear_step=0.4, gamma_max=0.15, max_steps=5, fmax=0.05, max_opt_steps=40, optimizer="FIRE")


def _structures():
    a = cuni_multilayer((2, 2, 2))
    a.info["structure_id"] = "pristine"
    b = cuni_multilayer((2, 2, 2), variant="VNi(N1)")  # no structure_id: parent_id is its frame_id
    return [a, b]


def _assert_same_frames(seq, bat, e_tol=None, x_tol=1e-6):
    assert len(seq) == len(bat) > 0
    for s, b in zip(seq, bat):
        assert set(s.info) == set(b.info)
        for key in ("explorer", "parent_id", "run", "step", "converged", "n_opt_steps", "seed", "variant"):
            assert s.info[key] == b.info[key], key
        assert b.info["gamma"] == pytest.approx(s.info["gamma"], abs=1e-12)
        tol = _e_tol(s.info["energy"]) if e_tol is None else e_tol
        assert b.info["energy"] == pytest.approx(s.info["energy"], abs=tol)
        assert b.get_potential_energy() == pytest.approx(s.get_potential_energy(), abs=tol)
        assert b.info["deviation"] == pytest.approx(s.info["deviation"], abs=1e-6)
        np.testing.assert_allclose(b.positions, s.positions, rtol=0, atol=x_tol)
        np.testing.assert_allclose(b.cell[:], s.cell[:], rtol=0, atol=1e-12)
        np.testing.assert_allclose(b.get_forces(), s.get_forces(), rtol=0, atol=1e-5)
        assert list(b.symbols) == list(s.symbols)


def test_explore_shear_batched_equals_sequential_fire(schnet):
    settings = ShearSettings(**SHEAR)
    structures = _structures()
    seq_dropped, bat_dropped = [], []
    seq = explore_shear(structures, schnet.calculator(), settings, seed=9, explorer="shear", dropped=seq_dropped)
    counting = Counting(schnet)
    bat = explore_shear_batched(structures, counting, settings, seed=9, explorer="shear", dropped=bat_dropped)
    _assert_same_frames(seq, bat)
    assert [f.info["frame_id"] for f in seq] == [f.info["frame_id"] for f in bat]
    # the random members pull two atoms of replica 3 (structure 1, run 1) to 0.48 A in its first
    # relaxation: both paths drop it there (al_flows.replica_checks), the others are unaffected
    assert [(f.info["run"], f.info["step"]) for f in bat] == [(0, 1), (0, 2), (1, 1), (1, 2), (0, 1), (0, 2)]
    assert seq_dropped == bat_dropped
    assert [(d["replica"], d["structure"], d["run"], d["step"]) for d in bat_dropped] == [(3, 1, 1, 1)]
    assert bat_dropped[0]["reason"].startswith("atoms 26 and 27 are 0.48 A apart")
    assert max(counting.calls) == 4  # all four replicas in one prediction
    assert structures[0].cell[0, 1] == 0.0 and structures[0].calc is None  # starting structures untouched


@pytest.mark.parametrize("optimizer", ["FIRE", "BFGS"])
def test_explore_shear_batched_equals_sequential_converging(optimizer):
    ens = EmtPair()
    settings = ShearSettings(**{**SHEAR, "n_runs": 1, "fmax": 0.02, "max_opt_steps": 300, "optimizer": optimizer})
    structures = _structures()
    seq = explore_shear(structures, EnsembleCalculator(ens), settings, seed=4, explorer="x")
    bat = explore_shear_batched(structures, ens, settings, seed=4, explorer="x")
    _assert_same_frames(seq, bat, e_tol=1e-9, x_tol=1e-9)
    assert all(f.info["converged"] for f in bat)


def test_explore_shear_batched_ends_non_finite_runs_as_sequential():
    ens = EmtPair(nan_above=0.9)
    settings = ShearSettings(**{**SHEAR, "gamma_max": 1.0, "max_opt_steps": 300})
    structures = _structures()[1:]
    seq = explore_shear(structures, EnsembleCalculator(ens), settings, seed=2)
    bat = explore_shear_batched(structures, ens, settings, seed=2)
    _assert_same_frames(seq, bat, e_tol=1e-9, x_tol=1e-9)
    assert {f.info["step"] for f in bat} == {1, 2}  # cell[0,1] = 1.2 A at step 3: NaN ends every run


def test_settings_default_batched_keeps_bfgs():
    s = ShearSettings()
    assert s.batched is True and s.optimizer == "BFGS"


def test_explore_shear_batched_bfgs_with_schnet_matches_sequential(schnet):
    """The default explorer (BFGS, batched) with real SchNet members. Short relaxations give the same
    frames up to round-off; a long BFGS walk on this random model's flat surface amplifies the
    round-off of batched evaluation (~1e-7 eV/A) and ends elsewhere within the convergence
    tolerance: both endpoints are converged and their energies differ by less than
    fmax x the distance between them."""
    settings = ShearSettings(**{**SHEAR, "optimizer": "BFGS", "max_opt_steps": 300})
    structures = _structures()
    seq = explore_shear(structures, schnet.calculator(), settings, seed=9, explorer="shear", dropped=[])
    bat = explore_shear_batched(structures, schnet, settings, seed=9, explorer="shear", dropped=[])
    assert [(f.info["parent_id"], f.info["run"], f.info["step"]) for f in seq] == [(f.info["parent_id"], f.info["run"], f.info["step"]) for f in bat]
    short = 0
    for s, b in zip(seq, bat, strict=True):
        assert s.info["converged"] and b.info["converged"]
        dx = np.abs(b.positions - s.positions)
        if s.info["n_opt_steps"] <= 20:  # well-conditioned: identical path
            short += 1
            assert b.info["n_opt_steps"] == s.info["n_opt_steps"]
            assert dx.max() < 1e-5 and abs(b.info["energy"] - s.info["energy"]) < 1e-5
        else:
            assert abs(b.info["energy"] - s.info["energy"]) <= settings.fmax * np.linalg.norm(dx, axis=1).sum()
            assert dx.max() < 0.1
    assert short >= 2
