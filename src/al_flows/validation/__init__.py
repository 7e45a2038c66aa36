"""Judging a potential against the reference (no jobflow): the autotest (EOS, elastic constants, vacancy,
stacking fault; :func:`al_flows.validation.autotest.autotest`), the autotest properties a campaign
converges on (:mod:`al_flows.validation.properties`) and held-out test frames and errors.

Public names (imported on first use, see :mod:`al_flows.lazy`): ``__all__``.
"""

from typing import TYPE_CHECKING

from al_flows.lazy import lazy_exports

EXPORTS = {
    "AutotestSettings": "autotest",
    "autotest_table_markdown": "autotest",
    "holdout_errors": "heldout",
    "force_errors": "heldout",
    "labeller_test_frames": "heldout",
    "PropertyTarget": "properties",
    "PropertyConvergence": "properties",
}
__all__ = [
    "AutotestSettings",
    "autotest_table_markdown",
    "holdout_errors",
    "force_errors",
    "labeller_test_frames",
    "PropertyTarget",
    "PropertyConvergence",
]
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)

if TYPE_CHECKING:
    from al_flows.validation.autotest import AutotestSettings, autotest_table_markdown
    from al_flows.validation.heldout import force_errors, holdout_errors, labeller_test_frames
    from al_flows.validation.properties import PropertyConvergence, PropertyTarget
