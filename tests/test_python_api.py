"""The Python API without a campaign file: docs/python_api.md's example run verbatim, the
labelling slot, make(structures), the seed stream."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT

from al_flows.active_learning import ActiveLearningMaker, AseLabelMaker, StopPolicy, VaspLabelMaker
from al_flows.active_learning.seeds import CampaignSeeds
from al_flows.frames.checks import StructureError
from al_flows.labelling.ase import calculator_factory
from al_flows.workflow.jobs import derived_seed

DOC = Path(__file__).resolve().parents[1] / "docs" / "python_api.md"


def doc_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_doc_example_runs_verbatim(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    namespace: dict = {}
    with contextlib.redirect_stdout(out):
        exec(compile(doc_blocks()[0], str(DOC), "exec"), namespace)
    lines = out.getvalue().split("\n")
    rows = [line.split() for line in lines if re.fullmatch(r"\d+ \d+ [0-9.]+", line)]
    assert [r[:2] for r in rows] == [["0", "8"], ["1", "10"]]  # 8 rattled copies, then 2 labels of round 0
    rmse = [float(r[2]) for r in rows]
    assert all(math.isfinite(x) and 0 < x < 5 for x in rmse)  # eV/A
    assert "2 10 round limit" in lines
    # the labels really are EMT's: every label document names the ASE calculator
    record = namespace["record"]
    docs = record.label_documents()
    assert docs and {d["output"]["labeller"] for d in docs} == {"ase:emt"}


def test_flow_goes_to_fireworks_and_round_trips():
    from jobflow.managers.fireworks import flow_to_workflow
    from monty.json import MontyDecoder

    maker = ActiveLearningMaker(campaign="c", ensemble_size=2, stop_policy=StopPolicy(max_rounds=1), label_maker=EMT())
    flow = maker.make(bulk("Cu", cubic=True))
    wf = flow_to_workflow(flow)
    assert len(wf.fws) == len(flow.jobs)  # one Firework per job before round 0 and round 0's job
    stored = json.loads(wf.to_format("json"))  # what a LaunchPad stores

    def dicts(o):
        if isinstance(o, dict):
            yield o
            o = list(o.values())
        for v in o if isinstance(o, list) else []:
            yield from dicts(v)

    # the calculator is recorded as its name and EMT().parameters, never as a live ASE object
    labellers = [d for d in dicts(stored) if d.get("@class") == "AseLabelMaker"]
    assert len(labellers) == 3  # the test-set label job, the initial label job, the round job's Maker
    assert all(d["calculator"] == "emt" and d["calculator_kwargs"] == {"asap_cutoff": False} for d in labellers)
    assert not any(str(d.get("@module", "")).startswith("ase.calculators") for d in dicts(stored))
    label_fw = next(fw for fw in stored["fws"] if fw["name"] == "label")
    label_job = MontyDecoder().process_decoded(label_fw["spec"]["_tasks"][0]["job"])
    rebuilt = calculator_factory(label_job.maker.calculator, label_job.maker.calculator_kwargs)()
    assert type(rebuilt) is EMT and rebuilt.parameters == EMT().parameters
    back = MontyDecoder().process_decoded(json.loads(json.dumps(maker.as_dict())))
    assert isinstance(back.label_maker, AseLabelMaker) and back.label_maker.calculator == "emt"
    assert back.stop_policy.max_rounds == 1  # one round limit, in one place


def test_labelling_slot_accepts_what_users_have():
    lj = ActiveLearningMaker(label_maker="lj").label_maker
    assert isinstance(lj, AseLabelMaker) and lj.calculator == "lj"
    from ase.calculators.lj import LennardJones

    original = LennardJones(sigma=2.3, epsilon=0.4)
    calc = ActiveLearningMaker(label_maker=original).label_maker
    assert calc.calculator == "lj" and calc.calculator_kwargs["sigma"] == 2.3
    assert LennardJones(**calc.calculator_kwargs).parameters == original.parameters  # rebuilt the same
    assert calc.label_settings.startswith("ase:lj:")
    assert calc.label_settings != lj.label_settings  # other parameters: other label settings
    from atomate2.vasp.jobs.core import StaticMaker

    static = StaticMaker()
    vasp = ActiveLearningMaker(label_maker=static).label_maker
    assert isinstance(vasp, VaspLabelMaker) and vasp.static_maker is static
    assert re.fullmatch(r"vasp:static:[0-9a-f]{12}", vasp.label_settings)
    with pytest.raises(TypeError, match=r"label_maker: a dict cannot label frames"):
        ActiveLearningMaker(label_maker={"calculator": "emt"})


def test_make_takes_pymatgen_structures_and_names_the_campaign_by_them():
    from pymatgen.io.ase import AseAtomsAdaptor

    cu = bulk("Cu", cubic=True)
    cuni = cu.copy()
    cuni.symbols[0] = "Ni"
    maker = ActiveLearningMaker(campaign="c", ensemble_size=2, stop_policy=StopPolicy(max_rounds=1))
    flow_cu = maker.make(AseAtomsAdaptor.get_structure(cu))
    flow_cuni = maker.make([cuni])
    first = {
        f: [j for j in flow.jobs if j.name == "starting_structures"][0]
        for f, flow in (("cu", flow_cu), ("cuni", flow_cuni))
    }
    assert first["cu"].function_args[3] == ["Cu"] and first["cuni"].function_args[3] == ["Cu", "Ni"]
    assert flow_cu.jobs[0].uuid != flow_cuni.jobs[0].uuid  # other structures, other fingerprint, other jobs
    again = maker.make(AseAtomsAdaptor.get_structure(cu))
    assert again.jobs[0].uuid == flow_cu.jobs[0].uuid  # the same campaign finds its jobs again


def test_make_refuses_bad_structures_with_one_line():
    with pytest.raises(ValueError, match=r"no starting structures; pass them to make\(structures\)"):
        ActiveLearningMaker().make()
    overlapping = Atoms("Cu2", positions=[[0, 0, 0], [0.1, 0, 0]], cell=[5, 5, 5], pbc=True)
    with pytest.raises(StructureError, match=r"make\(structures\)\[1\]"):
        ActiveLearningMaker().make([bulk("Cu", cubic=True), overlapping])
    with pytest.raises(StructureError, match=r"make\(structures\)\[0\]: a str is not a structure"):
        ActiveLearningMaker().make(["Cu"])
    with pytest.raises(ValueError, match=r"ensemble_size: 1 members cannot disagree"):
        ActiveLearningMaker(ensemble_size=1)


def test_seed_stream_keeps_the_seeds_of_earlier_campaigns():
    # the purpose numbers are part of every campaign's results: these are the seeds 0.1 used
    s = CampaignSeeds(7)
    assert s.initial_copies() == derived_seed(7, 998)
    assert s.test_copies() == derived_seed(7, 997)
    assert s.labeller_test_set() == derived_seed(7, 999)
    assert [s.train(3, m) for m in range(4)] == [derived_seed(7, 3, m) for m in range(4)]
    assert s.explore(3, 1) == derived_seed(7, 3, 1001) and s.select(3) == derived_seed(7, 3, 2000)
    seeds = [s.initial_copies(), s.test_copies(), s.labeller_test_set()]
    seeds += [s.train(k, m) for k in range(3) for m in range(8)] + [s.explore(k, 0) for k in range(3)]
    assert len(set(seeds)) == len(seeds)
    with pytest.raises(ValueError, match="ensemble member 1000"):
        s.train(0, 1000)
    assert np.all(np.array(seeds) < 2**31)


def test_pool_study_maker_takes_structures_too():
    """PoolStudyMaker.make(structures): the given structures replace those of the pool's MD source
    and of the shear study, and name the study (its fingerprint)."""
    import copy

    from al_flows.campaign.config import validate_campaign
    from al_flows.pool_study.flows import PoolStudyMaker
    from al_flows.structures.initial_data import build_structures
    from pool_study.test_pool_study_flow import TINY_STUDY  # tests/ is on sys.path (as for helpers)

    config = validate_campaign(copy.deepcopy(TINY_STUDY))
    maker = PoolStudyMaker(config=config)
    cuni = bulk("Cu", cubic=True).repeat((2, 2, 2))
    cuni.symbols[:4] = "Ni"
    given = maker.with_structures([cuni]).study()
    assert given.fingerprint() != config.fingerprint()
    for sources in [src.structures for src in given.pool.sources if hasattr(src, "structures")] + [
        given.shear_study.structures
    ]:
        (built,) = build_structures(sources)
        assert built.get_chemical_formula() == cuni.get_chemical_formula()
        assert np.allclose(built.positions, cuni.positions)
    flow = maker.make([cuni])
    assert flow.jobs[0].metadata["fingerprint"] == given.fingerprint()


TINY_FLOW = """
from al_flows.potential import ModelSettings  # imports schnetpack, as docs/python_api.md's example does
from jobflow import Flow, job, run_locally

@job
def add(a, b):
    return a + b

run_locally(Flow([add(1, 2)]), create_folders=False)
"""


def test_python_api_logs_each_jobflow_line_once_without_the_cd_warning(tmp_path):
    """The Python API path (schnetpack imported through al_flows, then jobflow's own run_locally):
    jobflow's log lines are printed once (schnetpack's import adds no root-logger handler that
    repeats them on stderr) and jobflow's use of monty's deprecated ``cd`` shows no FutureWarning."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", TINY_FLOW], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    for message in ("Started executing jobs locally", "Starting job - add", "Finished job - add"):
        assert text.count(message) == 1, (message, text)
    assert "cd is deprecated" not in text and "FutureWarning" not in text, text
    assert "INFO:jobflow" not in out.stderr  # logging.basicConfig's format: the root handler is gone
