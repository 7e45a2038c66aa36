"""Exploration: stochastic shear (Sprueill et al.), Langevin MD with a temperature schedule (ANI-Al), NVT MD
(DP-GEN), batched relaxation, replica checks, and NVT MD with the labeller itself.

Public names (imported on first use, see :mod:`al_flows.lazy`): ``__all__``.
"""

from typing import TYPE_CHECKING

from al_flows.lazy import lazy_exports

EXPORTS = {
    "ShearSettings": "shear",
    "explore_shear": "shear_sequential",
    "explore_shear_batched": "shear_batched",
    "run_shear": "shear_sequential",
    "shear_cell": "shear_geometry",
    "shear_strain": "shear_geometry",
    "NVTSettings": "md",
    "ScheduleSettings": "md",
    "nvt_explore": "md",
    "langevin_schedule": "md",
    "relax_batched": "batched_relax",
    "ReplicaLimits": "replica_checks",
    "nvt_pool": "labeller_md",
}
__all__ = [
    "ShearSettings",
    "explore_shear",
    "explore_shear_batched",
    "run_shear",
    "shear_cell",
    "shear_strain",
    "NVTSettings",
    "ScheduleSettings",
    "nvt_explore",
    "langevin_schedule",
    "relax_batched",
    "ReplicaLimits",
    "nvt_pool",
]
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)

if TYPE_CHECKING:
    from al_flows.exploration.batched_relax import relax_batched
    from al_flows.exploration.labeller_md import nvt_pool
    from al_flows.exploration.md import NVTSettings, ScheduleSettings, langevin_schedule, nvt_explore
    from al_flows.exploration.replica_checks import ReplicaLimits
    from al_flows.exploration.shear import ShearSettings
    from al_flows.exploration.shear_batched import explore_shear_batched
    from al_flows.exploration.shear_geometry import shear_cell, shear_strain
    from al_flows.exploration.shear_sequential import explore_shear, run_shear
