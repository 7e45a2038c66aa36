"""The "torch" relaxation engine: batched optimisers (al_flows.exploration.batched_optimisers) that reach
ASE's minima, per-replica exit with replicas of different sizes, and neighbour lists of all replicas
from one filter per step (al_flows.potential.skin_neighbours) that equal matscipy's.

The round-off bound of a batched optimiser against ASE's (float64 EMT, evaluated frame by frame on
both sides, so the forces at equal positions are bitwise equal and only the optimiser's float64
arithmetic differs):

- one step: the batched step solves the same equations as ASE's with the same float64 inputs in
  another order of operations (BFGS: a Cholesky solve of ``H dx = f`` where ASE diagonalises ``H``;
  all: batched dot products). Both solves are backward stable, so they differ by at most about
  ``D eps kappa`` relative (D = 3N coordinates, eps = 2.2e-16, kappa the condition number of ``H``;
  1 for FIRE, which solves nothing), on a step of at most ``maxstep`` = 0.2 A;
- a relaxation of n steps: these per-step differences add up, the iteration contracting rather than
  amplifying them on the way into the minimum (positive curvature of EMT there), so the end points
  differ by at most ``n D eps kappa maxstep``; the tests allow ten times that (:func:`x_tol`). kappa
  is that of ASE's final BFGS Hessian of the replica (the learned curvature, <= 70 eV/A^2 over the
  smallest learned eigenvalue), for BFGS and LBFGS (the same quasi-Newton inverse where the memory
  holds every step). Measured: kappa 19 to 28, differences <= 6.2e-15 A against bounds of 2.8e-12
  (FIRE) to 6.1e-11 A (BFGS, 48 atoms).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.optimize import BFGS, FIRE, LBFGS

from al_flows.exploration.batched_optimisers import BatchedBFGS, FIREParameters
from al_flows.exploration.batched_relax import relax_batched
from al_flows.exploration.shear_geometry import shear_cell
from al_flows.frames.neighbours import neighbour_list
from al_flows.potential.ensemble import Ensemble, EnsembleCalculator, EnsemblePrediction
from al_flows.potential.model import ModelSettings, build_member
from al_flows.potential.skin_neighbours import SkinNeighbours
from al_flows.structures.multilayer import cuni_multilayer

EPS = np.finfo(float).eps
MAXSTEP = 0.2  # Angstrom, ASE's default for BFGS, LBFGS and FIRE


class Emt:
    """Ensemble stand-in: two members, EMT and EMT with forces scaled by 1.1 (float64, frame by frame);
    records the number of frames of every prediction."""

    def __init__(self):
        self.calls: list[int] = []

    def predict(self, frames, batch_size=64, stress=False):
        self.calls.append(len(frames))
        energies, forces = [], []
        for a in frames:
            b = a.copy()
            b.calc = EMT()
            e, f = b.get_potential_energy(), b.get_forces()
            energies.append([e, 1.1 * e])
            forces.append(np.stack([f, 1.1 * f]))
        return EnsemblePrediction(np.array(energies).T, forces)


def _rattled(size=(2, 2, 2), variant="pristine", sigma=0.08, seed=0, shear=0.2):
    atoms = cuni_multilayer(size, variant=variant)
    atoms.positions += np.random.default_rng(seed).normal(0.0, sigma, atoms.positions.shape)
    atoms.set_cell(shear_cell(atoms.cell[:], shear), scale_atoms=True)
    return atoms


def _starts():
    """Rattled Cu-Ni cells of 32, 31 (a vacancy) and 48 atoms."""
    return [_rattled(seed=1), _rattled(variant="VNi(N1)", seed=2), _rattled(size=(2, 2, 3), seed=3, sigma=0.12)]


ASE = {"BFGS": BFGS, "LBFGS": LBFGS, "FIRE": FIRE}


def _ase_alone(atoms, optimizer, fmax, steps, downhill=False):
    """``atoms`` relaxed alone by ASE's optimiser with the stand-in's mean (EMT x 1.05)."""
    work = atoms.copy()
    work.calc = EnsembleCalculator(Emt())
    kwargs = {"downhill_check": True} if downhill else {}
    opt = ASE[optimizer](work, logfile=None, trajectory=None, **kwargs)
    converged = opt.run(fmax=fmax, steps=steps)
    kappa = 1.0
    if optimizer != "FIRE":
        bfgs_work = atoms.copy()
        bfgs_work.calc = EnsembleCalculator(Emt())
        bfgs = BFGS(bfgs_work, logfile=None)
        bfgs.run(fmax=fmax, steps=steps)
        kappa = float(np.linalg.cond(bfgs.H))
    return work, opt.nsteps, bool(converged), kappa


def x_tol(n_steps: int, n_atoms: int, kappa: float) -> float:
    """Position tolerance (A) of an n-step batched relaxation against ASE's (module doc)."""
    return 10.0 * max(n_steps, 1) * 3 * n_atoms * EPS * kappa * MAXSTEP


@pytest.mark.parametrize("optimizer", ["BFGS", "LBFGS", "FIRE", "FIRE-downhill"])
def test_batched_optimiser_reaches_ases_minimum(optimizer):
    name, downhill = optimizer.split("-")[0], optimizer.endswith("downhill")
    fmax = 1e-3
    starts = _starts()
    fire = FIREParameters(downhill_check=downhill)
    got = relax_batched(starts, Emt(), fmax=fmax, max_steps=400, optimizer=name, fire=fire, engine="torch")
    for atoms, g in zip(starts, got, strict=True):
        ref, n_ref, converged, kappa = _ase_alone(atoms, name, fmax, 400, downhill)
        assert converged and g.converged and g.finite
        assert g.n_steps == n_ref > 10
        assert kappa < 1e4  # the learned Hessian is well conditioned: the bound is tight
        tol = x_tol(n_ref, len(atoms), kappa)
        assert tol < 1e-8
        np.testing.assert_allclose(g.positions, ref.positions, rtol=0, atol=tol)
        forces = ref.get_forces()
        assert g.energy == pytest.approx(ref.get_potential_energy(), abs=1e-12 + np.abs(forces).sum() * tol)
        assert np.linalg.norm(g.forces, axis=1).max() < fmax


@pytest.mark.parametrize("optimizer", ["BFGS", "LBFGS", "FIRE"])
def test_replicas_of_different_sizes_leave_the_batch_one_by_one(optimizer):
    starts = _starts() + [_rattled(size=(2, 2, 1), seed=4, sigma=0.03)]
    assert [len(a) for a in starts] == [32, 31, 48, 16]
    ens = Emt()
    got = relax_batched(starts, ens, fmax=0.01, max_steps=300, optimizer=optimizer, engine="torch")
    steps = []
    for atoms, g in zip(starts, got, strict=True):
        ref, n_ref, converged, kappa = _ase_alone(atoms, optimizer, 0.01, 300)
        assert g.converged and converged and g.n_steps == n_ref
        np.testing.assert_allclose(g.positions, ref.positions, rtol=0, atol=x_tol(n_ref, len(atoms), kappa))
        steps.append(g.n_steps)
    assert len(set(steps)) == len(steps)  # every replica leaves at its own step
    # one prediction of all running replicas per step; the batch shrinks by one at each exit
    expected, running, done = [], len(steps), 0
    for s in sorted(steps):
        expected += [running] * (s - done + (1 if done == 0 else 0))
        running, done = running - 1, s
    assert ens.calls == expected


class _Quadratic(Calculator):
    """E = 1/2 (x - x0)^T A (x - x0) with A indefinite (a saddle): BFGS learns negative curvature."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, matrix, x0):
        super().__init__()
        self.matrix, self.x0 = matrix, x0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        d = self.atoms.positions.ravel() - self.x0
        g = self.matrix @ d
        self.results = {"energy": 0.5 * float(d @ g), "forces": -g.reshape(-1, 3)}


def test_bfgs_takes_ases_eigenvalue_step_where_the_hessian_is_indefinite():
    rng = np.random.default_rng(7)
    sizes, n_steps = (4, 6), 12
    replicas = []
    for n in sizes:
        q, _ = np.linalg.qr(rng.normal(size=(3 * n, 3 * n)))
        eig = rng.uniform(0.5, 20.0, 3 * n)
        eig[:3] = [-8.0, -3.0, -1.0]
        x0 = rng.normal(0.0, 0.3, 3 * n)
        # start displaced mostly along the negative-curvature directions: the first BFGS update learns one
        start = x0 + q[:, :3] @ rng.normal(0.0, 0.3, 3) + q[:, 3:] @ rng.normal(0.0, 0.01, 3 * n - 3)
        atoms = Atoms(f"Cu{n}", positions=start.reshape(-1, 3), cell=[30.0] * 3, pbc=False)
        replicas.append((atoms, _Quadratic(q @ np.diag(eig) @ q.T, x0)))
    batched = BatchedBFGS([a.positions for a, _ in replicas])
    refs = []
    for atoms, calc in replicas:
        work = atoms.copy()
        work.calc = calc
        refs.append((work, BFGS(work, logfile=None)))
    for _ in range(n_steps):
        forces = []
        for x, (atoms, calc) in zip(batched.positions(), replicas):
            probe = atoms.copy()
            probe.positions = x
            calc.calculate(probe, ["forces"])
            forces.append(calc.results["forces"].copy())
        batched.step(batched.padded(forces), torch.zeros(len(replicas), dtype=torch.float64))
        for work, opt in refs:
            opt.step()
        for x, (work, _) in zip(batched.positions(), refs):
            # kappa(H) stays below 10 here: x_tol(12 steps, 6 atoms, 10) = 2.9e-12 A
            np.testing.assert_allclose(x, work.positions, rtol=0, atol=x_tol(n_steps, max(sizes), 10.0))
    assert batched.eigh_steps > 0  # the indefinite Hessians took ASE's |eigenvalue| step
    for _, opt in refs:
        assert np.linalg.eigvalsh(opt.H).min() < 0 and np.linalg.cond(opt.H) < 10.0


def _pair_set(i, j, shifts):
    return set(zip(i.tolist(), j.tolist(), map(tuple, np.asarray(shifts).tolist())))


def _cluster():
    """A non-periodic frame without a cell (matscipy is given a box)."""
    atoms = cuni_multilayer((2, 2, 1))
    return Atoms(atoms.numbers, positions=atoms.positions, pbc=False)


@pytest.mark.parametrize("cutoff", [4.0, 5.5])
def test_one_filter_gives_matscipys_neighbours_of_every_replica(cutoff):
    frames = [
        _rattled(seed=1),
        _rattled(size=(2, 2, 3), seed=2, shear=0.6),
        _rattled(size=(1, 1, 1), seed=3),
        _cluster(),
    ]
    nl = SkinNeighbours(frames, cutoff, skin=0.5)
    rng = np.random.default_rng(11)
    positions = [a.positions.copy() for a in frames]
    rows = [0, 1, 2, 3]
    for step in range(12):
        # small moves (the candidates are reused) and, every fourth step, moves beyond skin / 2
        scale = 0.3 if step % 4 == 3 else 0.02
        positions = [p + rng.normal(0.0, scale, p.shape) for p in positions]
        if step == 6:
            rows = [3, 1]  # a subset, in another order, as when replicas leave the batch
        got = nl.pairs(rows, [positions[r] for r in rows])
        for r, (i, j, shifts) in zip(rows, got, strict=True):
            probe = frames[r].copy()
            probe.positions = positions[r]
            ref = neighbour_list("ijS", probe, cutoff)
            assert len(i) == len(ref[0]) and _pair_set(i, j, shifts) == _pair_set(*ref)
    assert nl.calls == 12
    assert len(frames) < nl.rebuilds < 12 * len(frames) / 2  # rebuilt after the large moves only


@pytest.fixture(scope="module")
def schnet():
    ms = ModelSettings(n_atom_basis=16, n_interactions=1, n_rbf=10, cutoff=4.0)
    return Ensemble([build_member(ms, ["Cu", "Ni"], seed) for seed in (1, 2)], ms)


def test_skin_inputs_predict_as_the_frames(schnet):
    frames = [_rattled(seed=1), _rattled(variant="VNi(N1)", seed=2), _rattled(size=(2, 2, 3), seed=3)]
    nl = SkinNeighbours(frames, schnet.settings.cutoff)
    moved = [a.positions + np.random.default_rng(k).normal(0.0, 0.05, a.positions.shape) for k, a in enumerate(frames)]
    for a, p in zip(frames, moved):
        a.positions = p
    ref = schnet.predict(frames)
    got = schnet.predict_inputs(nl.inputs([0, 1, 2], moved))
    # the same float32 terms summed in another pair order: energies to a few float32 ulps of the
    # total (ulp of 17 eV: 1.9e-6 eV), forces to 2e-6 eV/A (test_batched_relax.py, DF32)
    np.testing.assert_allclose(got.energies, ref.energies, rtol=3e-7, atol=1e-6)
    for f_got, f_ref in zip(got.forces, ref.forces, strict=True):
        np.testing.assert_allclose(f_got, f_ref, rtol=0, atol=2e-6)


def test_predict_inputs_refuses_elements_the_members_do_not_know(schnet):
    from al_flows.frames.checks import StructureError

    gold = _rattled(seed=1)
    gold.numbers[3] = 79  # Au
    nl = SkinNeighbours([gold], schnet.settings.cutoff)
    with pytest.raises(StructureError, match=r"frame 0: elements \['Au'\] unknown to the ensemble"):
        schnet.predict_inputs(nl.inputs([0], [gold.positions]))
