"""jobflow Makers of the active-learning loop (thin wrappers over the science modules)."""

from al_flows.makers.active_learning import ActiveLearningMaker
from al_flows.makers.exploration import ShearExploreMaker
from al_flows.makers.labelling import AseLabelMaker
from al_flows.makers.selection import SelectMaker
from al_flows.makers.training import TrainMemberMaker
from al_flows.makers.vasp_labelling import VaspLabelMaker

__all__ = ["ActiveLearningMaker", "AseLabelMaker", "SelectMaker", "ShearExploreMaker", "TrainMemberMaker", "VaspLabelMaker"]
