"""Structures to start from: Cu-Ni multilayers, random cells (ANI-Al), DP-GEN initial sets, the sources of a
campaign's starting structures and their perturbed copies; structure analysis (CNA, vacancies).

Public names (imported on first use, see :mod:`al_flows.lazy`): ``__all__``.
"""

from typing import TYPE_CHECKING

from al_flows.lazy import lazy_exports

EXPORTS = {
    "VARIANTS": "multilayer",
    "cuni_multilayer": "multilayer",
    "RandomCellSettings": "generators",
    "DPGenInitSettings": "generators",
    "random_cells": "generators",
    "dpgen_initial_sets": "generators",
    "StructureSource": "initial_data",
    "build_structures": "initial_data",
    "perturbed_copies": "initial_data",
    "common_neighbour_analysis": "analysis",
    "structure_fractions": "analysis",
}
__all__ = [
    "VARIANTS",
    "cuni_multilayer",
    "RandomCellSettings",
    "DPGenInitSettings",
    "random_cells",
    "dpgen_initial_sets",
    "StructureSource",
    "build_structures",
    "perturbed_copies",
    "common_neighbour_analysis",
    "structure_fractions",
]
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)

if TYPE_CHECKING:
    from al_flows.structures.analysis import common_neighbour_analysis, structure_fractions
    from al_flows.structures.generators import DPGenInitSettings, RandomCellSettings, dpgen_initial_sets, random_cells
    from al_flows.structures.initial_data import StructureSource, build_structures, perturbed_copies
    from al_flows.structures.multilayer import VARIANTS, cuni_multilayer
