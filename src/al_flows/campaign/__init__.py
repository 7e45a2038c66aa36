"""Running a campaign: read and validate its file, what each workflow does for the runner and the CLI
(:class:`~al_flows.campaign.workflows.Workflow`), run or continue it locally or on FireWorks, its stores,
its record (status, lineage, exports) and its report.

Public names (imported on first use, see :mod:`al_flows.lazy`): ``__all__``.
"""

from typing import TYPE_CHECKING

from al_flows.lazy import lazy_exports

EXPORTS = {
    "ConfigError": "config",
    "load_campaign": "config",
    "validate_campaign": "config",
    "run_campaign": "run",
    "CampaignError": "run",
    "open_store": "run",
    "load_workdir_campaign": "run",
    "CampaignRecord": "record",
    "make_job_store": "stores",
    "write_report": "report",
    "submit_campaign": "fireworks",
    "Workflow": "workflows",
    "workflow_of": "workflows",
}
__all__ = [
    "ConfigError",
    "load_campaign",
    "validate_campaign",
    "run_campaign",
    "CampaignError",
    "open_store",
    "load_workdir_campaign",
    "CampaignRecord",
    "make_job_store",
    "write_report",
    "submit_campaign",
    "Workflow",
    "workflow_of",
]
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)

if TYPE_CHECKING:
    from al_flows.campaign.config import ConfigError, load_campaign, validate_campaign
    from al_flows.campaign.fireworks import submit_campaign
    from al_flows.campaign.record import CampaignRecord
    from al_flows.campaign.report import write_report
    from al_flows.campaign.run import CampaignError, load_workdir_campaign, open_store, run_campaign
    from al_flows.campaign.stores import make_job_store
    from al_flows.campaign.workflows import Workflow, workflow_of
