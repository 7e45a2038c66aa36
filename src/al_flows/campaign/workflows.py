"""What a workflow is to the campaign runner and the CLI, and the registry of workflows by name.

:class:`Workflow` is the protocol: everything ``al-flows`` does with a campaign that depends on
which workflow it is (its settings model, its starting-structure checks, the flow to run next,
whether it finished, its status, report, lineage and exports). :data:`WORKFLOWS` holds one
implementation per value of the campaign file's ``workflow`` key; :func:`workflow_of` finds a
validated campaign's. Nothing else asks which workflow a campaign is."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from al_flows.campaign.active_learning_workflow import ActiveLearningWorkflow
from al_flows.campaign.pool_study_workflow import PoolStudyWorkflow

if TYPE_CHECKING:
    from jobflow import Flow, JobStore

C = TypeVar("C")

__all__ = ["Workflow", "WORKFLOWS", "workflow_named", "workflow_of"]


class Workflow(Protocol[C]):
    """The operations of one workflow; ``C`` is its settings model (the validated campaign file)."""

    name: str  # the campaign file's ``workflow`` value
    config_class: type[C]

    def other_calculators(self, config: C) -> list[tuple[str, str, dict]]:
        """(field, calculator, kwargs) of the ASE calculators it names besides the labeller."""
        ...

    def check_structures(self, config: C, base_dir: str | Path) -> int:
        """Check the starting structures read from files or built (cheap); how many were checked."""
        ...

    def plan(self, config: C, store: JobStore, base_dir: Path) -> tuple[Flow | None, str]:
        """The flow to run now (None when there is nothing to run) and a one-line why."""
        ...

    def live_report(self, store: JobStore, config: C, workdir: Path) -> AbstractContextManager:
        """While its flow runs in this process: what rewrites the report as it goes."""
        ...

    def report_after_run(self, store: JobStore, config: C, workdir: Path) -> dict:
        """report.json's content once a flow has run (writing what else it writes then)."""
        ...

    def finished(self, store: JobStore, config: C) -> bool:
        """Whether the campaign has finished, from its stored record."""
        ...

    def missing_after_finish(self, store: JobStore, config: C) -> str | None:
        """What a finished campaign still lacks (e.g. 'its autotest'), or None."""
        ...

    def build_report(self, store: JobStore, config: C) -> dict:
        """report.json's content, from the store."""
        ...

    def write_reports(self, store: JobStore, config: C, workdir: Path) -> dict:
        """Rewrite WORKDIR/report.json and WORKDIR/report/; report.json's content."""
        ...

    def write_report(self, store: JobStore, config: C, outdir: Path) -> dict:
        """Write the HTML report and its plots in ``outdir``: ``{"plots", "html"}``."""
        ...

    def status(self, store: JobStore, config: C) -> dict:
        """What ``al-flows status`` shows (its ``--json``)."""
        ...

    def lineage(self, store: JobStore, config: C, label: str | None, model: str | None) -> dict:
        """A label's or a model's lineage; ConfigError where the workflow has none, KeyError for an unknown id."""
        ...

    def export(self, store: JobStore, config: C, what: str, output: str, fmt: str, round_: int | None) -> list[str]:
        """Write the dataset or the models (``what``) to files; the lines saying what was written."""
        ...


WORKFLOWS: dict[str, Workflow[Any]] = {w.name: w for w in (ActiveLearningWorkflow(), PoolStudyWorkflow())}


def workflow_named(name: str) -> Workflow[Any] | None:
    """The workflow a campaign file's ``workflow`` key names, or None for an unknown name."""
    return WORKFLOWS.get(name)


def workflow_of(config: Any) -> Workflow[Any]:
    """The workflow of a validated campaign (by its settings model)."""
    return next(w for w in WORKFLOWS.values() if type(config) is w.config_class)
