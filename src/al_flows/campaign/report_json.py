"""report.json of a campaign work directory (built from the store), and writing it with the HTML
report: what ``al-flows run`` writes at the end and after every round, ``al-flows report`` on demand."""

from __future__ import annotations

import json
from pathlib import Path

from jobflow import JobStore

from al_flows.campaign.config import AnyConfig
from al_flows.campaign.record import REPORT_KEYS, CampaignRecord, round_row, summaries_by_round
from al_flows.pool_study.config import PoolStudyConfig
from al_flows.workflow.jobs import latest_outputs

__all__ = ["pool_study_final_stage", "build_pool_study_report", "build_report", "write_reports"]


def _outputs(store: JobStore, campaign: str, stage: str) -> list[dict]:
    """Latest output of every job of ``campaign`` at ``stage`` (documents only, blobs not loaded)."""
    return latest_outputs(store, campaign, stage, None, properties=["output"])


def pool_study_final_stage(config: PoolStudyConfig) -> str:
    """The stage whose output marks a pool study as finished."""
    if config.validation is not None:
        return "validation"
    return "pathways" if config.shear_study is not None else "compare"


def build_pool_study_report(store: JobStore, config: PoolStudyConfig) -> dict:
    """report.json of a pool study: rows of Table I of Sprueill et al., ratios, pathway counts, validation summary."""

    def last(stage):
        docs = _outputs(store, config.name, stage)
        return docs[-1]["output"] if docs else None

    compare, paths, val = last("compare"), last("pathways"), last("validation")
    report = {
        "campaign": config.name,
        "workflow": "pool_study",
        "finished": last(pool_study_final_stage(config)) is not None,
        "table": compare["rows"] if compare else [],
        "ratios": compare["ratios"] if compare else {},
    }
    if paths:
        report["pathways"] = {
            name: {"n_runs": s["n_runs"], "n_pathways": s["n_pathways"], "counts_by_type": s["counts_by_type"]}
            for name, s in paths["systems"].items()
        }
    if val:
        report["validation"] = {
            k: val[k] for k in ("n_minima", "n_spurious", "n_agree_single", "max_abs_d_single_per_atom")
        }
    return report


def build_report(store: JobStore, config: AnyConfig) -> dict:
    """The report.json content: one row per round (latest run of each round)."""
    if isinstance(config, PoolStudyConfig):
        return build_pool_study_report(store, config)
    by_round = summaries_by_round(_outputs(store, config.name, "summary"))
    record = CampaignRecord(store, config.name)
    result = record.result()
    rounds = [round_row(by_round[r], REPORT_KEYS) for r in sorted(by_round)]
    report = {
        "campaign": config.name,
        "converged": bool(result and result["converged"]),
        "finished": result is not None,
        "state": record.state_words(),
        "stop_reason": (result.get("stop_reason") or None) if result else None,
        "rounds": rounds,
    }
    autotests = _outputs(store, config.name, "autotest")
    if autotests:
        doc = autotests[-1]["output"]
        report["autotest"] = {
            "round": doc["round"],
            "reference": doc["reference"],
            "passed": doc["passed"],
            "rows": [{**r, "element": el} for el, res in doc["results"].items() for r in res["rows"]],
        }
    return report


def write_reports(store: JobStore, config: AnyConfig, workdir: Path) -> dict:
    """Rewrite WORKDIR/report/ (HTML and PNGs) and WORKDIR/report.json from the store; the report."""
    from al_flows.campaign.report import write_report

    report = build_report(store, config)
    (workdir / "report.json").write_text(json.dumps(report, indent=2))
    if isinstance(config, PoolStudyConfig):
        from al_flows.pool_study.report import write_pool_report

        write_pool_report(store, config, workdir / "report")
    else:
        write_report(store, config, workdir / "report")
    return report
