"""The ANI-Al sampler as the method has it (Smith et al.; docs/methods.md): every trajectory from a
fresh random cell, the stop on the ensemble's energy spread sigma_E / sqrt(N), stop frames always
labelled (outside the trust window and the cap), and the survival time per trajectory that
decides convergence."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from al_flows.active_learning.stop_policy import stop_decision
from al_flows.exploration.md import ScheduleSettings, langevin_schedule, survival_times
from al_flows.potential.ensemble import EnsemblePrediction
from al_flows.selection.strategies import select
from al_flows.selection.trust_levels import SelectionSettings
from al_flows.structures.generators import AMU_PER_A3

SMALL_CELLS = {"edge_min": 6.0, "edge_max": 7.0, "density_min": 2.0, "density_max": 2.7, "min_distance": 2.0}


class EmtEnergySpread:
    """Ensemble stand-in: both members give EMT forces (force deviation 0); member 1's energy is
    EMT's plus ``alpha`` times the frame's EMT energy above ``e_ref`` (eV), so the energy spread of a
    frame is |alpha (E - e_ref)| / sqrt(2) / sqrt(N) (sample std of two values: |d| / sqrt(2))."""

    def __init__(self, alpha: float, e_ref: float = 0.0):
        self.alpha, self.e_ref = alpha, e_ref

    def predict(self, frames, stress=False):
        energies, forces = [], []
        for a in frames:
            b = a.copy()
            b.calc = EMT()
            e, f = b.get_potential_energy(), b.get_forces()
            energies.append([e, e + self.alpha * (e - self.e_ref)])
            forces.append(np.stack([f, f]))
        return EnsemblePrediction(np.array(energies).T, forces)


def test_energy_spread_by_hand():
    # two members, frames of 4 and 9 atoms: rho = std(ddof=1) / sqrt(N)
    energies = np.array([[1.0, -3.0], [1.6, -1.0]])
    forces = [np.zeros((2, 4, 3)), np.zeros((2, 9, 3))]
    rho = EnsemblePrediction(energies, forces).energy_spread
    assert rho == pytest.approx([0.6 / np.sqrt(2) / 2.0, 2.0 / np.sqrt(2) / 3.0], rel=1e-12)


def _al_start():
    a = Atoms("Al", cell=[4.0, 4.0, 4.0], pbc=True)
    a.info["structure_id"] = "given-al"
    return a


def test_every_trajectory_starts_from_a_fresh_random_cell():
    s = ScheduleSettings(n_runs=4, t_max_ps=0.01, timestep_fs=2.0, record_every=5, cells=SMALL_CELLS)
    frames = langevin_schedule([_al_start()], EmtEnergySpread(0.0), s, seed=3, explorer="ani")
    first = {}
    for a in frames:
        first.setdefault(a.info["run"], a)
    assert sorted(first) == [0, 1, 2, 3]  # no spread: every trajectory runs to the end (5 frames each)
    parents = {a.info["parent_id"] for a in first.values()}
    assert len(parents) == 4 and "given-al" not in parents  # four distinct new cells, none the given structure
    for a in first.values():
        lengths = a.cell.lengths()
        assert a.info["start"] == "random_cells" and set(a.get_chemical_symbols()) == {"Al"}
        assert np.all((lengths >= 6.0) & (lengths <= 7.0))
        density = a.get_masses().sum() / a.get_volume() / AMU_PER_A3
        # n = round(rho V / m): the realised density is within half an atom of the drawn range
        half_atom = 0.5 * a.get_masses()[0] / a.get_volume() / AMU_PER_A3
        assert 2.0 - half_atom <= density <= 2.7 + half_atom
    # another round (another seed) draws other cells
    again = langevin_schedule([_al_start()], EmtEnergySpread(0.0), s, seed=4, explorer="ani")
    assert parents.isdisjoint({a.info["parent_id"] for a in again})


def test_stop_on_energy_spread_against_a_hand_computation():
    # forces do not depend on alpha, so with the same seed the trajectories are those of a run with no
    # spread (alpha 0) up to their stop: each must stop at the first step whose hand-computed rho reaches
    # the threshold
    s = ScheduleSettings(
        n_runs=3, t_max_ps=0.1, timestep_fs=2.0, record_every=1, t_start_K=(800.0, 1000.0), cells=SMALL_CELLS
    )
    free = langevin_schedule([_al_start()], EmtEnergySpread(0.0), s, seed=1)
    ens = EmtEnergySpread(0.2, 0.0)

    def rho(a):  # |0.2 (E - 0)| / sqrt(2) / sqrt(N), E from EMT as the stand-in computes it
        b = a.copy()
        b.calc = EMT()
        return abs(0.2 * b.get_potential_energy()) / np.sqrt(2) / np.sqrt(len(a))

    threshold = float(np.median([rho(a) for a in free if a.info["step"] > 1]))
    stopping = s.model_copy(update={"stop_energy_spread": threshold, "stop_deviation": 1e-9, "record_every": 10})
    frames = langevin_schedule([_al_start()], ens, stopping, seed=1)
    for k in range(3):
        path = [a for a in free if a.info["run"] == k]
        crossing = next((a.info["step"] for a in path if rho(a) >= threshold), None)
        mine = [a for a in frames if a.info["run"] == k]
        stop = [a for a in mine if a.info["stopped"]]
        if crossing is None:
            assert not stop
            continue
        assert len(stop) == 1 and stop[0].info["step"] == crossing
        assert stop[0].info["always_label"] is True
        assert max(a.info["step"] for a in mine) == crossing  # its last frame
        same = path[crossing - 1]
        assert np.allclose(stop[0].positions, same.positions, atol=1e-10)  # same trajectory up to the stop
        for a in mine:
            assert a.info["energy_spread"] == pytest.approx(rho(a), rel=1e-9)  # same EMT, same formula
            assert a.info["deviation"] == pytest.approx(0.0, abs=1e-12)  # the force deviation never stopped it
            if not a.info["stopped"]:
                assert a.info["selectable"] is False and rho(a) < threshold
    assert any(a.info["stopped"] for a in frames)


def _frame(dev, fid, **info):
    a = Atoms("Al", positions=[[0.0, 0.0, float(fid)]], cell=[5, 5, 5], pbc=True)
    a.calc = SinglePointCalculator(a, energy=0.0, forces=np.zeros((1, 3)))
    a.info.update(deviation=dev, frame_id=f"f{fid}", **info)
    return a


def test_stop_frames_are_always_labelled_whatever_the_window_and_cap():
    stops = [_frame(d, i, always_label=True, stopped=True) for i, d in enumerate([0.01, 0.5, 9.0])]  # acc/cand/fail
    snapshots = [_frame(0.5, 10 + i, selectable=False) for i in range(3)]  # candidates that only measure
    free = [_frame(0.5, 20 + i) for i in range(3)]  # candidates of another explorer
    frames = stops + snapshots + free
    s = SelectionSettings(trust_lo=0.1, trust_hi=1.0, max_candidates=1, pick="highest")
    r = select(frames, s, exclude_ids=["f2"])
    # every stop frame not labelled already, plus one of the free candidates (the cap: ties -> lowest index)
    assert r.selected == [0, 1, 6] and r.n_duplicate == 1
    assert (r.n_accurate, r.n_candidate, r.n_failed) == (1, 7, 1)  # the classes do not depend on the marks
    # a cap of zero free picks: only the stop frames (no free candidate left)
    assert select(stops + snapshots, s).selected == [0, 1, 2]
    # the baselines ignore the marks and draw from every frame
    assert len(select(frames, s.model_copy(update={"strategy": "random"})).selected) == 1


def test_survival_times_and_the_survival_stop():
    frames = [
        _frame(0.1, 1, run=0, time_ps=0.5, stopped=True),
        _frame(0.1, 2, run=1, time_ps=0.2, stopped=False),
        _frame(0.1, 3, run=2, time_ps=1.5, stopped=True),
    ]
    dropped = [{"replica": 3, "step": 40, "time_ps": 0.08, "reason": "atoms closer than 0.5 A"}]
    times = survival_times(frames, dropped, n_runs=5, t_max_ps=2.0)
    assert times == [0.5, 2.0, 1.5, 0.08, 2.0]
    median = float(np.median(times))  # 1.5
    assert stop_decision(0.0, 10, 0, None, 5, median, 1.5).converged
    assert not stop_decision(0.0, 10, 0, None, 5, median, 1.6).stop
    assert not stop_decision(1.0, 10, 0, 0.9, 5, median, 1.6).converged  # every target that is set must hold
    assert not stop_decision(1.0, 10, 0, 0.9, 5, None, 1.0).converged  # no ANI-Al run: no survival measured
    assert stop_decision(0.0, 10, 4, None, 5, median, 1.6).reason == "round limit"


def test_settings_refuse_a_sampler_that_labels_nothing_and_unreachable_targets():
    from al_flows.campaign.config import validate_campaign
    from helpers import TINY

    with pytest.raises(ValueError, match="would label nothing"):
        ScheduleSettings(label_stop_frames=False, select_snapshots=False)
    ani = {"kind": "langevin_schedule", "name": "ani", "t_max_ps": 1.0}
    with pytest.raises(ValueError, match="survival_time_ps.*exceeds"):
        validate_campaign({**TINY, "explorers": [ani], "convergence": {"survival_time_ps": 2.0}})
    with pytest.raises(ValueError, match="no langevin_schedule explorer"):
        validate_campaign({**TINY, "convergence": {"survival_time_ps": 1.0}})
    with pytest.raises(ValueError, match="both null"):
        validate_campaign({**TINY, "convergence": {"accurate_ratio": None}})
    ok = validate_campaign(
        {**TINY, "explorers": [ani], "convergence": {"survival_time_ps": 1.0, "accurate_ratio": None}}
    )
    assert ok.convergence.survival_time_ps == 1.0
