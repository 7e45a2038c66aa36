"""Reading a campaign file: one YAML file, validated with pydantic, and its starting structures
checked before anything runs.

``workflow:`` picks the schema: ``active_learning`` (default, :class:`~al_flows.active_learning.config.CampaignConfig`)
or ``pool_study`` (:class:`~al_flows.pool_study.config.PoolStudyConfig`); the keys both share are
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
from al_flows.exploration.shear import shear_level
from al_flows.exploration.shear_geometry import check_reaches_gamma, shear_start
from al_flows.pool_study.config import PoolStudyConfig
from al_flows.structures.initial_data import FileSource, MultilayerSource, source_structures

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


WORKFLOWS: dict[str, type[CampaignConfig] | type[PoolStudyConfig]] = {
    "active_learning": CampaignConfig,
    "pool_study": PoolStudyConfig,
}


def check_imports(config: AnyConfig, source: str = "campaign") -> None:
    """Import every ASE calculator the campaign names (labeller, autotest reference), so that a
    wrong import path fails at validation with one line, not in a job."""
    from al_flows.labelling.ase import calculator_factory

    named = []
    if config.labeller.kind == "ase":
        lab = config.labeller
        named.append(("labeller.calculator", lab.calculator, lab.calculator_kwargs() if lab.potential_path else {}))
    autotest = getattr(config, "autotest", None)
    if autotest is not None and autotest.reference is not None:
        named.append(("autotest.reference", autotest.reference, autotest.reference_kwargs))
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
    workflow = data.get("workflow", "active_learning")
    if workflow not in WORKFLOWS:
        raise ConfigError(f"{source}: workflow: unknown workflow {workflow!r}; choose one of {list(WORKFLOWS)}")
    if workflow == "active_learning":
        data = {k: v for k, v in data.items() if k != "workflow"}
    try:
        config = WORKFLOWS[workflow].model_validate(data, context={"base_dir": base_dir, "files": imports})
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


def check_campaign_structures(config, base_dir: str | Path = ".") -> int:
    """Build and check the starting structures a campaign reads from files or builds as
    multilayers (cheap; generated random cells and DP-GEN sets are checked when the campaign
    builds them): ``initial.structures`` of an active-learning campaign, the md pool sources'
    and the shear study's structures of a pool study. Returns how many structures were checked;
    raises StructureError (ValueError for a missing file) naming the field."""
    groups = []
    if hasattr(config, "initial"):
        groups.append(("initial.structures", config.initial.structures))
    else:
        groups += [
            (f"pool.sources[{i}].structures", src.structures)
            for i, src in enumerate(config.pool.sources)
            if src.kind in ("md", "labeller_shear")
        ]
        if config.shear_study is not None:
            groups.append(("shear_study.structures", config.shear_study.structures))
    shears = [(f"explorers[{j}]", e) for j, e in enumerate(getattr(config, "explorers", [])) if e.kind == "shear"]
    n = 0
    for where, sources in groups:
        for i, src in enumerate(sources):
            if isinstance(src, (FileSource, MultilayerSource)):
                got = source_structures(src, f"{where}[{i}]", base_dir, config.elements, config.seed, i)
                n += len(got)
                checks = shears if where == "initial.structures" else []
                if where == "shear_study.structures":
                    checks = [("shear_study", config.shear_study)]
                elif where.startswith("pool.sources["):
                    src_index = int(where.split("[")[1].split("]")[0])
                    source = config.pool.sources[src_index]
                    checks = [(f"pool.sources[{src_index}]", source)] if source.kind == "labeller_shear" else []
                for field, settings in checks:  # a step cap that stops short of gamma_max validates nothing
                    top = shear_level(settings, 10**9)  # the highest level of an auto schedule
                    for atoms in got:
                        check_reaches_gamma(top, shear_start(atoms).cell[:], field)
    return n
