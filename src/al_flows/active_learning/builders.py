"""Campaign file -> the Makers of the active-learning loop: the pieces
``ActiveLearningMaker.from_config`` assembles (explorers by ``kind``, the labeller, FireWorks
categories, the autotest's reference). The YAML layer is this module; the loop itself is built
from Makers and settings objects (docs/python_api.md)."""

from __future__ import annotations

from jobflow import Maker

from al_flows.active_learning.config import CampaignConfig
from al_flows.active_learning.jobs.exploration import MDExploreMaker, ShearExploreMaker
from al_flows.active_learning.jobs.labelling import AseLabelMaker
from al_flows.active_learning.jobs.vasp_labelling import VaspLabelMaker
from al_flows.active_learning.jobs.vasp_properties import VaspPropertyReferenceMaker
from al_flows.exploration.md import NVTSettings, ScheduleSettings
from al_flows.exploration.shear import ShearSettings
from al_flows.labelling.vasp_inputs import VaspInputSettings, label_settings_id, static_maker

__all__ = [
    "EXPLORERS",
    "explore_maker",
    "explorer_section",
    "label_maker",
    "property_reference_maker",
    "categories",
]

# explorer ``kind`` of a campaign file -> (Maker, its settings class)
EXPLORERS: dict[str, tuple[type[ShearExploreMaker] | type[MDExploreMaker], type]] = {
    "shear": (ShearExploreMaker, ShearSettings),
    "langevin_schedule": (MDExploreMaker, ScheduleSettings),
    "md": (MDExploreMaker, NVTSettings),
}


def explore_maker(explorer) -> Maker:
    """The Maker of one configured explorer."""
    maker, settings = EXPLORERS[explorer.kind]
    return maker(
        name=explorer.name, settings=settings(**explorer.model_dump(exclude={"kind", "name"}, exclude_unset=True))
    )


def label_maker(config: CampaignConfig) -> Maker:
    """The label Maker of the campaign's labeller (atomate2 StaticMaker jobs for VASP)."""
    lab, q = config.labeller, config.queues
    if lab.kind == "vasp":
        return VaspLabelMaker(
            static_maker=static_maker(VaspInputSettings.from_mapping(lab.model_dump())),
            labeller_name=f"vasp:{lab.preset}",
            label_settings=label_settings_id(lab),
            max_force=lab.max_force,
            min_success_fraction=lab.min_success_fraction,
            static_metadata={"fingerprint": config.fingerprint()},
            static_category=q.label,
            collect_category=q.default,
            labeller_settings=lab.model_dump(mode="json"),
        )
    return AseLabelMaker(
        calculator=lab.calculator,
        calculator_kwargs=lab.calculator_kwargs(),
        max_force=lab.max_force,
        min_success_fraction=lab.min_success_fraction,
        label_settings=label_settings_id(lab),
        labeller_settings=lab.model_dump(mode="json"),
    )


def explorer_section(maker: ShearExploreMaker | MDExploreMaker) -> dict:
    """The ``explorers`` entry of a campaign file with this explore Maker (JSON data): its ``kind``
    (from its settings' class, :data:`EXPLORERS`), name and settings."""
    kinds = [kind for kind, (_, settings) in EXPLORERS.items() if type(maker.settings) is settings]
    if len(kinds) != 1:
        raise TypeError(
            f"explore_makers: {type(maker).__name__} with {type(maker.settings).__name__} is no explorer kind"
        )
    return {"kind": kinds[0], "name": maker.name, **maker.settings.model_dump(mode="json")}


def property_reference_maker(config: CampaignConfig) -> Maker | None:
    """The Maker of the VASP reference of ``convergence.properties`` (atomate2's EOS and elastic
    flows with the labeller's settings), or None (no properties, or an ASE labeller: its reference
    is one job)."""
    lab, conv = config.labeller, config.convergence
    if lab.kind != "vasp" or not conv.properties:
        return None
    kpoints = conv.reference_kpoints
    return VaspPropertyReferenceMaker(
        static_maker=static_maker(VaspInputSettings.from_mapping(lab.model_dump())),
        kpoints=None if kpoints is None else kpoints.model_dump(exclude_none=True),
        reference=f"vasp:{lab.preset}",
        vasp_category=config.queues.label,
        collect_category=config.queues.default,
        metadata={"fingerprint": config.fingerprint()},
    )


def categories(config: CampaignConfig) -> dict[str, str]:
    """FireWorks category of each stage (the ``queues`` of the campaign file)."""
    q = config.queues
    labeller_runs_here = (
        config.labeller.kind == "ase"
    )  # VASP runs in its own static jobs; dispatch/collect are bookkeeping
    return {
        "train": q.train,
        "explore": q.explore,
        "evaluate": q.evaluate,
        "label": q.label if labeller_runs_here else q.default,
        "label_test": q.label if labeller_runs_here else q.default,
        "test_set": q.label if config.test_set.kind in ("mixed", "labeller_shear") else q.default,
        "default": q.default,
    }
