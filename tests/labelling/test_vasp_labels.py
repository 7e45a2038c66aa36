"""TaskDoc -> label conversion by hand: units, force sign, stress convention, failures."""

import numpy as np
import pytest
from ase import Atoms
from ase.units import GPa

from al_flows.labelling.vasp_labels import LabelError, failure_reason, label_from_taskdoc, vasp_stress_to_ase


def frame():
    atoms = Atoms("CuNi", positions=[[0, 0, 0], [1.8, 1.8, 0]], cell=[3.6, 3.6, 3.6], pbc=True)
    atoms.info = {"frame_id": "f1", "round": 2, "explorer": "shear", "deviation": 0.12}
    return atoms


def taskdoc(**over):
    doc = {
        "state": "successful",
        "output": {
            "energy": -9.25,
            "forces": [[0.1, -0.2, 0.3], [-0.1, 0.2, -0.3]],
            "stress": [[10.0, 1.0, 2.0], [1.0, 20.0, 3.0], [2.0, 3.0, 30.0]],
            "structure": {"sites": [{"species": [{"element": "Cu"}]}, {"species": [{"element": "Ni"}]}]},
        },
        "calcs_reversed": [{"has_vasp_completed": "successful"}],
    }
    doc.update(over)
    return doc


def test_stress_kbar_compressive_to_ase_voigt():
    # +10 kBar (VASP, compressive) on xx -> -1 GPa in ASE's convention
    s = vasp_stress_to_ase([[10, 1, 2], [1, 20, 3], [2, 3, 30]])
    np.testing.assert_allclose(s, -0.1 * GPa * np.array([10, 20, 30, 3, 2, 1]))


def test_label_keeps_provenance_units_and_force_sign():
    labelled = label_from_taskdoc(frame(), taskdoc(), "uuid-1", "vasp:pnnl-cuni", "vasp:pnnl-cuni:abc")
    assert labelled.get_potential_energy() == -9.25
    np.testing.assert_allclose(labelled.get_forces(), [[0.1, -0.2, 0.3], [-0.1, 0.2, -0.3]])  # as VASP: -dE/dr
    np.testing.assert_allclose(labelled.get_stress(), vasp_stress_to_ase(taskdoc()["output"]["stress"]))
    assert labelled.info["task_uuid"] == "uuid-1" and labelled.info["round"] == 2 and labelled.info["deviation"] == 0.12
    assert labelled.info["label_settings"] == "vasp:pnnl-cuni:abc"


@pytest.mark.parametrize(
    "doc,reason",
    [
        (
            taskdoc(state="failed", calcs_reversed=[{"has_vasp_completed": "failed"}]),
            "VASP task state 'failed': electronic steps did not converge",
        ),
        (taskdoc(output={"energy": None, "forces": None}), "no output energy or forces"),
        (
            taskdoc(output={**taskdoc()["output"], "forces": [[0, 0, 0]]}),
            "forces have shape (1, 3), the frame has 2 atoms",
        ),
        (
            taskdoc(
                output={
                    **taskdoc()["output"],
                    "structure": {"sites": [{"species": [{"element": "Ni"}]}, {"species": [{"element": "Cu"}]}]},
                }
            ),
            "atom order",
        ),
        (taskdoc(output={**taskdoc()["output"], "forces": [[80.0, 0, 0], [0, 0, 0]]}), "max force 80.0"),
    ],
)
def test_unusable_taskdocs_give_reasons(doc, reason):
    with pytest.raises(LabelError) as exc:
        label_from_taskdoc(frame(), doc, "u", "vasp:x", "s")
    assert reason in str(exc.value)


def test_failure_reason_none_for_success():
    assert failure_reason(taskdoc()) is None
