"""The active-learning workflow to the campaign runner and the CLI (:class:`ActiveLearningWorkflow`,
see :class:`al_flows.campaign.workflows.Workflow`): planning a campaign's next flow (start, continue
after the last stored round, extend a finished campaign, run its autotest), its record, report,
lineage and exports. Heavy modules are imported on first use, so reading a campaign file stays light."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from al_flows.active_learning.config import CampaignConfig
from al_flows.campaign.campaign_file import ConfigError
from al_flows.campaign.structure_checks import check_structure_groups

if TYPE_CHECKING:
    from jobflow import Flow, JobStore

    from al_flows.active_learning.flows import ActiveLearningMaker

__all__ = ["ActiveLearningWorkflow", "plan_campaign"]


def _targets(config: CampaignConfig) -> dict:
    """The convergence targets that are set (the mode and properties only when properties are listed)."""
    c = config.convergence
    return c.model_dump(mode="json", exclude_none=True, exclude=set() if c.properties else {"properties", "mode"})


def plan_campaign(maker: ActiveLearningMaker, config: CampaignConfig, store: JobStore) -> tuple[Flow | None, str]:
    """The flow of an active-learning campaign to run now and why: start, continue after the last stored
    round, extend a finished campaign whose stop no longer holds (a larger max_rounds or budget,
    another target), run the autotest of a finished one, or nothing."""
    from jobflow import Flow

    from al_flows.campaign.record import CampaignRecord
    from al_flows.workflow.jobs import drop_completed

    record = CampaignRecord(store, config.name)
    result, last = record.result(), record.last_summary()  # a result older than the last summary is stale
    if last is not None and maker.stop_policy.budget is not None:  # a budget given now: what was spent
        last = record.with_budget_spent(last)
    if result is not None:
        again = maker.stop_policy.decide_from_summary(last) if last else None
        if last is not None and again is not None and not again.stop:  # a larger max_rounds, budget or another target
            budget = config.labeller.budget
            return maker.continue_from(last, store), (
                f"extending campaign '{config.name}' after round {last['round']} "
                f"(max_rounds {config.max_rounds}, convergence {_targets(config)}"
                + (f", budget {budget.model_dump(exclude_none=True)}" if budget is not None else "")
                + ")"
            )
        if maker.autotest is not None and not record.outputs("autotest", result["final_round"], ["output"]):
            return maker.autotest_flow(
                result["final_round"]
            ), f"campaign '{config.name}' finished; running its autotest"
        return None, f"campaign '{config.name}' already finished after {result['n_rounds']} round(s); report rewritten"
    if last is not None:
        return maker.continue_from(last, store), f"continuing campaign '{config.name}' after round {last['round']}"
    # jobs that finished in an earlier, interrupted run are not run again (outputs read by uuid)
    todo, done = drop_completed(maker.initial_jobs(), store)
    flow = Flow(todo, name=f"{config.name} campaign")
    if done:
        return flow, f"continuing campaign '{config.name}' before round 0 ({len(done)} finished job(s) reused)"
    return flow, f"starting campaign '{config.name}'"


class ActiveLearningWorkflow:
    """``workflow: active_learning`` (the default): rounds of train, explore, select, label."""

    name = "active_learning"
    config_class = CampaignConfig

    def other_calculators(self, config: CampaignConfig) -> list[tuple[str, str, dict]]:
        """The autotest's reference calculator, where the campaign has one."""
        autotest = config.autotest
        if autotest is None or autotest.reference is None:
            return []
        return [("autotest.reference", autotest.reference, autotest.reference_kwargs)]

    def check_structures(self, config: CampaignConfig, base_dir: str | Path) -> int:
        """``initial.structures``, each checked against the shear explorers that will strain it."""
        shears = [(f"explorers[{j}]", e) for j, e in enumerate(config.explorers) if e.kind == "shear"]
        groups = [("initial.structures", config.initial.structures, shears)]
        return check_structure_groups(groups, base_dir, config.elements, config.seed)

    def plan(self, config: CampaignConfig, store: JobStore, base_dir: Path) -> tuple[Flow | None, str]:
        """:func:`plan_campaign` of the campaign's Makers; a core-hour budget without any estimate of a
        label's cost is a ConfigError line."""
        from al_flows.active_learning.flows import ActiveLearningMaker
        from al_flows.selection.budget import BudgetError

        try:
            return plan_campaign(ActiveLearningMaker.from_config(config, base_dir), config, store)
        except BudgetError as exc:
            raise ConfigError(str(exc)) from None

    def live_report(self, store: JobStore, config: CampaignConfig, workdir: Path) -> AbstractContextManager:
        """The report and report.json rewritten after every round
        (:func:`al_flows.campaign.live_report.rewriting_report`)."""
        from al_flows.campaign.live_report import rewriting_report
        from al_flows.campaign.report_json import write_reports

        return rewriting_report(lambda _round: write_reports(store, config, workdir))

    def report_after_run(self, store: JobStore, config: CampaignConfig, workdir: Path) -> dict:
        """The final report (HTML and report.json), the autotest's included."""
        return self.write_reports(store, config, workdir)

    def finished(self, store: JobStore, config: CampaignConfig) -> bool:
        """A CampaignResult newer than every round summary is stored."""
        from al_flows.campaign.record import CampaignRecord

        return CampaignRecord(store, config.name).finished()

    def missing_after_finish(self, store: JobStore, config: CampaignConfig) -> str | None:
        """'its autotest' when the campaign has one and no autotest result is stored."""
        from al_flows.campaign.record import CampaignRecord

        if config.autotest is None or CampaignRecord(store, config.name).outputs("autotest", properties=["output"]):
            return None
        return "its autotest"

    def build_report(self, store: JobStore, config: CampaignConfig) -> dict:
        """:func:`al_flows.campaign.report_json.build_report`."""
        from al_flows.campaign.report_json import build_report

        return build_report(store, config)

    def write_reports(self, store: JobStore, config: CampaignConfig, workdir: Path) -> dict:
        """:func:`al_flows.campaign.report_json.write_reports`."""
        from al_flows.campaign.report_json import write_reports

        return write_reports(store, config, workdir)

    def write_report(self, store: JobStore, config: CampaignConfig, outdir: Path) -> dict:
        """:func:`al_flows.campaign.report.write_report`."""
        from al_flows.campaign.report import write_report

        return write_report(store, config, outdir)

    def status(self, store: JobStore, config: CampaignConfig) -> dict:
        """:meth:`al_flows.campaign.record.CampaignRecord.status`: one row per round, failed jobs and labels."""
        from al_flows.campaign.record import CampaignRecord

        return CampaignRecord(store, config.name).status()

    def lineage(self, store: JobStore, config: CampaignConfig, label: str | None, model: str | None) -> dict:
        """A label's chain back to the initial data, or the labels behind a model (one of the two given)."""
        from al_flows.campaign.lineage import label_lineage, model_lineage
        from al_flows.campaign.record import CampaignRecord

        record = CampaignRecord(store, config.name)
        return label_lineage(record, label) if label else model_lineage(record, model or "")

    def export(
        self, store: JobStore, config: CampaignConfig, what: str, output: str, fmt: str, round_: int | None
    ) -> list[str]:
        """The dataset (every label, or those round ``round_``'s models trained on) or a round's models."""
        from al_flows.campaign.export import export_dataset, export_model
        from al_flows.campaign.record import CampaignRecord

        record = CampaignRecord(store, config.name)
        if what == "dataset":
            path = export_dataset(record, output, fmt, round_)
            which = "every label" if round_ is None else f"the labels round {round_}'s models trained on"
            return [f"wrote {path} ({fmt}, {which})"]
        return [f"wrote {written}" for written in export_model(record, output, round_)]
