"""Frames of atoms and what every layer above needs of them: the labelled dataset with provenance
(frame ids, info, extxyz blobs and files, ASE databases), structure checks, and the one neighbour list.

Public names (imported on first use, see :mod:`al_flows.lazy`): ``__all__``.
"""

from typing import TYPE_CHECKING

from al_flows.lazy import lazy_exports

EXPORTS = {
    "Dataset": "dataset",
    "frame_id": "ids",
    "frames_from_bytes": "extxyz",
    "frames_to_bytes": "extxyz",
    "frames_text": "extxyz",
    "StructureError": "checks",
    "check_structure": "checks",
    "neighbour_list": "neighbours",
}
__all__ = [
    "Dataset",
    "frame_id",
    "frames_from_bytes",
    "frames_to_bytes",
    "frames_text",
    "StructureError",
    "check_structure",
    "neighbour_list",
]
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)

if TYPE_CHECKING:
    from al_flows.frames.checks import StructureError, check_structure
    from al_flows.frames.dataset import Dataset
    from al_flows.frames.extxyz import frames_from_bytes, frames_text, frames_to_bytes
    from al_flows.frames.ids import frame_id
    from al_flows.frames.neighbours import neighbour_list
