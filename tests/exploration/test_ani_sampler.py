"""The ANI-Al sampler as the method has it (Smith et al.; docs/methods.md): every trajectory from a
fresh random cell, the stop on the ensemble's energy spread (the size-intensive measure by default,
the method's sigma_E / sqrt(N) on request), stop frames always labelled (outside the trust window and
the cap), and the survival time per trajectory that decides convergence."""

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
    """Ensemble stand-in: both members give EMT forces (force deviation 0); member 0's per-atom
    energies are EMT's e_i, member 1's are ``e_i + alpha (e_i - e_ref / N) + offset`` (eV). So member
    1's energy is EMT's plus ``alpha`` times the frame's EMT energy above ``e_ref`` plus ``offset``
    per atom: the energy spread of a frame is |alpha (E - e_ref) + N offset| / sqrt(2) / sqrt(N)
    (sample std of two values: |d| / sqrt(2)) and its intensive spread |alpha| std_i(e_i) / sqrt(2)
    (the offset cancels)."""

    def __init__(self, alpha: float, e_ref: float = 0.0, offset: float = 0.0):
        self.alpha, self.e_ref, self.offset = alpha, e_ref, offset

    def predict(self, frames, stress=False):
        energies, forces, per_atom = [], [], []
        for a in frames:
            b = a.copy()
            b.calc = EMT()
            e_i, f = b.get_potential_energies(), b.get_forces()
            other = e_i + self.alpha * (e_i - self.e_ref / len(a)) + self.offset
            per_atom.append(np.stack([e_i, other]))
            energies.append([e_i.sum(), other.sum()])
            forces.append(np.stack([f, f]))
        return EnsemblePrediction(np.array(energies).T, forces, atom_energies=per_atom)


def _emt_atom_energies(a) -> np.ndarray:
    b = a.copy()
    b.calc = EMT()
    return b.get_potential_energies()


def test_energy_spread_by_hand():
    # two members, frames of 4 and 9 atoms: rho = std(ddof=1) / sqrt(N)
    energies = np.array([[1.0, -3.0], [1.6, -1.0]])
    forces = [np.zeros((2, 4, 3)), np.zeros((2, 9, 3))]
    rho = EnsemblePrediction(energies, forces).energy_spread
    assert rho == pytest.approx([0.6 / np.sqrt(2) / 2.0, 2.0 / np.sqrt(2) / 3.0], rel=1e-12)


def _synthetic(n_repeat: int, offsets, local) -> EnsemblePrediction:
    """Members' per-atom energies of a cell that repeats an 8-atom pattern ``n_repeat`` times: member m
    gives ``e_i + offsets[m] + local[m, i]`` (eV) on every copy of the pattern."""
    e = np.linspace(-3.6, -3.1, 8)  # eV per atom of the pattern
    per_atom = np.tile(e[None, :] + np.asarray(offsets)[:, None] + local, (1, n_repeat))
    n = 8 * n_repeat
    return EnsemblePrediction(per_atom.sum(axis=1)[:, None], [np.zeros((len(offsets), n, 3))], atom_energies=[per_atom])


def test_intensive_spread_ignores_a_per_atom_offset_while_rho_grows_as_sqrt_n():
    offsets = [0.0, 0.05, -0.03]  # eV per atom
    local = np.random.default_rng(0).normal(0.0, 0.01, (3, 8))  # a local disagreement of every atom
    small, large = _synthetic(1, offsets, local), _synthetic(8, offsets, local)
    # the 64-atom cell holds 8 copies of the 8-atom one: the same per-atom numbers, so the same
    # intensive spread up to float64 rounding (sums of 64 against 8 terms, about 1e-16 relative)
    assert large.energy_spread_intensive[0] == pytest.approx(small.energy_spread_intensive[0], rel=1e-12)
    assert small.energy_spread_intensive[0] > 0.005  # the local part counts
    # the method's rho: sigma_E is 8 times larger in the 64-atom cell, sqrt(N) sqrt(8) times
    assert large.energy_spread[0] / small.energy_spread[0] == pytest.approx(np.sqrt(8.0), rel=1e-12)
    # without the local part only the offset is left: rho = std(offsets) sqrt(N), intensive 0
    for cell, n in ((_synthetic(1, offsets, 0.0 * local), 8), (_synthetic(8, offsets, 0.0 * local), 64)):
        assert cell.energy_spread[0] == pytest.approx(np.std(offsets, ddof=1) * np.sqrt(n), rel=1e-12)
        assert cell.energy_spread_intensive[0] == pytest.approx(0.0, abs=1e-14)


def test_intensive_spread_of_one_disagreeing_atom_by_hand():
    # two members; member 1 puts delta more on atom 0 of 8. Centred, the members differ by
    # delta (1 - 1/8) on atom 0 and -delta/8 on the others; the sample variance of two values is d^2 / 2,
    # so the mean over atoms is delta^2 / 2 ((7/8)^2 + 7 / 8^2) / 8 = delta^2 7 / 128
    delta = 0.4
    local = np.zeros((2, 8))
    local[1, 0] = delta
    pred = _synthetic(1, [0.0, 0.0], local)
    assert pred.energy_spread_intensive[0] == pytest.approx(delta * np.sqrt(7.0 / 128.0), rel=1e-12)
    assert pred.energy_spread[0] == pytest.approx(delta / np.sqrt(2.0) / np.sqrt(8.0), rel=1e-12)
    with pytest.raises(ValueError, match="no per-atom energies.*stop_measure: energy_spread"):
        _ = EnsemblePrediction(pred.energies, pred.forces).energy_spread_intensive


def test_the_default_stop_is_the_intensive_spread_and_energy_spread_keeps_the_method_rule():
    assert ScheduleSettings().stop_measure == "energy_spread_intensive"
    # members that differ by 0.5 eV per atom and nothing else: rho = 0.5 sqrt(N / 2) > 1.0 eV on these
    # cells (6-7 A edges at 2.0-2.7 g/cm^3: N >= 9), far over its 0.10 eV threshold; the intensive spread is 0
    ens = EmtEnergySpread(0.0, offset=0.5)
    s = ScheduleSettings(n_runs=3, t_max_ps=0.02, timestep_fs=2.0, record_every=5, cells=SMALL_CELLS)
    kept = langevin_schedule([_al_start()], ens, s, seed=2)
    assert kept and not any(a.info["stopped"] for a in kept)  # every trajectory runs to its end
    assert all(a.info["energy_spread_intensive"] == pytest.approx(0.0, abs=1e-12) for a in kept)
    assert all(a.info["energy_spread"] > 1.0 for a in kept)
    method = langevin_schedule([_al_start()], ens, s.model_copy(update={"stop_measure": "energy_spread"}), seed=2)
    assert [a.info["step"] for a in method] == [1, 1, 1] and all(a.info["stopped"] for a in method)


def test_stop_on_the_intensive_spread_against_a_hand_computation():
    # as the energy_spread test below, with the intensive spread |alpha| std_i(e_i) / sqrt(2) and a
    # per-atom offset of 1 eV that must not matter
    s = ScheduleSettings(
        n_runs=3, t_max_ps=0.1, timestep_fs=2.0, record_every=1, t_start_K=(800.0, 1000.0), cells=SMALL_CELLS
    )
    free = langevin_schedule([_al_start()], EmtEnergySpread(0.0), s, seed=1)

    def intensive(a):
        return 0.3 * np.std(_emt_atom_energies(a)) / np.sqrt(2)

    threshold = float(np.median([intensive(a) for a in free if a.info["step"] > 1]))
    stopping = s.model_copy(
        update={"stop_energy_spread_intensive": threshold, "stop_energy_spread": 1e-9, "stop_deviation": 1e-9}
    )
    frames = langevin_schedule([_al_start()], EmtEnergySpread(0.3, offset=1.0), stopping, seed=1)
    for k in range(3):
        path = [a for a in free if a.info["run"] == k]
        crossing = next((a.info["step"] for a in path if intensive(a) >= threshold), None)
        mine = [a for a in frames if a.info["run"] == k]
        stop = [a for a in mine if a.info["stopped"]]
        assert [a.info["step"] for a in stop] == ([] if crossing is None else [crossing])
        assert max(a.info["step"] for a in mine) == (crossing or path[-1].info["step"])
        for a in mine:
            assert a.info["energy_spread_intensive"] == pytest.approx(intensive(a), rel=1e-9)
            assert a.info["energy_spread"] >= 1.0  # the offset alone: sqrt(N / 2) eV, never a stop here
    assert any(a.info["stopped"] for a in frames)


def test_the_intensive_stop_refuses_an_ensemble_without_per_atom_energies():
    class TotalsOnly(EmtEnergySpread):
        def predict(self, frames, stress=False):
            pred = super().predict(frames, stress)
            return EnsemblePrediction(pred.energies, pred.forces)

    s = ScheduleSettings(n_runs=1, t_max_ps=0.01, timestep_fs=2.0, record_every=1, cells=SMALL_CELLS)
    with pytest.raises(ValueError, match="energy_spread_intensive: the ensemble gives no per-atom energies"):
        langevin_schedule([_al_start()], TotalsOnly(0.0), s, seed=0)
    # the method's rule does not need them; the frames then carry no intensive spread
    method = s.model_copy(update={"stop_measure": "energy_spread"})
    frames = langevin_schedule([_al_start()], TotalsOnly(0.0), method, seed=0)
    assert len(frames) == 5 and not any("energy_spread_intensive" in a.info for a in frames)


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
    stopping = s.model_copy(
        update={
            "stop_measure": "energy_spread",
            "stop_energy_spread": threshold,
            "stop_energy_spread_intensive": 1e-9,
            "stop_deviation": 1e-9,
            "record_every": 10,
        }
    )
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


# the shipped ANI-Al campaign files and their fingerprints before the intensive measure existed
SHIPPED_ANI = {
    "al_random_cells_emt.yaml": "f3da298727ae5370",
    "al_random_cells_eam.yaml": "58f6bc0008b4e9df",
    "al_random_cells_vasp.yaml": "eea5beb45111c1dc",
}


@pytest.mark.parametrize("name", sorted(SHIPPED_ANI))
def test_shipped_ani_campaigns_keep_their_fingerprint_and_their_stop_rule(name):
    from pathlib import Path

    from al_flows.campaign.config import load_campaign
    from al_flows.workflow.config import fingerprint_of

    config, _ = load_campaign(Path(__file__).parents[2] / "flows" / name)
    assert config.fingerprint() == SHIPPED_ANI[name]
    (explorer,) = [e for e in config.explorers if e.kind == "langevin_schedule"]
    assert explorer.stop_measure == "energy_spread"  # the file says so: the method's rule, as it was run
    # a work directory written before the intensive threshold existed (no such key) is the same campaign
    data = config.model_dump(mode="json")
    for e in data["explorers"]:
        del e["stop_energy_spread_intensive"]
    assert fingerprint_of(data) == config.fingerprint()
    # another intensive threshold is another campaign
    changed = config.model_dump(mode="json")
    changed["explorers"][0]["stop_energy_spread_intensive"] = 0.2
    assert fingerprint_of(changed) != config.fingerprint()
