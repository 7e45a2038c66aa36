"""Convergence on autotest properties (convergence.properties): the stop decision with hand-made
per-round values, the campaign file's checks, and tiny Cu-Ni EMT campaigns that stop at a known
round, compute the labeller's reference once and record values matching a direct computation."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
from ase.calculators.emt import EMT

from al_flows.active_learning.jobs.autotest import final_models
from al_flows.active_learning.stop_policy import RoundMeasures, StopPolicy, stop_decision
from al_flows.campaign.config import ConfigError, validate_campaign
from al_flows.campaign.record import CampaignRecord
from al_flows.campaign.run import run_campaign
from al_flows.campaign.stores import make_job_store
from al_flows.potential.ensemble import Ensemble
from al_flows.potential.weights import weights_bytes
from al_flows.validation.autotest import AutotestSettings
from al_flows.validation.properties import PropertyConvergence, PropertyTarget, property_values, verdict
from al_flows.workflow.jobs import latest_outputs
from helpers import TINY

A0, B = PropertyTarget(name="a0", element="Cu", tolerance=0.02), PropertyTarget(name="B", element="Cu", tolerance=10.0)


def row(target: PropertyTarget, mean: float, spread: float, reference: float) -> dict:
    return {"property": target.key, "mean": mean, "spread": spread, "reference": reference}


# hand-made rounds: (a0 mean, a0 spread, B mean, B spread); references a0 3.59 A, B 142 GPa
ROUNDS = [
    (3.70, 0.010, 150.0, 5.0),  # a0 off by 0.11 A
    (3.60, 0.030, 150.0, 5.0),  # a0 within 0.01 A, but its members spread by 0.03 A
    (3.605, 0.015, 150.0, 12.0),  # a0 within; B's spread 12 GPa above 10
    (3.605, 0.015, 150.0, 9.0),  # all within: converged here
    (3.59, 0.0, 142.0, 0.0),
]


def _decide(policy, ratio, explored, k, stage=0, property_results=None):
    """The stop policy's decision on a round that measured only these."""
    return policy.decide(RoundMeasures(ratio, explored, property_rows=property_results), k, stage)


def _results(k: int) -> list[dict]:
    a0, sa0, b, sb = ROUNDS[k]
    return [row(A0, a0, sa0, 3.59), row(B, b, sb, 142.0)]


@pytest.mark.parametrize("mode", ["all", "properties"])
def test_stops_exactly_when_every_property_is_within(mode):
    maker = StopPolicy(accurate_ratio=0.9, max_rounds=10, properties=PropertyConvergence(targets=[A0, B], mode=mode))
    decisions = [_decide(maker, 0.95, 10, k, property_results=_results(k)) for k in range(len(ROUNDS))]
    assert [d.converged for d in decisions] == [False, False, False, True, True]
    assert [d.stop for d in decisions[:4]] == [False, False, False, True] and decisions[3].reason == "converged"
    # the first round that stops is round 3, and not earlier
    assert next(k for k, d in enumerate(decisions) if d.stop) == 3


def test_mode_all_needs_the_accurate_ratio_too_and_mode_properties_does_not():
    both = StopPolicy(accurate_ratio=0.9, max_rounds=10, properties=PropertyConvergence(targets=[A0, B]))
    only = StopPolicy(
        accurate_ratio=0.9, max_rounds=10, properties=PropertyConvergence(targets=[A0, B], mode="properties")
    )
    met, not_met = _results(3), _results(2)
    assert not _decide(both, 0.5, 10, 0, property_results=met).stop  # properties met, ratio 0.5 < 0.9
    assert not _decide(both, 0.95, 10, 0, property_results=not_met).stop  # ratio met, B's spread not
    assert _decide(both, 0.95, 10, 0, property_results=met).converged
    assert _decide(only, 0.0, 10, 0, property_results=met).converged  # the ratio is not a target
    assert not _decide(only, 1.0, 10, 0, property_results=not_met).stop
    assert not _decide(both, 0.95, 10, 0, property_results=None).stop  # no values: not met
    # the round limit still stops a campaign whose properties never converge
    last = _decide(only, 1.0, 10, 9, property_results=not_met)
    assert (last.stop, last.converged, last.reason) == (True, False, "round limit")


def test_without_properties_the_decision_is_unchanged():
    plain = StopPolicy(accurate_ratio=0.9, max_rounds=3)
    for ratio, explored, k in [(0.95, 10, 0), (0.85, 10, 0), (0.95, 0, 0), (0.1, 10, 2)]:
        assert _decide(plain, ratio, explored, k, property_results=_results(3)) == stop_decision(
            ratio, explored, k, 0.9, 3
        )


def test_a_changed_tolerance_is_judged_again_from_the_stored_summary():
    """decide_from_summary (continuing or extending a campaign) uses the current tolerances on the stored
    mean, spread and reference, not the stored within flags."""
    summary = {"round": 2, "accurate_ratio": 1.0, "n_explored": 10, "properties": _results(2)}
    strict = StopPolicy(max_rounds=10, properties=PropertyConvergence(targets=[A0, B], mode="properties"))
    loose_b = B.model_copy(update={"tolerance": 12.0})
    loose = StopPolicy(max_rounds=10, properties=PropertyConvergence(targets=[A0, loose_b], mode="properties"))
    assert not strict.decide_from_summary(summary).stop
    assert loose.decide_from_summary(summary).converged


def test_staged_campaign_moves_on_when_the_properties_are_met():
    maker = StopPolicy(max_rounds=10, n_stages=2, properties=PropertyConvergence(targets=[A0], mode="properties"))
    moved = _decide(maker, 0.0, 10, 0, stage=0, property_results=_results(3))
    assert (moved.converged, moved.stop, moved.next_stage) == (False, False, 1)
    assert _decide(maker, 0.0, 10, 1, stage=1, property_results=_results(3)).converged


# -- the campaign file -----------------------------------------------------------------------------


def _error(d: dict) -> str:
    with pytest.raises(ConfigError) as exc:
        validate_campaign(d, source="c.yaml")
    return str(exc.value)


def test_campaign_file_checks(tiny_dict):
    d = copy.deepcopy(tiny_dict)
    d["convergence"] = {"properties": [{"name": "a0"}]}
    assert "convergence.properties[0].element: not set and the campaign has elements ['Cu', 'Ni']" in _error(d)
    d["convergence"] = {"properties": [{"name": "a0", "element": "Al"}]}
    assert "convergence.properties[0].element: 'Al' is not in elements" in _error(d)
    d["convergence"] = {"properties": [{"name": "lattice constant", "element": "Cu"}]}
    assert "convergence.properties[0].name: 'lattice constant' is not an autotest property" in _error(d)
    d["autotest"] = {"lattices": ["fcc", "bcc"]}
    d["convergence"] = {"properties": [{"name": "dE[hcp-fcc]", "element": "Cu"}]}
    assert "'dE[bcc-fcc]'" in _error(d)  # the names these autotest settings report are listed
    del d["autotest"]
    d["convergence"] = {"properties": [{"name": "a0", "element": "Cu"}, {"name": "a0", "element": "Cu"}]}
    assert "listed twice" in _error(d)
    d["convergence"] = {"mode": "properties"}
    assert "convergence: mode: properties needs a list of properties" in _error(d)
    d["convergence"] = {"properties": [{"name": "a0", "element": "Cu", "tolerance": 0}]}
    assert "convergence.properties[0].tolerance" in _error(d)
    vasp = {**copy.deepcopy(tiny_dict), "labeller": {"kind": "vasp"}, "test_set": {"kind": "perturbed"}}
    vasp["convergence"] = {"properties": [{"name": "E_vac", "element": "Cu"}]}
    message = _error(vasp)  # a VASP reference: atomate2's EOS and elastic flows (test_vasp_property_reference)
    assert "convergence.properties[0].name: 'E_vac' has no VASP reference" in message
    assert len(message.splitlines()) == 1


def test_resolved_properties_and_fingerprint(tiny_dict):
    d = copy.deepcopy(tiny_dict)
    base = validate_campaign(d).fingerprint()
    assert validate_campaign(d).property_convergence() is None
    d["convergence"] = {
        "accurate_ratio": None,
        "properties": [{"name": "a0", "element": "Cu"}, {"name": "B", "element": "Ni", "tolerance": 3.0}],
    }
    config = validate_campaign(d)
    conv = config.property_convergence()
    # a0 has no tolerance of its own: it is judged as the autotest judges its row; B's is absolute
    assert [(t.key, t.tolerance) for t in conv.targets] == [("Cu a0", None), ("Ni B", 3.0)]
    assert conv.mode == "all" and conv.settings == AutotestSettings()
    assert config.fingerprint() == base == "fa122faf91dd4d02"  # when to stop: not fingerprinted
    a0, b = conv.targets
    # a0 = 3.6: the tighter of 0.02 A and 1 % (0.036 A); B = 140 GPa: the given 3 GPa, not 10 %
    assert verdict(a0, 3.615, 0.0, 3.6, conv.settings)["tolerance"] == pytest.approx(0.02)
    assert verdict(b, 145.0, 0.0, 140.0, conv.settings)["failed_by"] == ["tolerance"]
    d["autotest"] = {"tolerances": {"a0": 0.004}, "eos_points": 7}
    conv = validate_campaign(d).property_convergence()
    v = verdict(conv.targets[0], 3.605, 0.0, 3.6, conv.settings)
    assert (v["tolerance"], v["tolerance_kind"], v["within"]) == (0.004, "abs", False)  # the autotest section's
    assert conv.settings.eos_points == 7
    one = {**copy.deepcopy(tiny_dict), "elements": ["Cu"], "convergence": {"properties": [{"name": "a0"}]}}
    one["initial"]["structures"] = [{"kind": "file", "path": "x.xyz"}]
    assert validate_campaign(one).property_convergence().targets[0].element == "Cu"  # the only element


# -- tiny campaigns ----------------------------------------------------------------------------------

IMPOSSIBLE = 1e-9  # Angstrom: no ensemble gets a0 this close


def _campaign(name: str, max_rounds: int, convergence: dict) -> dict:
    d = copy.deepcopy(TINY)
    d.update(name=name, max_rounds=max_rounds, convergence=convergence)
    return d


def _stored(workdir, config, stage: str) -> list[dict]:
    store = make_job_store(config.store, workdir)
    store.connect()
    try:
        return [d["output"] for d in latest_outputs(store, config.name, stage)]
    finally:
        store.close()


def _worst(p: dict) -> float:
    """The smallest tolerance a round's property meets: max(|mean - reference|, spread)."""
    return max(abs(p["mean"] - p["reference"]), p["spread"])


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """Cu a0 with an impossible tolerance: rounds 0 and 1 run, the campaign stops at its round limit."""
    workdir = tmp_path_factory.mktemp("first") / "run"
    conv = {"mode": "properties", "properties": [{"name": "a0", "element": "Cu", "tolerance": IMPOSSIBLE}]}
    config = validate_campaign(_campaign("props", 2, conv))
    report = run_campaign(config, ".", workdir, echo=lambda *_: None)
    return config, workdir, report


def test_an_impossible_tolerance_runs_to_the_round_limit(first_run):
    config, workdir, report = first_run
    assert report["finished"] and not report["converged"] and [r["round"] for r in report["rounds"]] == [0, 1]
    for r in report["rounds"]:
        (p,) = r["properties"]
        assert (p["property"], p["unit"], p["tolerance"], p["within"], r["properties_met"]) == (
            "Cu a0",
            "Angstrom",
            IMPOSSIBLE,
            False,
            False,
        )
        assert p["error"] == pytest.approx(abs(p["mean"] - p["reference"]), abs=1e-15)
    refs = _stored(workdir, config, "property_reference")
    assert len(refs) == 1  # computed once for both rounds
    emt = property_values("Cu", EMT, AutotestSettings(), ["a0"])["a0"]
    assert refs[0]["values"] == {"Cu": {"a0": emt}} and refs[0]["reference"] == "emt"
    assert {r["properties"][0]["reference"] for r in report["rounds"]} == {emt}


def test_members_mean_and_spread_match_a_direct_computation(first_run):
    """Each member's a0 computed here from its stored weights equals the recorded one (same code, same
    weights: to 1e-9 A); the mean and spread are numpy's mean and population std of them."""
    config, workdir, report = first_run
    store = make_job_store(config.store, workdir)
    store.connect()
    try:
        for k in (0, 1):
            direct = []
            for m in final_models(store, config.name, k):
                member = Ensemble.from_bytes([weights_bytes(m["model_blob"])])
                direct.append(property_values("Cu", member.calculator, AutotestSettings(), ["a0"])["a0"])
            (p,) = report["rounds"][k]["properties"]
            assert p["members"] == pytest.approx(direct, abs=1e-9)
            assert p["mean"] == pytest.approx(np.mean(direct), abs=1e-9)
            assert p["spread"] == pytest.approx(np.std(direct), abs=1e-9)
        status = CampaignRecord(store, config.name).status()
    finally:
        store.close()
    assert [r["properties"] for r in status["rounds"]] == [r["properties"] for r in report["rounds"]]
    assert all("properties" in r["wall_time_s"] for r in status["rounds"])


def test_report_plots_the_properties(first_run, tmp_path):
    from al_flows.campaign.report import write_report

    config, workdir, _ = first_run
    store = make_job_store(config.store, workdir)
    store.connect()
    try:
        out = write_report(store, config, tmp_path / "report")
    finally:
        store.close()
    assert out["plots"]["properties"] == "properties_per_round.png"
    assert (tmp_path / "report" / "properties_per_round.png").stat().st_size > 10_000
    assert "<th>properties within</th>" in (tmp_path / "report" / "index.html").read_text()


@pytest.fixture(scope="module")
def known_round(first_run, tmp_path_factory):
    """The same campaign again (fresh work directory, same seed: the same rounds) with a tolerance set
    from the first run so that round k, the first round with the smallest max(error, spread), is the
    first within it; mode all with accurate_ratio null: the properties alone decide here too."""
    _, _, first = first_run
    worst = [_worst(r["properties"][0]) for r in first["rounds"]]
    k = int(np.argmin(worst))
    tol = (worst[k] + min(worst[:k])) / 2 if k else 2 * worst[0]
    workdir = tmp_path_factory.mktemp("known") / "run"
    conv = {"accurate_ratio": None, "properties": [{"name": "a0", "element": "Cu", "tolerance": tol}]}
    config = validate_campaign(_campaign("props", 2, conv))
    report = run_campaign(config, ".", workdir, echo=lambda *_: None)
    return k, tol, config, workdir, report


def test_stops_at_the_known_round_with_the_same_values(first_run, known_round):
    _, _, first = first_run
    k, tol, config, workdir, report = known_round
    assert report["finished"] and report["converged"] and [r["round"] for r in report["rounds"]] == list(range(k + 1))
    assert [r["properties_met"] for r in report["rounds"]] == [False] * k + [True]
    for r, before in zip(report["rounds"], first["rounds"], strict=False):
        (p,), (q,) = r["properties"], before["properties"]
        for key in ("members", "mean", "spread", "reference"):
            assert p[key] == pytest.approx(q[key], rel=1e-9), key  # the same rounds as the first run
        assert p["within"] == (_worst(p) <= tol) and p["tolerance"] == tol
    (result,) = [d for d in _stored(workdir, config, "round") if d.get("n_rounds") is not None]
    assert (result["final_round"], result["stop_reason"]) == (k, "converged")


def test_a_continued_run_reuses_the_stored_reference(known_round, tmp_path):
    """Extending the converged campaign (a stricter tolerance, one more round allowed) computes the new
    round's properties against the stored reference: still one reference document."""
    k, _, config, workdir, _ = known_round
    copy_dir = tmp_path / "run"
    shutil.copytree(workdir, copy_dir)
    stricter = json.loads(config.model_dump_json())
    stricter["max_rounds"] = k + 2
    stricter["convergence"]["properties"][0]["tolerance"] = IMPOSSIBLE
    config2 = validate_campaign(stricter)
    lines = []
    report = run_campaign(config2, ".", copy_dir, echo=lines.append)
    assert lines[0].startswith(f"extending campaign 'props' after round {k}")
    assert [r["round"] for r in report["rounds"]] == list(range(k + 2)) and not report["converged"]
    refs = _stored(copy_dir, config2, "property_reference")
    assert len(refs) == 1
    assert report["rounds"][-1]["properties"][0]["reference"] == refs[0]["values"]["Cu"]["a0"]
