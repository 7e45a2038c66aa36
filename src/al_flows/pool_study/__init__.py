"""Sprueill et al. in full: a labelled pool, active sampling against static baselines (their Table I), the
stochastic shear study with the resulting model and the validation of its minima; science, jobs, flow, report.

Public names (imported on first use, see :mod:`al_flows.lazy`): ``__all__``.
"""

from typing import TYPE_CHECKING

from al_flows.lazy import lazy_exports

EXPORTS = {
    "PoolStudyMaker": "flows",
    "PoolStudyConfig": "config",
    "PoolMaker": "pool_jobs",
    "ActiveSamplingMaker": "sampling_jobs",
    "StaticBaselineMaker": "sampling_jobs",
    "ShearRunsMaker": "shear_jobs",
    "MinimaValidationMaker": "shear_jobs",
    "VaspMinimaValidationMaker": "vasp_validation",
    "ActiveSamplingSettings": "active_sampling",
    "run_active_sampling": "active_sampling",
    "import_frames": "pool_import",
    "import_tree": "pool_import",
    "write_pool_report": "report",
}
__all__ = [
    "PoolStudyMaker",
    "PoolStudyConfig",
    "PoolMaker",
    "ActiveSamplingMaker",
    "StaticBaselineMaker",
    "ShearRunsMaker",
    "MinimaValidationMaker",
    "VaspMinimaValidationMaker",
    "ActiveSamplingSettings",
    "run_active_sampling",
    "import_frames",
    "import_tree",
    "write_pool_report",
]
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)

if TYPE_CHECKING:
    from al_flows.pool_study.active_sampling import ActiveSamplingSettings, run_active_sampling
    from al_flows.pool_study.config import PoolStudyConfig
    from al_flows.pool_study.flows import PoolStudyMaker
    from al_flows.pool_study.pool_import import import_frames, import_tree
    from al_flows.pool_study.pool_jobs import PoolMaker
    from al_flows.pool_study.report import write_pool_report
    from al_flows.pool_study.sampling_jobs import ActiveSamplingMaker, StaticBaselineMaker
    from al_flows.pool_study.shear_jobs import MinimaValidationMaker, ShearRunsMaker
    from al_flows.pool_study.vasp_validation import VaspMinimaValidationMaker
