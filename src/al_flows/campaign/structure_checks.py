"""Checking a campaign's starting structures before anything runs: the structures read from files or
built as multilayers (cheap; generated random cells and DP-GEN sets are checked when the campaign
builds them), and that each shear that will strain them reaches its gamma_max. Each workflow names
its groups of sources (:meth:`al_flows.campaign.workflows.Workflow.check_structures`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from al_flows.exploration.shear import shear_level
from al_flows.exploration.shear_geometry import check_reaches_gamma, shear_start
from al_flows.structures.initial_data import FileSource, MultilayerSource, source_structures

# (field of the sources, e.g. "initial.structures"; the sources; the shears that strain their
# structures, each as (field, shear settings))
StructureGroup = tuple[str, list, list[tuple[str, Any]]]


def check_structure_groups(groups: list[StructureGroup], base_dir: str | Path, elements, seed: int) -> int:
    """Build and check the structures of every file and multilayer source of ``groups``; returns how
    many were checked; raises StructureError (ValueError for a missing file) naming the field."""
    n = 0
    for where, sources, shears in groups:
        for i, src in enumerate(sources):
            if isinstance(src, (FileSource, MultilayerSource)):
                got = source_structures(src, f"{where}[{i}]", base_dir, elements, seed, i)
                n += len(got)
                for field, settings in shears:  # a step cap that stops short of gamma_max validates nothing
                    top = shear_level(settings, 10**9)  # the highest level of an auto schedule
                    for atoms in got:
                        check_reaches_gamma(top, shear_start(atoms).cell[:], field)
    return n
