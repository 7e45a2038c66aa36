"""Selection of explored frames: DP-GEN trust levels, the selection strategies, the stop decision, and the
calibration of the trust levels.

Public names (imported on first use, see :mod:`al_flows.lazy`): ``__all__``.
"""

from typing import TYPE_CHECKING

from al_flows.lazy import lazy_exports

EXPORTS = {
    "SelectionSettings": "trust_levels",
    "SelectionResult": "trust_levels",
    "classify": "trust_levels",
    "select": "trust_levels",
    "stop_decision": "trust_levels",
    "ACCURATE": "trust_levels",
    "CANDIDATE": "trust_levels",
    "FAILED": "trust_levels",
    "CalibrationSettings": "calibration",
}
__all__ = [
    "SelectionSettings",
    "SelectionResult",
    "classify",
    "select",
    "stop_decision",
    "ACCURATE",
    "CANDIDATE",
    "FAILED",
    "CalibrationSettings",
]
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)

if TYPE_CHECKING:
    from al_flows.selection.calibration import CalibrationSettings
    from al_flows.selection.trust_levels import (
        ACCURATE,
        CANDIDATE,
        FAILED,
        SelectionResult,
        SelectionSettings,
        classify,
        select,
        stop_decision,
    )
