"""The autotest job at the end of a campaign: the final ensemble against the labeller (EMT)."""

import copy

import pytest
from ase.calculators.emt import EMT

from al_flows.active_learning.jobs.autotest import final_models
from al_flows.campaign.config import ConfigError, validate_campaign
from al_flows.campaign.run import run_campaign
from al_flows.campaign.stores import make_job_store
from al_flows.validation.autotest import AutotestSettings, compute_properties
from al_flows.workflow.jobs import latest_outputs, load_ensemble
from helpers import QUICK_AUTOTEST as QUICK


def test_autotest_runs_after_the_last_round(tiny_dict, tmp_path):
    d = copy.deepcopy(tiny_dict)
    d["max_rounds"] = 1
    d["autotest"] = QUICK
    config = validate_campaign(d)
    report = run_campaign(config, ".", tmp_path / "run", echo=lambda *_: None)
    assert report["finished"] and report["autotest"]["reference"] == "emt"
    assert {r["element"] for r in report["autotest"]["rows"]} == {"Cu"} and len(report["autotest"]["rows"]) == 17
    store = make_job_store(config.store, tmp_path / "run")
    store.connect()
    try:
        doc = latest_outputs(store, "tiny", "autotest")[0]["output"]
        assert doc["round"] == 0 and doc["reference"] == "emt" and set(doc["results"]) == {"Cu"}
        settings = AutotestSettings(**{k: v for k, v in QUICK.items() if k != "elements"})
        direct_ref = compute_properties("Cu", EMT, settings)
        res = doc["results"]["Cu"]
        assert res["reference"]["structures"]["structures"]["fcc"]["a0"] == pytest.approx(
            direct_ref["structures"]["structures"]["fcc"]["a0"], abs=1e-9
        )
        model = load_ensemble(final_models(store, "tiny", 0)).calculator
        direct_model = compute_properties("Cu", model, settings)
        assert res["model"]["vacancy"]["E_vac"] == pytest.approx(direct_model["vacancy"]["E_vac"], abs=1e-6)
        for site in ("octahedral", "tetrahedral"):
            got = res["model"]["interstitials"][site]["E_int"]
            assert got == pytest.approx(direct_model["interstitials"][site]["E_int"], abs=1e-6)
        for m in ("100", "110", "111"):
            got = res["model"]["surfaces"][m]["E_surf"]
            assert got == pytest.approx(direct_model["surfaces"][m]["E_surf"], abs=1e-6)
        rows = {r["property"]: r for r in res["rows"]}
        assert all(r["abs_error"] == pytest.approx(abs(r["model"] - r["reference"])) for r in rows.values())
        assert "Cu" in doc["table"] and doc["passed"] == all(r["passed"] for r in rows.values())
        from al_flows.campaign.report import write_report

        out = write_report(store, config, tmp_path / "report")
        assert out["plots"]["autotest"] == "autotest.png"
        table = (tmp_path / "report" / "autotest.md").read_text()
        for row in (
            "| Cu E_vac | eV |",
            "| Cu E_int[oct] | eV |",
            "| Cu E_int[tet] | eV |",
            "| Cu E_surf[110] | J/m^2 |",
        ):
            assert row in table
    finally:
        store.close()


def test_autotest_needs_an_ase_reference_with_vasp_labels(tiny_dict):
    d = copy.deepcopy(tiny_dict)
    d["labeller"] = {"kind": "vasp"}
    d["test_set"] = {"kind": "perturbed"}
    d["autotest"] = {}
    with pytest.raises(ConfigError, match="autotest.reference"):
        validate_campaign(d)
    d["autotest"] = {"reference": "emt"}
    assert validate_campaign(d).autotest.reference == "emt"


def test_lost_autotest_is_run_alone_by_the_next_run(tiny_dict, tmp_path, monkeypatch):
    """The campaign finished but its autotest failed: the next run trains nothing and runs only the autotest."""
    import al_flows.active_learning.jobs.autotest as at
    from al_flows.campaign.run import CampaignError

    d = copy.deepcopy(tiny_dict)
    d["max_rounds"] = 1
    d["autotest"] = QUICK
    config = validate_campaign(d)
    original = at.autotest

    def crash(*a, **k):
        raise RuntimeError("node lost")

    monkeypatch.setattr(at, "autotest", crash)
    with pytest.raises(CampaignError, match="finished but its autotest did not complete"):
        run_campaign(config, ".", tmp_path / "run", echo=lambda *_: None)
    monkeypatch.setattr(at, "autotest", original)
    lines = []
    report = run_campaign(config, ".", tmp_path / "run", echo=lines.append)
    assert lines[0] == "campaign 'tiny' finished; running its autotest"
    assert report["finished"] and report["autotest"]["round"] == 0
    store = make_job_store(config.store, tmp_path / "run")
    store.connect()
    try:
        stages = [d["metadata"]["stage"] for d in store.query({"metadata.campaign": "tiny"}, properties=["metadata"])]
    finally:
        store.close()
    assert stages.count("train") == 2 and stages.count("autotest") == 1  # nothing trained again, one autotest
