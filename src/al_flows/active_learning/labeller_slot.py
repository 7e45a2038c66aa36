"""What may go in the active-learning loop's labelling slot, and the Maker that labels with it.

A user gives the labeller as what they already have: an ASE calculator (an instance, or a name such
as ``'emt'`` or an import path ``'pkg.module.Class'``), an atomate2 VASP Maker (``StaticMaker`` with
any input set), or one of this package's label Makers. An ASE calculator instance is recorded as
its import path and ``calc.parameters`` (so the job can be serialised and run elsewhere, e.g. by
FireWorks) and rebuilt in the label job; a calculator whose settings are not all in ``parameters``
should be given as a label Maker with ``calculator_kwargs`` instead.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

from jobflow import Maker
from monty.json import jsanitize

from al_flows.active_learning.jobs.labelling import AseLabelMaker
from al_flows.active_learning.jobs.vasp_labelling import VaspLabelMaker
from al_flows.labelling.vasp_inputs import label_settings_id
from al_flows.workflow.config import AseLabeller

__all__ = ["label_maker_for"]

SHORT_NAMES = {"EMT": "emt", "LennardJones": "lj"}


def label_maker_for(labeller, max_force: float = 50.0, min_success_fraction: float = 0.5) -> Maker:
    """The label Maker for ``labeller`` (see the module doc); label Makers are returned unchanged."""
    if isinstance(labeller, AseLabelMaker) and not labeller.labeller_settings:  # built by hand: its section too
        kwargs = dict(labeller.calculator_kwargs)
        made = ase_label_maker(labeller.calculator, kwargs, labeller.max_force, labeller.min_success_fraction)
        return replace(labeller, labeller_settings=made.labeller_settings)
    if isinstance(labeller, (AseLabelMaker, VaspLabelMaker)):
        return labeller
    if isinstance(labeller, str):
        return ase_label_maker(labeller, {}, max_force, min_success_fraction)
    from ase.calculators.calculator import BaseCalculator

    if isinstance(labeller, BaseCalculator):
        cls = type(labeller)
        name = SHORT_NAMES.get(cls.__name__) if cls.__module__.startswith("ase.calculators.") else None
        path = name or f"{cls.__module__}.{cls.__qualname__}"
        kwargs = jsanitize(dict(getattr(labeller, "parameters", {}) or {}), strict=True)
        return ase_label_maker(path, kwargs, max_force, min_success_fraction)
    if is_vasp_maker(labeller):
        return VaspLabelMaker(
            static_maker=labeller,
            labeller_name=f"vasp:{labeller.name}",
            label_settings=vasp_settings_id(labeller),
            max_force=max_force,
            min_success_fraction=min_success_fraction,
        )
    raise TypeError(
        f"label_maker: a {type(labeller).__name__} cannot label frames; give an ASE calculator (or its name), "
        "an atomate2 VASP Maker such as StaticMaker, or an AseLabelMaker / VaspLabelMaker"
    )


def ase_label_maker(calculator: str, kwargs: dict, max_force: float, min_success_fraction: float) -> AseLabelMaker:
    """An AseLabelMaker whose label settings id is the one a campaign file with these settings gets."""
    if calculator.lower() == "eam":  # the file is a setting of its own: AseLabeller(potential=...)
        rest = {k: v for k, v in kwargs.items() if k not in ("potential", "sha256")}
        config = AseLabeller(
            calculator=calculator,
            potential=kwargs.get("potential"),
            potential_sha256=kwargs.get("sha256"),
            kwargs=rest,
            max_force=max_force,
            min_success_fraction=min_success_fraction,
        )
    else:
        config = AseLabeller(
            calculator=calculator, kwargs=kwargs, max_force=max_force, min_success_fraction=min_success_fraction
        )
    return AseLabelMaker(
        calculator=calculator,
        calculator_kwargs=config.calculator_kwargs(),
        max_force=max_force,
        min_success_fraction=min_success_fraction,
        label_settings=label_settings_id(config),
        labeller_settings=config.model_dump(mode="json"),
    )


def is_vasp_maker(obj) -> bool:
    """Whether ``obj`` is an atomate2 VASP job Maker (atomate2 imported only to check)."""
    try:
        from atomate2.vasp.jobs.base import BaseVaspMaker
    except ImportError:  # atomate2 not installed: nothing can be one
        return False
    return isinstance(obj, BaseVaspMaker)


def vasp_settings_id(maker) -> str:
    """``vasp:<maker name>:<12 hex>``: a hash of the Maker's settings (input set, INCAR updates, ...)."""
    d = jsanitize(maker.as_dict(), strict=True, enum_values=True)
    digest = hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"vasp:{maker.name}:{digest}"
