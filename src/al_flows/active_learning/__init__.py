"""jobflow Makers of the active-learning loop (thin wrappers over the science modules)."""

from al_flows.active_learning.flows import ActiveLearningMaker
from al_flows.active_learning.jobs_exploration import ShearExploreMaker
from al_flows.active_learning.jobs import AseLabelMaker
from al_flows.active_learning.jobs_selection import SelectMaker
from al_flows.active_learning.jobs_training import TrainMemberMaker
from al_flows.active_learning.vasp_jobs import VaspLabelMaker

__all__ = ["ActiveLearningMaker", "AseLabelMaker", "SelectMaker", "ShearExploreMaker", "TrainMemberMaker", "VaspLabelMaker"]
