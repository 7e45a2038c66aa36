"""Reading a campaign file: one YAML file, validated with pydantic, and its starting structures
checked before anything runs.

``workflow:`` picks the schema: ``active_learning`` (default, :class:`~al_flows.active_learning.config.CampaignConfig`)
or ``pool_study`` (:class:`~al_flows.pool_study.config.PoolStudyConfig`), the ``config_class`` of the
workflow of that name (:data:`al_flows.campaign.workflows.WORKFLOWS`); the keys both share are
:mod:`al_flows.workflow.config`. Every model forbids unknown keys. :func:`load_campaign` turns any
validation problem into a :class:`ConfigError` whose message is one line per problem,
naming the field (dotted path) and what to do about it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Union

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from al_flows.active_learning.config import CampaignConfig
from al_flows.campaign.campaign_file import ConfigError, read_campaign_file
from al_flows.campaign.workflows import WORKFLOWS, workflow_named, workflow_of
from al_flows.pool_study.config import PoolStudyConfig

AnyConfig = Union[CampaignConfig, PoolStudyConfig]

_KINDS = (
    "multilayer",
    "file",
    "random_cells",
    "dpgen",
    "shear",
    "langevin_schedule",
    "ase",
    "vasp",
    "embedded",
    "mongodb",
    "import",
    "md",
    "labeller_shear",
)


def _format_error(err: ErrorDetails) -> str:
    loc = ""
    for p in err["loc"]:
        if isinstance(p, int):
            loc += f"[{p}]"
        elif not (p in _KINDS or p.startswith("function-")):
            loc += f".{p}" if loc else p
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key; remove it or check its spelling (see docs/configuration.md)"
    elif err["type"] == "missing":
        msg = "required; add it (see docs/configuration.md)"
    msg = msg.removeprefix("Value error, ")
    if loc and msg.startswith(f"{loc}."):
        return msg  # a check of a section that names its field itself
    if not loc and re.match(r"^[A-Za-z_][A-Za-z0-9_.\[\]]*: ", msg):
        return msg  # a whole-campaign check that names its field itself
    return f"{loc or '<top level>'}: {msg}{_given(err)}"


def _given(err: ErrorDetails) -> str:
    """`` (got VALUE)``: the value a field was given, its repr cut at 60 characters; '' for a missing
    or unknown key and for a check of a whole section (its input is the section's mapping)."""
    if err["type"] in ("missing", "extra_forbidden") or isinstance(err.get("input"), dict) or "input" not in err:
        return ""
    text = repr(err["input"])
    return f" (got {text[:57] + '...' if len(text) > 60 else text})"


def check_imports(config: AnyConfig, source: str = "campaign") -> None:
    """Import every ASE calculator the campaign names (labeller, and those of its workflow: the
    autotest reference), so that a wrong import path fails at validation with one line, not in a job."""
    from al_flows.labelling.ase import calculator_factory

    named = []
    if config.labeller.kind == "ase":
        lab = config.labeller
        named.append(("labeller.calculator", lab.calculator, lab.calculator_kwargs() if lab.potential_path else {}))
    named += workflow_of(config).other_calculators(config)
    for field, spec, kwargs in named:
        try:
            if spec.lower() == "eam":  # the file: found, checked and read (its own field in the message)
                if kwargs:
                    calculator_factory(spec, kwargs)
                continue
            calculator_factory(spec)
        except ValueError as exc:
            message = str(exc)
            if spec.lower() == "eam" and field == "autotest.reference":
                message = message.replace("labeller.", "autotest.reference_kwargs.", 1)
            elif spec.lower() == "eam" and not message.startswith("labeller."):
                message = f"labeller.potential: {message}"
            elif spec.lower() != "eam":
                message = f"{field}: {message.split(': ', 1)[-1]}"
            raise ConfigError(f"{source}: {message}") from None


def validate_campaign(
    data: dict, source: str = "campaign", imports: bool = True, base_dir: str | Path | None = None
) -> AnyConfig:
    """Validate a mapping (``workflow:`` active_learning, the default, or pool_study); raise
    ConfigError with one line per problem. ``imports``: also import the named calculators
    (:func:`check_imports`) and find the files they read (an EAM labeller's potential, relative to
    ``base_dir``, the campaign file's folder; default: the working directory)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the file must hold a mapping of campaign settings, got {type(data).__name__}")
    name = data.get("workflow", "active_learning")
    workflow = workflow_named(name)
    if workflow is None:
        raise ConfigError(f"{source}: workflow: unknown workflow {name!r}; choose one of {list(WORKFLOWS)}")
    if "workflow" not in workflow.config_class.model_fields:  # a model without the key (CampaignConfig)
        data = {k: v for k, v in data.items() if k != "workflow"}
    try:
        config = workflow.config_class.model_validate(data, context={"base_dir": base_dir, "files": imports})
    except ValidationError as exc:
        lines = [f"{source}: {_format_error(e)}" for e in exc.errors()]
        raise ConfigError("\n".join(lines)) from None
    if imports:
        check_imports(config, source)
    return config


def load_campaign(path: str | Path) -> tuple[AnyConfig, Path]:
    """Read and validate a campaign YAML (:func:`read_campaign_file` first); return the config and the
    file's directory. Messages name the file by the path as given."""
    path = Path(path)
    return (
        validate_campaign(read_campaign_file(path), source=str(path), base_dir=path.parent.resolve()),
        path.parent.resolve(),
    )


def check_campaign_structures(config: AnyConfig, base_dir: str | Path = ".") -> int:
    """Build and check the starting structures a campaign reads from files or builds as
    multilayers (cheap; generated random cells and DP-GEN sets are checked when the campaign
    builds them): ``initial.structures`` of an active-learning campaign, the md pool sources'
    and the shear study's structures of a pool study (its workflow's ``check_structures``).
    Returns how many structures were checked; raises StructureError (ValueError for a missing
    file) naming the field."""
    return workflow_of(config).check_structures(config, base_dir)
