"""Ensemble.atom_features: a member's learned SchNet atom features (the features pick diverse
samples in), against a direct schnetpack forward of that member."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import schnetpack as spk
import torch
from ase import Atoms
from ase.build import bulk

from al_flows.potential.ensemble import Ensemble
from al_flows.potential.model import ModelSettings, build_member

SETTINGS = ModelSettings(n_atom_basis=16, n_interactions=2, n_rbf=10, cutoff=4.0)


def _frames() -> list[Atoms]:
    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
    cu.rattle(stdev=0.05, seed=1)
    mixed = bulk("Cu", "fcc", a=3.58, cubic=True)
    mixed.symbols[[0, 3]] = "Ni"
    mixed.rattle(stdev=0.05, seed=2)
    sheared = bulk("Ni", "fcc", a=3.52, cubic=True)
    sheared.set_cell(sheared.cell.array + [[0, 0, 0], [0.6, 0, 0], [0, 0, 0]], scale_atoms=True)
    cluster = Atoms("CuNi2", positions=[[0, 0, 0], [2.4, 0, 0], [0, 2.5, 0.3]], pbc=False)
    return [cu, mixed, sheared, cluster]


def _stock_features(member: torch.nn.Module, atoms: Atoms) -> np.ndarray:
    """Per-atom features of a direct forward through schnetpack alone: its ASE neighbour list and
    converter, the member's schnetpack modules, stock schnetpack SchNet with the member's weights;
    the representation's output read with a forward hook."""
    stock = copy.deepcopy(member)
    stock.representation = spk.representation.SchNet(
        n_atom_basis=SETTINGS.n_atom_basis,
        n_interactions=SETTINGS.n_interactions,
        radial_basis=spk.nn.GaussianRBF(SETTINGS.n_rbf, SETTINGS.cutoff),
        cutoff_fn=spk.nn.CosineCutoff(SETTINGS.cutoff),
    )
    stock.representation.load_state_dict(member.representation.state_dict())
    seen = {}
    stock.representation.register_forward_hook(lambda m, i, out: seen.update(x=out["scalar_representation"]))
    converter = spk.interfaces.AtomsConverter(neighbor_list=spk.transform.ASENeighborList(cutoff=SETTINGS.cutoff))
    stock(converter(atoms))  # the full member forward (energy and forces too)
    return seen["x"].detach().double().numpy()


def test_mean_atom_features_equal_a_direct_schnetpack_forward():
    members = [build_member(SETTINGS, ["Cu", "Ni"], seed) for seed in (0, 1)]
    ensemble = Ensemble(members, SETTINGS)
    frames = _frames()
    ours = ensemble.atom_features(frames, batch_size=2)  # member 0; two batches of two frames
    assert [x.shape for x in ours] == [(len(a), SETTINGS.n_atom_basis) for a in frames]
    for atoms, x in zip(frames, ours, strict=True):
        ref = _stock_features(members[0], atoms)
        # float32 on both sides; they differ in neighbour list (matscipy vs ASE), pair order (each pair once
        # vs both directions) and batching, i.e. only in the order of float32 sums of a few dozen messages per
        # atom per interaction. Features here reach |x| ~ 4, where a float32 ulp is 4.8e-7; measured largest
        # difference 9.5e-7 (2 ulps), of the means 4e-7: 1e-5 absolute leaves a factor 10 for other builds
        np.testing.assert_allclose(x, ref, rtol=0, atol=1e-5)
        np.testing.assert_allclose(x.mean(axis=0), ref.mean(axis=0), rtol=0, atol=1e-5)
    # another member has other features (a feature space of its own)
    other = ensemble.atom_features(frames[:1], member=1)[0]
    assert np.abs(other - ours[0]).max() > 1e-2
    np.testing.assert_allclose(other, _stock_features(members[1], frames[0]), rtol=0, atol=1e-5)
    # batching does not change a frame's features (float32: same 1e-5)
    single = ensemble.atom_features(frames[1:2])[0]
    np.testing.assert_allclose(single, ours[1], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="member 2: the ensemble has 2 members"):
        ensemble.atom_features(frames, member=2)
