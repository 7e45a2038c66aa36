"""The active-learning loop as jobflow: its jobs (the package :mod:`al_flows.active_learning.jobs`,
one module per role: train, explore, select, label, merge, VASP labelling, autotest, ...), the
dynamic flow and its configuration and output documents.

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
    "TrainMemberMaker": "jobs.training",
    "ShearExploreMaker": "jobs.exploration",
    "MDExploreMaker": "jobs.exploration",
    "SelectMaker": "jobs.selection",
    "StopPolicy": "stop_policy",
    "AseLabelMaker": "jobs.labelling",
    "merge_labels": "jobs.merge",
    "VaspLabelMaker": "jobs.vasp_labelling",
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
    from al_flows.active_learning.jobs.exploration import MDExploreMaker, ShearExploreMaker
    from al_flows.active_learning.jobs.labelling import AseLabelMaker
    from al_flows.active_learning.jobs.merge import merge_labels
    from al_flows.active_learning.jobs.selection import SelectMaker
    from al_flows.active_learning.jobs.training import TrainMemberMaker
    from al_flows.active_learning.jobs.vasp_labelling import VaspLabelMaker
    from al_flows.active_learning.labeller_slot import label_maker_for
    from al_flows.active_learning.seeds import CampaignSeeds
    from al_flows.active_learning.stop_policy import StopPolicy
