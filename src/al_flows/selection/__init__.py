"""Selection of explored frames: DP-GEN trust levels, the selection strategies, the
calibration of the trust levels, the labelling budget, and diverse picking (farthest-point sampling).

Public names (imported on first use, see :mod:`al_flows.lazy`): ``__all__``.
"""

from typing import TYPE_CHECKING

from al_flows.lazy import lazy_exports

EXPORTS = {
    "SelectionSettings": "trust_levels",
    "SelectionResult": "strategies",
    "classify": "trust_levels",
    "select": "strategies",
    "ACCURATE": "trust_levels",
    "CANDIDATE": "trust_levels",
    "FAILED": "trust_levels",
    "CalibrationSettings": "calibration",
    "LabelBudget": "budget",
    "BudgetSpent": "budget",
    "allowance": "budget",
    "diverse_pick": "diversity",
    "farthest_point_sampling": "diversity",
}
__all__ = [
    "SelectionSettings",
    "SelectionResult",
    "classify",
    "select",
    "ACCURATE",
    "CANDIDATE",
    "FAILED",
    "CalibrationSettings",
    "LabelBudget",
    "BudgetSpent",
    "allowance",
    "diverse_pick",
    "farthest_point_sampling",
]
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)

if TYPE_CHECKING:
    from al_flows.selection.budget import BudgetSpent, LabelBudget, allowance
    from al_flows.selection.calibration import CalibrationSettings
    from al_flows.selection.diversity import diverse_pick, farthest_point_sampling
    from al_flows.selection.strategies import SelectionResult, select
    from al_flows.selection.trust_levels import ACCURATE, CANDIDATE, FAILED, SelectionSettings, classify
