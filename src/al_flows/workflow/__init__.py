"""What the jobflow workflows share: the job decorator and helpers (:mod:`al_flows.workflow.jobs`), progress
lines, and the campaign-file keys of both workflows (:mod:`al_flows.workflow.config`).

Public names (imported on first use, see :mod:`al_flows.lazy`): ``__all__``.
"""

from typing import TYPE_CHECKING

from al_flows.lazy import lazy_exports

EXPORTS = {
    "al_job": "jobs",
    "field": "jobs",
    "route": "jobs",
    "stable_uuid": "jobs",
    "derived_seed": "jobs",
    "load_ensemble": "jobs",
    "latest_outputs": "jobs",
    "drop_completed": "jobs",
    "FAILURE_KEY": "jobs",
    "DATA_STORE": "jobs",
    "CampaignBase": "config",
    "AseLabeller": "config",
    "VaspLabeller": "config",
    "NOT_FINGERPRINTED": "config",
}
__all__ = [
    "al_job",
    "field",
    "route",
    "stable_uuid",
    "derived_seed",
    "load_ensemble",
    "latest_outputs",
    "drop_completed",
    "FAILURE_KEY",
    "DATA_STORE",
    "CampaignBase",
    "AseLabeller",
    "VaspLabeller",
    "NOT_FINGERPRINTED",
]
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)

if TYPE_CHECKING:
    from al_flows.workflow.config import NOT_FINGERPRINTED, AseLabeller, CampaignBase, VaspLabeller
    from al_flows.workflow.jobs import (
        DATA_STORE,
        FAILURE_KEY,
        al_job,
        derived_seed,
        drop_completed,
        field,
        latest_outputs,
        load_ensemble,
        route,
        stable_uuid,
    )
