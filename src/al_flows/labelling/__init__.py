"""Labels: any ASE calculator (:mod:`al_flows.labelling.ase`), VASP inputs through atomate2 and labels from
VASP TaskDocs.

Public names (imported on first use, see :mod:`al_flows.lazy`): ``__all__``.
"""

from typing import TYPE_CHECKING

from al_flows.lazy import lazy_exports

EXPORTS = {
    "calculator_factory": "ase",
    "label_frames": "ase",
    "LabelResult": "ase",
    "LabelError": "vasp_labels",
    "label_from_taskdoc": "vasp_labels",
    "label_settings_id": "vasp_inputs",
    "static_maker": "vasp_inputs",
    "relax_maker": "vasp_inputs",
    "VaspInputSettings": "vasp_inputs",
}
__all__ = [
    "calculator_factory",
    "label_frames",
    "LabelResult",
    "LabelError",
    "label_from_taskdoc",
    "label_settings_id",
    "static_maker",
    "relax_maker",
    "VaspInputSettings",
]
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)

if TYPE_CHECKING:
    from al_flows.labelling.ase import LabelResult, calculator_factory, label_frames
    from al_flows.labelling.vasp_inputs import VaspInputSettings, label_settings_id, relax_maker, static_maker
    from al_flows.labelling.vasp_labels import LabelError, label_from_taskdoc
