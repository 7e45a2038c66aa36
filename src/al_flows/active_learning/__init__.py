"""jobflow Makers of the active-learning loop (thin wrappers over the science modules)."""

from al_flows.active_learning.flows import ActiveLearningMaker
from al_flows.active_learning.jobs import AseLabelMaker, SelectMaker, ShearExploreMaker, TrainMemberMaker
from al_flows.active_learning.vasp_jobs import VaspLabelMaker

__all__ = ["ActiveLearningMaker", "AseLabelMaker", "SelectMaker", "ShearExploreMaker", "TrainMemberMaker", "VaspLabelMaker"]
