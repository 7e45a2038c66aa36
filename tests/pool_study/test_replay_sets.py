"""Pool and test-set builders of the replayed label-efficiency benchmark (EAM labels, cheap parts only)."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from al_flows.frames.ids import frame_id
from al_flows.labelling.eam import eam_factory
from al_flows.pool_study.replay_sets import check_disjoint, gsfe_frames
from al_flows.validation.defects import stacking_fault
from al_flows.validation.label_efficiency import energy_differences


def _frame(a):
    atoms = bulk("Cu", "fcc", a=a)
    atoms.calc = SinglePointCalculator(atoms, energy=0.0, forces=np.zeros((1, 3)))
    atoms.info["frame_id"] = frame_id(atoms)
    return atoms


def test_check_disjoint_refuses_a_test_frame_of_the_pool():
    pool = [_frame(3.6), _frame(3.7)]
    check_disjoint(pool, [_frame(3.8)])
    with pytest.raises(ValueError, match="1 test frames are pool frames"):
        check_disjoint(pool, [_frame(3.8), _frame(3.7)])


def test_gsfe_specs_give_the_stacking_fault_of_the_autotest():
    # the test set's GSFE (labeller-relaxed along the normal, cell fixed) against the autotest's own
    # stacking_fault with the same cell and no normal cell relaxation: the same numbers, mJ/m^2
    make = eam_factory("Cu_mishin1.eam.alloy")
    fractions = [0.0, 0.5, 1.0]
    frames, specs = gsfe_frames("Cu", make, fractions, "gsfe")
    values = energy_differences(specs, [a.get_potential_energy() for a in frames])
    ref = stacking_fault("Cu", make, n_points=3, size=(2, 2), relax_normal=False)
    assert values == pytest.approx(ref["gamma"][1:], abs=0.5)
    assert 30 < values[-1] < 60  # Mishin et al.'s Cu intrinsic stacking fault, about 45 mJ/m^2
