"""Batched relaxation (al_flows.exploration.batched_relax) and the batched shear explorer: equal to ASE's
optimisers run one replica at a time, with one ensemble prediction per step for all replicas."""

from __future__ import annotations

import numpy as np
import pytest
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms
from ase.optimize import BFGS, FIRE, LBFGS

from al_flows.exploration.batched_relax import FIREParameters, relax_batched
from al_flows.exploration.shear import ShearSettings
from al_flows.exploration.shear_batched import explore_shear_batched
from al_flows.exploration.shear_geometry import shear_cell
from al_flows.exploration.shear_sequential import explore_shear
from al_flows.potential.ensemble import Ensemble, EnsembleCalculator, EnsemblePrediction
from al_flows.potential.model import ModelSettings, build_member
from al_flows.structures.multilayer import cuni_multilayer

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
    17.8 eV is 1.9e-6 eV); a single evaluation's forces are not affected beyond DF32."""
    return max(1e-6, 3e-7 * abs(energy))


# Tolerances of SchNet (float32) comparisons after an optimiser walk, from the numerics:
# - DF32 (eV/A): the force round-off of one evaluation. Batched and one-frame forward passes sum
#   the same float32 terms in another order (ulp of a 1 eV/A force: 1.2e-7), and a position that
#   differs in float64 by less than a float32 ulp (4.8e-7 A at 4-8 A) can round to the next float32
#   value, moving the forces by curvature x ulp (random members: |curvature| <= 0.7 eV/A^2, EMT up
#   to 24 eV/A^2, finite-difference Hessians of the test multilayer). Measured at equal positions:
#   <= 1.2e-7 eV/A; DF32 = 2e-6 eV/A covers both terms.
# - FIRE (unit mass) moves by dr = dt * v with v = sum(dt * F): a force error DF held over n steps
#   moves an atom by at most DF * (sum of dt)^2 where no curvature restores it (a converged
#   relaxation caps it at DF / smallest curvature). dt starts at FIREParameters.dt and grows by
#   finc per step once Nmin + 1 uphill-free steps have passed, up to dtmax; a reset only shrinks it,
#   so _fire_time(n) bounds sum(dt). 40 steps: sum(dt) <= 19.4, tolerance 7.6e-4 A (measured
#   differences on the tests' walks: <= 1.8e-6 A). The bound ignores negative curvature of the
#   random members, which could amplify further; the step counts are compared exactly.
# - Given positions that agree to dx, energies agree to _e_tol + sum_i |F_i| dx_i (first order,
#   |F| taken at one end plus K_MAX dx for the other) and forces to DF32 + K_MAX dx.
DF32 = 2e-6  # eV/A
K_MAX = 25.0  # eV/A^2, above the largest Hessian eigenvalue of EMT Cu-Ni (23.8) and the random members (0.7)


def _fire_time(n_steps: int, fire: FIREParameters | None = None) -> float:
    """Upper bound of the summed FIRE time steps of an n-step relaxation (ASE FIRE time units)."""
    fire = fire or FIREParameters()
    return sum(min(fire.dtmax, fire.dt * fire.finc ** max(0, k - fire.Nmin - 2)) for k in range(1, n_steps + 1))


def _fire_x_tol(*n_steps: int) -> float:
    """Position tolerance (A) after FIRE relaxations of the given step counts, one after the other
    (errors of earlier relaxations carried into later ones add up)."""
    return sum(DF32 * _fire_time(n) ** 2 for n in n_steps) + 1e-12


def _e_walk_tol(energy: float, forces: np.ndarray, dpos: np.ndarray) -> float:
    """Energy tolerance (eV) at positions that differ by ``dpos`` [N, 3] (A), forces [N, 3] at one end."""
    dx = np.linalg.norm(dpos, axis=1)
    return _e_tol(energy) + float(np.sum((np.linalg.norm(forces, axis=1) + K_MAX * dx) * dx))


def _f_walk_tol(dpos: np.ndarray) -> float:
    """Force (and model deviation) tolerance (eV/A) at positions that differ by ``dpos`` (A)."""
    return DF32 + K_MAX * float(np.abs(dpos).max())


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
        # one frame per forward pass on both paths (measured: bitwise equal); the tolerances allow
        # the float32 round-off of an n-step FIRE walk (DF32, _fire_x_tol above): 2e-8 A after one
        # step, 6.5e-5 A after 25
        np.testing.assert_allclose(got.positions, ref.positions, rtol=0, atol=_fire_x_tol(n))
        dpos = got.positions - ref.positions
        assert got.energy == pytest.approx(ref.get_potential_energy(), abs=_e_walk_tol(got.energy, got.forces, dpos))
        np.testing.assert_allclose(got.forces, ref.get_forces(), rtol=0, atol=_f_walk_tol(dpos))
        assert got.deviation == pytest.approx(ref.calc.results["model_deviation"], abs=_f_walk_tol(dpos))
    assert start.calc is None and start.cell[0, 1] == pytest.approx(0.2)  # input untouched


def test_single_replica_converges_as_ase_fire():
    ens = EmtPair()
    start = _perturbed(sigma=0.08)
    ref, nsteps, converged = _ase_relax(start, ens, fmax=0.01, steps=500)
    (got,) = relax_batched([start], ens, fmax=0.01, max_steps=500)
    assert converged and got.converged and got.n_steps == nsteps > 10
    # EmtPair is float64 and evaluates every frame alone on both paths: only the order of float64
    # operations in the optimiser can differ (1e-16 relative, ~1e-15 A a step), contracted by EMT's
    # positive curvature (>= 2.2 eV/A^2) on the way to the minimum; measured: bitwise equal
    np.testing.assert_allclose(got.positions, ref.positions, rtol=0, atol=1e-9)
    assert np.linalg.norm(got.forces, axis=1).max() < 0.01


def test_replicas_of_different_sizes_batched_equal_alone(schnet):
    starts = [
        _perturbed(seed=1),
        _perturbed(variant="VNi(N1)", seed=2),
        _perturbed(size=(2, 2, 3), seed=3),
        _perturbed(sigma=0.02, seed=4),
    ]
    assert [len(a) for a in starts] == [32, 31, 48, 32]
    counting = Counting(schnet)
    together = relax_batched(starts, counting, fmax=1e-9, max_steps=30)
    assert counting.calls == [4] * 31  # one prediction of all running replicas per step
    for atoms, got in zip(starts, together):
        (alone,) = relax_batched([atoms], schnet, fmax=1e-9, max_steps=30)
        ref, nsteps, _ = _ase_relax(atoms, schnet, fmax=1e-9, steps=30)
        assert got.n_steps == alone.n_steps == nsteps == 30
        # a 30-step FIRE walk with batched (4 frames) vs one-frame float32 evaluation: positions agree
        # to _fire_x_tol(30) = 1.8e-4 A (measured <= 8e-8 A), energies, forces and deviations to what
        # the measured position difference allows (tolerances above)
        for other, e_other, f_other, dev_other in (
            (alone, alone.energy, alone.forces, alone.deviation),
            (ref, ref.get_potential_energy(), ref.get_forces(), ref.calc.results["model_deviation"]),
        ):
            np.testing.assert_allclose(got.positions, other.positions, rtol=0, atol=_fire_x_tol(30))
            dpos = got.positions - other.positions
            assert got.energy == pytest.approx(e_other, abs=_e_walk_tol(got.energy, got.forces, dpos))
            np.testing.assert_allclose(got.forces, f_other, rtol=0, atol=_f_walk_tol(dpos))
            assert got.deviation == pytest.approx(dev_other, abs=_f_walk_tol(dpos))
        np.testing.assert_allclose(
            got.member_forces, alone.member_forces, rtol=0, atol=_f_walk_tol(got.positions - alone.positions)
        )


@pytest.mark.parametrize("optimizer", ["FIRE", "BFGS", "LBFGS"])
def test_converged_replicas_leave_the_batch(optimizer):
    ens = EmtPair()
    starts = [_perturbed(sigma=s, seed=k) for k, s in enumerate((0.02, 0.1, 0.05))]
    counting = Counting(ens)
    got = relax_batched(starts, counting, fmax=0.01, max_steps=300, optimizer=optimizer)
    refs = [_ase_relax(a, ens, fmax=0.01, steps=300, optimizer=optimizer) for a in starts]
    for g, (ref, nsteps, converged) in zip(got, refs):
        assert g.converged and converged and g.n_steps == nsteps
        # float64 EMT evaluated frame by frame on both paths (see test_single_replica_converges_as_ase_fire)
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


SHEAR = dict(
    n_runs=2, sigma=0.03, shear_step=0.4, gamma_max=0.15, max_steps=5, fmax=0.05, max_opt_steps=40, optimizer="FIRE"
)


def _structures():
    a = cuni_multilayer((2, 2, 2))
    a.info["structure_id"] = "pristine"
    b = cuni_multilayer((2, 2, 2), variant="VNi(N1)")  # no structure_id: parent_id is its frame_id
    return [a, b]


def _assert_same_frames(seq, bat, float64=False):
    """Frames of the sequential and batched explorers agree. float32 SchNet: positions to the FIRE
    round-off bound of all relaxations of the run so far (tolerances above), energies, forces and
    deviations to what the measured position difference allows. ``float64``: an EmtPair ensemble,
    float64 and evaluated frame by frame on both paths, 1e-9 A and eV (measured: bitwise equal)."""
    assert len(seq) == len(bat) > 0
    walked: dict[tuple, list[int]] = {}
    for s, b in zip(seq, bat):
        assert set(s.info) == set(b.info)
        for key in ("explorer", "parent_id", "run", "step", "converged", "n_opt_steps", "seed", "variant"):
            assert s.info[key] == b.info[key], key
        assert b.info["gamma"] == pytest.approx(s.info["gamma"], abs=1e-12)  # the same float64 cell arithmetic
        steps = walked.setdefault((s.info["parent_id"], s.info["run"]), [])
        steps.append(s.info["n_opt_steps"])
        np.testing.assert_allclose(b.positions, s.positions, rtol=0, atol=1e-9 if float64 else _fire_x_tol(*steps))
        dpos = b.positions - s.positions
        e_tol = 1e-9 if float64 else _e_walk_tol(s.info["energy"], s.get_forces(), dpos)
        f_tol = 1e-9 if float64 else _f_walk_tol(dpos)
        assert b.info["energy"] == pytest.approx(s.info["energy"], abs=e_tol)
        assert b.get_potential_energy() == pytest.approx(s.get_potential_energy(), abs=e_tol)
        assert b.info["deviation"] == pytest.approx(s.info["deviation"], abs=f_tol)
        np.testing.assert_allclose(b.cell[:], s.cell[:], rtol=0, atol=1e-12)
        np.testing.assert_allclose(b.get_forces(), s.get_forces(), rtol=0, atol=f_tol)
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
    # relaxation: both paths drop it there (al_flows.exploration.replica_checks), the others are unaffected
    assert [(f.info["run"], f.info["step"]) for f in bat] == [(0, 1), (0, 2), (1, 1), (1, 2), (0, 1), (0, 2)]
    assert seq_dropped == bat_dropped
    assert [(d["replica"], d["structure"], d["run"], d["step"]) for d in bat_dropped] == [(3, 1, 1, 1)]
    assert bat_dropped[0]["reason"].startswith("atoms 26 and 27 are 0.48 A apart")
    assert max(counting.calls) == 4  # all four replicas in one prediction
    assert structures[0].cell[0, 1] == 0.0 and structures[0].calc is None  # starting structures untouched


@pytest.mark.parametrize("engine", ["torch", "ase"])
@pytest.mark.parametrize("optimizer", ["FIRE", "BFGS"])
def test_explore_shear_batched_equals_sequential_converging(optimizer, engine):
    ens = EmtPair()
    settings = ShearSettings(
        **{**SHEAR, "n_runs": 1, "fmax": 0.02, "max_opt_steps": 300, "optimizer": optimizer, "optimizer_engine": engine}
    )
    structures = _structures()
    seq = explore_shear(structures, EnsembleCalculator(ens), settings, seed=4, explorer="x")
    bat = explore_shear_batched(structures, ens, settings, seed=4, explorer="x")
    _assert_same_frames(seq, bat, float64=True)
    assert all(f.info["converged"] for f in bat)


def test_explore_shear_batched_ends_non_finite_runs_as_sequential():
    ens = EmtPair(nan_above=0.9)
    settings = ShearSettings(**{**SHEAR, "gamma_max": 1.0, "max_opt_steps": 300})
    structures = _structures()[1:]
    seq = explore_shear(structures, EnsembleCalculator(ens), settings, seed=2)
    bat = explore_shear_batched(structures, ens, settings, seed=2)
    _assert_same_frames(seq, bat, float64=True)
    assert {f.info["step"] for f in bat} == {1, 2}  # cell[0,1] = 1.2 A at step 3: NaN ends every run


def test_settings_default_batched_keeps_bfgs():
    s = ShearSettings()
    assert s.batched is True and s.optimizer == "BFGS" and s.optimizer_engine == "torch"
    assert ShearSettings(optimizer_engine="ase").optimizer_engine == "ase"  # the earlier engine stays selectable
    with pytest.raises(ValueError, match="engine"):
        relax_batched([_perturbed()], EmtPair(), engine="numpy")


def test_torch_engine_with_skin_neighbour_lists_equals_the_ase_engine(schnet):
    """A real ensemble takes model inputs: the torch engine's neighbour lists come from the skin
    filter (al_flows.potential.skin_neighbours), the ase engine's from matscipy per frame and step.
    The same float32 terms summed in another pair order: the FIRE round-off bound of the walk."""
    starts = [_perturbed(seed=1), _perturbed(variant="VNi(N1)", seed=2), _perturbed(size=(2, 2, 3), seed=3)]
    torch_engine = relax_batched(starts, schnet, fmax=1e-9, max_steps=30, engine="torch")
    ase_engine = relax_batched(starts, schnet, fmax=1e-9, max_steps=30, engine="ase")
    for got, ref in zip(torch_engine, ase_engine, strict=True):
        assert got.n_steps == ref.n_steps == 30
        np.testing.assert_allclose(got.positions, ref.positions, rtol=0, atol=_fire_x_tol(30))
        dpos = got.positions - ref.positions
        assert got.energy == pytest.approx(ref.energy, abs=_e_walk_tol(got.energy, got.forces, dpos))
        np.testing.assert_allclose(got.forces, ref.forces, rtol=0, atol=_f_walk_tol(dpos))
        assert got.deviation == pytest.approx(ref.deviation, abs=_f_walk_tol(dpos))


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
    assert [(f.info["parent_id"], f.info["run"], f.info["step"]) for f in seq] == [
        (f.info["parent_id"], f.info["run"], f.info["step"]) for f in bat
    ]
    # BFGS moves by H^-1 F (ASE: |eigenvalues| of H): a force error DF32 moves an atom by
    # DF32 / omega a step, omega the smallest |eigenvalue| learnt. Taking omega >= 0.05 eV/A^2 (a
    # tenth of the random members' typical |curvature|, 0.5 eV/A^2; H starts at 70 eV/A^2), the
    # relaxations of a run so far (errors carried from step to step add up) give
    # sum(n_opt_steps) * DF32 / 0.05 A: 4.4e-4 A for 11 steps (measured <= 1.6e-6 A).
    short = 0
    walked: dict[tuple, int] = {}
    for s, b in zip(seq, bat, strict=True):
        assert s.info["converged"] and b.info["converged"]
        dx = np.abs(b.positions - s.positions)
        key = (s.info["parent_id"], s.info["run"])
        walked[key] = walked.get(key, 0) + s.info["n_opt_steps"]
        if s.info["n_opt_steps"] <= 20:  # well-conditioned: identical path
            short += 1
            assert b.info["n_opt_steps"] == s.info["n_opt_steps"]
            assert dx.max() < walked[key] * DF32 / 0.05
            assert abs(b.info["energy"] - s.info["energy"]) <= _e_walk_tol(
                s.info["energy"], s.get_forces(), b.positions - s.positions
            )
        else:
            assert (
                abs(b.info["energy"] - s.info["energy"])
                <= _e_tol(s.info["energy"]) + settings.fmax * np.linalg.norm(dx, axis=1).sum()
            )
            assert dx.max() < 0.1
    assert short >= 2
