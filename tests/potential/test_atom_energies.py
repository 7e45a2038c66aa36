"""Per-atom energies of the members (al_flows.potential.atom_energies) and the size-intensive energy
spread built on them, through the real SchNet members (untrained: their disagreement is all the
tests need)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from al_flows.potential.atom_energies import ATOM_ENERGY_KEY, atomwise_module
from al_flows.potential.ensemble import Ensemble
from al_flows.potential.model import ModelSettings, build_member, energy_reference
from al_flows.potential.weights import member_from_bytes, member_to_bytes

MODEL = ModelSettings(n_atom_basis=16, n_interactions=2, n_rbf=10, cutoff=4.5)
OFFSETS = (0.0, 0.3, -0.2)  # eV per atom added to each member's Al reference energy


def _members(same_weights: bool = False):
    """Three Al members; with ``same_weights`` they share one network and differ only by OFFSETS."""
    members = [build_member(MODEL, ["Al"], seed=0 if same_weights else k) for k in range(len(OFFSETS))]
    for m, c in zip(members, OFFSETS, strict=True):
        energy_reference(m).atomref[13] += c
    return members


def _cell_of_8():
    """8 Al atoms (a rattled 2x1x1 fcc supercell)."""
    a = bulk("Al", "fcc", a=4.05, cubic=True).repeat((2, 1, 1))
    a.rattle(0.15, seed=4)
    return a


def test_atom_energies_sum_to_the_members_energies_and_survive_a_weights_file():
    members = _members()
    cells = [_cell_of_8(), bulk("Al", "fcc", a=4.0) * (3, 2, 2)]
    pred = Ensemble(members, MODEL).predict(cells)
    assert pred.atom_energies is not None
    for k, a in enumerate(cells):
        assert pred.atom_energies[k].shape == (3, len(a))
        # schnetpack sums the float32 per-atom outputs in float32, these are summed in float64: the two
        # differ by float32 rounding (epsilon 1.2e-7; 2.3e-7 relative measured on the 12-atom cell)
        assert pred.atom_energies[k].sum(axis=1) == pytest.approx(pred.energies[:, k], rel=2e-6, abs=1e-6)
    assert ATOM_ENERGY_KEY in members[0].model_outputs  # the ensemble switched them on, in place
    again = [member_from_bytes(member_to_bytes(m, MODEL, {}))[0] for m in members]
    assert atomwise_module(again[0]).per_atom_output_key is None  # weights files are unchanged
    reloaded = Ensemble(again, MODEL).predict(cells)
    for k in range(len(cells)):
        assert np.allclose(reloaded.atom_energies[k], pred.atom_energies[k], atol=1e-6)


def test_the_intensive_spread_of_a_repeated_cell_is_unchanged_while_rho_grows_as_sqrt_n():
    """Members that differ by a per-atom offset (and by their weights): the 2x2x2 repeat of an 8-atom
    cell is the same periodic crystal, so every atom has the same per-atom energy in both cells."""
    small = _cell_of_8()
    large = small.repeat((2, 2, 2))
    pred = Ensemble(_members(), MODEL).predict([small, large])
    rho, intensive = pred.energy_spread, pred.energy_spread_intensive
    assert intensive[0] > 1e-3  # the members disagree locally
    # the same per-atom energies up to float32 rounding of the network in the two cells (3e-6
    # relative measured; float32 epsilon 1.2e-7 amplified by the centring, a difference of nearby values)
    assert intensive[1] == pytest.approx(intensive[0], rel=1e-4)
    assert rho[1] / rho[0] == pytest.approx(np.sqrt(8.0), rel=1e-4)  # the method's rho: sqrt(64 / 8)


def test_a_per_atom_offset_alone_gives_no_intensive_spread():
    """One network, three reference energies: rho = std(offsets) sqrt(N), the intensive spread 0."""
    cells = [_cell_of_8(), _cell_of_8().repeat((2, 2, 2))]
    pred = Ensemble(_members(same_weights=True), MODEL).predict(cells)
    for k, a in enumerate(cells):
        assert pred.energy_spread[k] == pytest.approx(np.std(OFFSETS, ddof=1) * np.sqrt(len(a)), rel=1e-5)
        assert pred.energy_spread_intensive[k] == pytest.approx(0.0, abs=1e-6)  # float32 rounding only


@pytest.mark.parametrize("kind", ["painn", "so3net"])
def test_every_model_kind_gives_atom_energies(kind):
    settings = ModelSettings(kind=kind, n_atom_basis=8, n_interactions=1, n_rbf=6, cutoff=4.0)
    members = [build_member(settings, ["Al"], seed=k) for k in range(2)]
    small = _cell_of_8()
    pred = Ensemble(members, settings).predict([small, small.repeat((2, 2, 2))])
    for k in range(2):
        assert pred.atom_energies[k].sum(axis=1) == pytest.approx(pred.energies[:, k], rel=2e-6, abs=1e-6)
    assert pred.energy_spread_intensive[1] == pytest.approx(pred.energy_spread_intensive[0], rel=1e-4)
