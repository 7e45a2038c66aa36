"""report.json of an active-learning campaign (built from the store), and writing it with the HTML
report: what ``al-flows run`` writes at the end and after every round, ``al-flows report`` on demand.
A pool study's report.json is :func:`al_flows.campaign.pool_study_workflow.build_pool_study_report`."""

from __future__ import annotations

import json
from pathlib import Path

from jobflow import JobStore

from al_flows.active_learning.config import CampaignConfig
from al_flows.campaign.record import REPORT_KEYS, CampaignRecord, round_row, summaries_by_round

__all__ = ["build_report", "coverage_curves", "write_reports"]


def build_report(store: JobStore, config: CampaignConfig) -> dict:
    """The report.json content: one row per round (latest run of each round)."""
    record = CampaignRecord(store, config.name)
    by_round = summaries_by_round(record.outputs("summary", properties=["output"]))
    outcome = record.outcome()
    curves = coverage_curves(record)
    timed = record.stage_times()
    rounds = [
        {
            **round_row(s, REPORT_KEYS),
            "coverage_curve_test": curves.get(s.get("calibration_uuid") or "", []),
            "stage_times": timed.get(s["round"], s.get("stage_times") or {}),
        }
        for s in (by_round[r] for r in sorted(by_round))
    ]
    report = {
        "campaign": config.name,
        "converged": outcome["converged"],
        "finished": outcome["finished"],
        "state": outcome["state"],
        "stop_reason": outcome["stop_reason"],
        "rounds": rounds,
        "initial_stage_times": timed.get(-1, {}),
    }
    autotests = record.outputs("autotest", properties=["output"])
    if autotests:
        doc = autotests[-1]["output"]
        report["autotest"] = {
            "round": doc["round"],
            "reference": doc["reference"],
            "passed": doc["passed"],
            "rows": [{**r, "element": el} for el, res in doc["results"].items() for r in res["rows"]],
        }
    return report


def coverage_curves(record: CampaignRecord) -> dict[str, list[dict]]:
    """Per calibrate job (by uuid, as a round summary's ``calibration_uuid`` names it): the coverage
    curve of its record on the test frames, observed against nominal coverage of the bound fitted on
    the rounds before ([{nominal, observed, finite}]; [] where the record has none: the first round,
    no test frames, or a record from before coverage curves)."""
    out = {}
    for d in record.outputs("calibrate", properties=["output.measures"]):
        test = (d["output"].get("measures") or {}).get("test") or {}
        out[d["uuid"]] = list(test.get("curve") or [])
    return out


def write_reports(store: JobStore, config: CampaignConfig, workdir: Path) -> dict:
    """Rewrite WORKDIR/report/ (HTML and PNGs) and WORKDIR/report.json from the store; the report."""
    from al_flows.campaign.report import write_report

    report = build_report(store, config)
    (workdir / "report.json").write_text(json.dumps(report, indent=2))
    write_report(store, config, workdir / "report")
    return report
