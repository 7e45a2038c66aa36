"""The VASP reference of convergence properties: atomate2's real EosMaker and ElasticMaker flows
(custodian, emmet, atomate2's EOS fit and elastic-tensor fit) with the labeller's settings, run
with the stand-in vasp_std (EMT + per-element shift) on PATH, against the same properties computed
directly with EMT by the autotest's functions."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import pytest
from ase.calculators.emt import EMT
from jobflow import JobStore, Maker, job, run_locally
from maggma.stores import MemoryStore
from pymatgen.io.vasp import Kpoints
from tests.vasp_standin.standin import LOG_ENV, REFERENCE_SHIFTS, install_wrapper

from al_flows.active_learning import builders
from al_flows.active_learning.flows import ActiveLearningMaker
from al_flows.active_learning.jobs.vasp_labelling import VaspLabelMaker
from al_flows.active_learning.jobs.vasp_properties import VaspPropertyReferenceMaker, ground_state, reference_values
from al_flows.active_learning.stop_policy import StopPolicy
from al_flows.campaign.config import ConfigError, validate_campaign
from al_flows.labelling.vasp_inputs import REFERENCE_KPOINTS, VaspInputSettings, static_maker
from al_flows.validation.properties import PropertyConvergence, PropertyTarget, property_values
from al_flows.workflow.jobs import DATA_STORE, FAILURE_KEY, route

pytest.importorskip("atomate2")

FAST_CUSTODIAN = {"polling_time_step": 0.05, "monitor_freq": 30}
NAMES = ["a0", "v0", "e0", "B", "C11", "C12", "C44"]

# How close atomate2's fits come to the autotest's on the same energy surface (EMT), from the numerics:
# the EOS spans +-5 % linear strain around ASE's a (3.61 A) against the autotest's grid around its own
# minimum, and the elastic fit uses +-0.5 and +-1 % strains against the autotest's +-1 % central
# differences; the higher-order terms left in each are a few tenths of a GPa in B and Cij and a few
# 1e-4 A in a0. Measured differences: a0 1.5e-4 A, e0 8e-5 eV, B 0.3 GPa, Cij <= 0.1 GPa.
TOLERANCE = {"a0": 1e-3, "v0": 1e-2, "e0": 1e-3, "B": 1.5, "C11": 1.5, "C12": 1.5, "C44": 1.5}


def vasp_settings(**extra) -> VaspInputSettings:
    return VaspInputSettings(potcar_spec=True, vasp_cmd="vasp_std", custodian=FAST_CUSTODIAN, **extra)


def test_values_from_atomate2_flows_equal_the_labellers_surface(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    install_wrapper(bin_dir)
    log = tmp_path / "vasp_runs.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv(LOG_ENV, str(log))
    conv = PropertyConvergence(targets=[PropertyTarget(name=n, element="Cu", tolerance=1.0) for n in NAMES])
    maker = VaspPropertyReferenceMaker(static_maker=static_maker(vasp_settings()), reference="vasp:pnnl-cuni")
    job = maker.make(conv, "ref")
    store = JobStore(MemoryStore())
    (tmp_path / "jobs").mkdir()
    run_locally(job, create_folders=True, root_dir=tmp_path / "jobs", store=store, log=False)
    doc = store.get_output(job.uuid)
    assert doc.reference == "vasp:pnnl-cuni" and doc.key == conv.reference_key()
    got = doc.values["Cu"]
    emt = property_values("Cu", EMT, conv.settings, NAMES)
    emt["e0"] += REFERENCE_SHIFTS["Cu"]  # the stand-in's energy is EMT's plus a per-element shift
    for name in NAMES:
        assert got[name] == pytest.approx(emt[name], abs=TOLERANCE[name]), name
    # six EOS cells and the six symmetry-distinct elastic deformations of a cubic crystal, each one VASP run
    assert len(log.read_text().splitlines()) == 12
    jobs = list(store.query({"metadata.stage": "property_reference_vasp"}, properties=["name", "metadata"]))
    assert {d["metadata"]["campaign"] for d in jobs} == {"ref"}
    assert sum(d["name"].startswith("EOS GGA relax deformation") for d in jobs) == 6
    assert sum(d["name"].startswith("elastic relax") for d in jobs) == 6


def test_reference_values_from_hand_made_outputs():
    eos = {"relax": {"EOS": {"birch_murnaghan": {"v0": 2 * 11.5, "e0": -7.4, "b0 GPa": 140.0}}}}
    elastic = {"elastic_tensor": {"ieee_format": [[170, 120, 120, 0, 0, 0]] * 3 + [[0, 0, 0, 75, 0, 0]] * 3}}
    values = reference_values(eos, 2, "fcc", elastic)
    assert values == {
        "v0": 11.5,
        "e0": -3.7,
        "B": 140.0,
        "a0": pytest.approx((4 * 11.5) ** (1 / 3), rel=1e-14),
        "C11": 170.0,
        "C12": 120.0,
        "C44": 75.0,
    }
    assert "C11" not in reference_values(eos, 2, "bcc")
    with pytest.raises(ValueError, match="the EOS fit failed"):
        reference_values({"relax": {"EOS": {"birch_murnaghan": {"exception": "too few points"}}}}, 1, "fcc")


def test_makers_carry_the_labellers_settings_and_the_reference_kpoints():
    maker = VaspPropertyReferenceMaker(static_maker=static_maker(vasp_settings(incar={"ENCUT": 400.0})))
    for relax in (maker.eos_maker.eos_relax_maker, maker.elastic_maker.elastic_relax_maker):
        gen = relax.input_set_generator
        incar = gen.get_input_set(ground_state("Cu", "fcc"), potcar_spec=True).incar  # what VASP would read
        assert incar["ENCUT"] == 400.0 and incar["ISMEAR"] == 1 and incar["SIGMA"] == 0.1  # the labeller's
        assert incar["ISIF"] == 2 and incar["IBRION"] == 2 and incar["NSW"] > 0  # atomate2's own ionic tags
        assert "SYSTEM" not in incar and gen.user_potcar_settings == {"Cu": "Cu", "Ni": "Ni"}
        assert gen.user_kpoints_settings == REFERENCE_KPOINTS and relax.write_input_set_kwargs == {"potcar_spec": True}
        assert relax.run_vasp_kwargs["vasp_cmd"] == "vasp_std"
    assert maker.eos_maker.initial_relax_maker is None and maker.elastic_maker.bulk_relax_maker is None
    grid = VaspPropertyReferenceMaker(static_maker=static_maker(vasp_settings()), kpoints={"grid": (9, 9, 9)})
    kpoints = grid.eos_maker.eos_relax_maker.input_set_generator.user_kpoints_settings
    assert isinstance(kpoints, Kpoints) and tuple(kpoints.kpts[0]) == (9, 9, 9)


def _vasp_dict(tiny_dict, convergence: dict) -> dict:
    d = copy.deepcopy(tiny_dict)
    d.update(labeller={"kind": "vasp"}, test_set={"kind": "perturbed"}, convergence=convergence)
    return d


def _error(d: dict) -> str:
    with pytest.raises(ConfigError) as exc:
        validate_campaign(d, source="c.yaml")
    assert len(str(exc.value).splitlines()) == 1
    return str(exc.value)


def test_campaign_file_with_a_vasp_labeller(tiny_dict):
    props = [{"name": "a0", "element": "Cu"}, {"name": "C44", "element": "Ni"}]
    config = validate_campaign(_vasp_dict(tiny_dict, {"properties": props, "reference_kpoints": {"grid": [8, 8, 8]}}))
    maker = ActiveLearningMaker.from_config(config)
    ref = maker.property_reference_maker
    assert isinstance(ref, VaspPropertyReferenceMaker) and ref.reference == "vasp:pnnl-cuni"
    assert tuple(ref.eos_maker.eos_relax_maker.input_set_generator.user_kpoints_settings.kpts[0]) == (8, 8, 8)
    assert ref.metadata == {"fingerprint": config.fingerprint()} and ref.vasp_category == config.queues.label
    assert builders.property_reference_maker(validate_campaign(_vasp_dict(tiny_dict, {}))) is None

    message = _error(_vasp_dict(tiny_dict, {"properties": [*props, {"name": "E_vac", "element": "Cu"}]}))
    assert "convergence.properties[2].name: 'E_vac' has no VASP reference" in message
    hcp = {**_vasp_dict(tiny_dict, {"properties": props}), "autotest": {"lattice": "sc", "reference": "emt"}}
    assert "the VASP reference is computed for cubic ground states" in _error(hcp)
    ase = {**copy.deepcopy(tiny_dict), "convergence": {"properties": props, "reference_kpoints": {"grid": [8, 8, 8]}}}
    assert "convergence.reference_kpoints: only the VASP reference" in _error(ase)


def test_python_api_builds_the_vasp_reference_from_the_label_maker():
    label = VaspLabelMaker(static_maker=static_maker(vasp_settings()), labeller_name="vasp:pnnl-cuni")
    conv = PropertyConvergence(targets=[PropertyTarget(name="B", element="Cu")])
    maker = ActiveLearningMaker(label_maker=label)
    assert maker.property_reference_maker is None  # no properties, no reference
    maker = ActiveLearningMaker(label_maker=label, stop_policy=StopPolicy(properties=conv))
    assert maker.property_reference_maker.static_maker is label.static_maker
    bad = PropertyConvergence(targets=[PropertyTarget(name="E_vac", element="Cu")])
    with pytest.raises(ValueError, match=r"stop_policy.properties\[0\].name: 'E_vac' has no VASP reference"):
        ActiveLearningMaker(label_maker=label, stop_policy=StopPolicy(properties=bad))


@job
def bad_eos_output(structure) -> dict:
    return {"relax": {"EOS": {"birch_murnaghan": {}}}}  # a fit without v0


@dataclass
class BadEosMaker(Maker):
    name: str = "bad eos"

    def make(self, structure):
        return bad_eos_output(structure)


@dataclass
class UnreachedElasticMaker(Maker):
    name: str = "unreached elastic"

    def make(self, structure):
        return bad_eos_output(structure)  # never runs: the structure it needs is never made


def test_failures_of_the_scaling_and_collect_jobs_are_recorded_in_the_store():
    store = JobStore(MemoryStore(), additional_stores={DATA_STORE: MemoryStore()})
    maker = VaspPropertyReferenceMaker(
        eos_maker=BadEosMaker(), elastic_maker=UnreachedElasticMaker(), metadata={"fingerprint": "fp"}
    )
    conv = PropertyConvergence(targets=[PropertyTarget(name="C11", element="Cu", tolerance=1.0)])
    dispatch = route(maker.make(conv, "camp"), "cpu")  # the campaign routes it (RoundJobs.tag)
    run_locally(dispatch, store=store, create_folders=False, log=False)

    failed = store.docs_store.query({FAILURE_KEY: {"$exists": True}})
    records = {d[FAILURE_KEY]["job_name"]: d[FAILURE_KEY] for d in failed}
    assert set(records) == {"at eos volume Cu", "collect_vasp_properties"}
    scaling, collect = records["at eos volume Cu"], records["collect_vasp_properties"]
    assert scaling["reason"] == "KeyError: 'v0'"
    assert (scaling["campaign"], scaling["fingerprint"], scaling["stage"]) == ("camp", "fp", "property_reference_vasp")
    assert collect["reason"] == (
        "ValueError: VASP property reference of Cu: the elastic flow left no output (see its VASP jobs' failures); "
        "fix them and run the campaign again"
    )
    assert (collect["campaign"], collect["fingerprint"]) == ("camp", "fp")
