"""The pool-study workflow to the campaign runner and the CLI (:class:`PoolStudyWorkflow`, see
:class:`al_flows.campaign.workflows.Workflow`): planning the study's flow (start, or continue
without the jobs that finished), whether it finished, its report.json, status, report and exports.
Heavy modules are imported on first use, so reading a campaign file stays light."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from al_flows.campaign.campaign_file import ConfigError
from al_flows.campaign.structure_checks import StructureGroup, check_structure_groups
from al_flows.pool_study.config import PoolStudyConfig

if TYPE_CHECKING:
    from jobflow import Flow, JobStore

__all__ = ["PoolStudyWorkflow", "pool_study_final_stage", "build_pool_study_report"]


def pool_study_final_stage(config: PoolStudyConfig) -> str:
    """The stage whose output marks a pool study as finished."""
    if config.validation is not None:
        return "validation"
    return "pathways" if config.shear_study is not None else "compare"


def _last_output(store: JobStore, study: str, stage: str) -> dict | None:
    """The output of the latest job of ``study`` at ``stage`` (blobs not loaded), or None."""
    from al_flows.campaign.record import CampaignRecord

    docs = CampaignRecord(store, study).outputs(stage, properties=["output"])
    return docs[-1]["output"] if docs else None


def build_pool_study_report(store: JobStore, config: PoolStudyConfig) -> dict:
    """report.json of a pool study: rows of Table I of Sprueill et al., ratios, pathway counts, validation summary."""
    compare, paths, val = (_last_output(store, config.name, s) for s in ("compare", "pathways", "validation"))
    report = {
        "campaign": config.name,
        "workflow": "pool_study",
        "finished": _last_output(store, config.name, pool_study_final_stage(config)) is not None,
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


class PoolStudyWorkflow:
    """``workflow: pool_study``: Sprueill et al. in full, one flow of jobs (no rounds)."""

    name = "pool_study"
    config_class = PoolStudyConfig

    def other_calculators(self, config: PoolStudyConfig) -> list[tuple[str, str, dict]]:
        """None: a pool study names no calculator besides its labeller."""
        return []

    def check_structures(self, config: PoolStudyConfig, base_dir: str | Path) -> int:
        """The structures of the md and labeller-shear pool sources (the latter checked against their own
        shear) and of the shear study."""
        groups: list[StructureGroup] = [
            (
                f"pool.sources[{i}].structures",
                src.structures,
                [(f"pool.sources[{i}]", src)] if src.kind == "labeller_shear" else [],
            )
            for i, src in enumerate(config.pool.sources)
            if src.kind in ("md", "labeller_shear")
        ]
        if config.shear_study is not None:
            groups.append(
                ("shear_study.structures", config.shear_study.structures, [("shear_study", config.shear_study)])
            )
        return check_structure_groups(groups, base_dir, config.elements, config.seed)

    def plan(self, config: PoolStudyConfig, store: JobStore, base_dir: Path) -> tuple[Flow | None, str]:
        """Nothing once finished; else the study's jobs without those an earlier run finished."""
        from jobflow import Flow

        from al_flows.pool_study.flows import PoolStudyMaker
        from al_flows.workflow.jobs import drop_completed

        if self.finished(store, config):
            return None, f"pool study '{config.name}' already finished; report rewritten"
        todo, done = drop_completed(PoolStudyMaker(config=config, base_dir=str(base_dir)).jobs(), store)
        flow = Flow(todo, name=f"pool study {config.name}")
        if done:
            return flow, f"continuing pool study '{config.name}' ({len(done)} finished job(s) reused)"
        return flow, f"starting pool study '{config.name}'"

    def live_report(self, store: JobStore, config: PoolStudyConfig, workdir: Path) -> AbstractContextManager:
        """Nothing: a pool study's report is written when asked for."""
        return nullcontext()

    def report_after_run(self, store: JobStore, config: PoolStudyConfig, workdir: Path) -> dict:
        """report.json's content only (the HTML report is ``al-flows report``'s)."""
        return build_pool_study_report(store, config)

    def finished(self, store: JobStore, config: PoolStudyConfig) -> bool:
        """The study's final stage (:func:`pool_study_final_stage`) has an output."""
        return _last_output(store, config.name, pool_study_final_stage(config)) is not None

    def missing_after_finish(self, store: JobStore, config: PoolStudyConfig) -> str | None:
        """None: a finished pool study lacks nothing."""
        return None

    def build_report(self, store: JobStore, config: PoolStudyConfig) -> dict:
        """:func:`build_pool_study_report`."""
        return build_pool_study_report(store, config)

    def write_reports(self, store: JobStore, config: PoolStudyConfig, workdir: Path) -> dict:
        """Rewrite WORKDIR/report.json and the HTML report in WORKDIR/report/; report.json's content."""
        import json

        report = build_pool_study_report(store, config)
        (workdir / "report.json").write_text(json.dumps(report, indent=2))
        self.write_report(store, config, workdir / "report")
        return report

    def write_report(self, store: JobStore, config: PoolStudyConfig, outdir: Path) -> dict:
        """:func:`al_flows.pool_study.report.write_pool_report`."""
        from al_flows.pool_study.report import write_pool_report

        return write_pool_report(store, config, outdir)

    def status(self, store: JobStore, config: PoolStudyConfig) -> dict:
        """report.json's content and ``stages_done``: the stages with job documents."""
        from al_flows.workflow.store_queries import stages_stored

        report = build_pool_study_report(store, config)
        report["stages_done"] = sorted(stages_stored(store, config.name))
        return report

    def lineage(self, store: JobStore, config: PoolStudyConfig, label: str | None, model: str | None) -> dict:
        """Refused: lineage follows active-learning rounds."""
        raise ConfigError(
            f"--workdir: '{config.name}' is a pool study; 'lineage' follows active-learning rounds "
            "(see the queries in docs/pool_study.md)"
        )

    def export(
        self, store: JobStore, config: PoolStudyConfig, what: str, output: str, fmt: str, round_: int | None
    ) -> list[str]:
        """The active run's training frames or each strategy's model
        (:func:`al_flows.pool_study.report.export_pool_study`)."""
        from al_flows.pool_study.report import export_pool_study

        if round_ is not None:
            raise ConfigError(f"--round: '{config.name}' is a pool study, which has no rounds; leave --round out")
        return [f"wrote {p}" for p in export_pool_study(store, config.name, what, output, fmt)]
