"""The active-learning loop as jobflow: the round's jobs (train, explore, select, label, merge), VASP
labelling, the autotest job, the dynamic flow and its configuration and output documents.

Public names (imported on first use, see :mod:`al_flows.lazy`): ``__all__``.
"""

from typing import TYPE_CHECKING

from al_flows.lazy import lazy_exports

EXPORTS = {
    "ActiveLearningMaker": "flows",
    "CampaignConfig": "config",
    "InitialCopies": "config",
    "InitialData": "config",
    "TestSetConfig": "config",
    "CampaignSeeds": "seeds",
    "label_maker_for": "labeller_slot",
    "TrainMemberMaker": "jobs",
    "ShearExploreMaker": "jobs",
    "MDExploreMaker": "jobs",
    "SelectMaker": "select_job",
    "StopPolicy": "stop_policy",
    "AseLabelMaker": "jobs",
    "merge_labels": "jobs",
    "VaspLabelMaker": "vasp_jobs",
}
__all__ = [
    "ActiveLearningMaker",
    "CampaignConfig",
    "InitialCopies",
    "InitialData",
    "TestSetConfig",
    "CampaignSeeds",
    "label_maker_for",
    "TrainMemberMaker",
    "ShearExploreMaker",
    "MDExploreMaker",
    "SelectMaker",
    "StopPolicy",
    "AseLabelMaker",
    "merge_labels",
    "VaspLabelMaker",
]
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)

if TYPE_CHECKING:
    from al_flows.active_learning.config import CampaignConfig, InitialCopies, InitialData, TestSetConfig
    from al_flows.active_learning.flows import ActiveLearningMaker
    from al_flows.active_learning.jobs import (
        AseLabelMaker,
        MDExploreMaker,
        ShearExploreMaker,
        TrainMemberMaker,
        merge_labels,
    )
    from al_flows.active_learning.labeller_slot import label_maker_for
    from al_flows.active_learning.seeds import CampaignSeeds
    from al_flows.active_learning.select_job import SelectMaker
    from al_flows.active_learning.stop_policy import StopPolicy
    from al_flows.active_learning.vasp_jobs import VaspLabelMaker
