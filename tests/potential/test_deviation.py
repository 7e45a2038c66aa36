"""Model deviation of METHODS C against a hand computation."""

import numpy as np
import pytest

from al_flows.potential.deviation import atomic_force_deviation, max_force_deviation


def test_two_members_two_atoms_by_hand():
    # member forces (M=2, N=2, 3)
    f = np.array(
        [
            [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
            [[-1.0, 0.0, 0.0], [0.0, 3.0, 4.0]],
        ]
    )
    # atom 0: mean (0,0,0); deviations 1 and 1 -> sqrt((1 + 1) / 2) = 1
    # atom 1: mean (0,1.5,2); |d|^2 = 1.5^2+2^2 = 6.25 for both -> sqrt(6.25) = 2.5
    np.testing.assert_allclose(atomic_force_deviation(f), [1.0, 2.5])
    assert max_force_deviation(f) == pytest.approx(2.5)


def test_three_members_uses_population_mean_not_sample():
    f = np.zeros((3, 1, 3))
    f[:, 0, 2] = [0.0, 0.0, 3.0]  # mean 1; squared deviations 1, 1, 4 -> mean 2
    assert max_force_deviation(f) == pytest.approx(np.sqrt(2.0))


def test_identical_members_give_zero_and_bad_shape_rejected():
    f = np.tile(np.random.default_rng(0).normal(size=(1, 5, 3)), (4, 1, 1))
    assert max_force_deviation(f) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="members, atoms, 3"):
        max_force_deviation(np.zeros((4, 5)))
