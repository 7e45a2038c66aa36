"""A campaign file's first checks, before the settings models (and the science they import) load:
the file exists, is valid YAML holding a mapping, names a known ``workflow`` and only known
top-level keys. :mod:`al_flows.campaign.config` validates the rest; this module imports only PyYAML,
so ``al-flows validate`` of a malformed file answers at once.
"""

from __future__ import annotations

from pathlib import Path

import yaml


class ConfigError(ValueError):
    """A campaign file that cannot be used; the message says which field and how to fix it."""


# The top-level keys of each workflow's settings model (``workflow`` itself included);
# tests/campaign/test_cli_user.py checks them against CampaignConfig and PoolStudyConfig.
TOP_LEVEL_KEYS: dict[str, frozenset[str]] = {
    "active_learning": frozenset(
        (
            "workflow",
            "name",
            "seed",
            "elements",
            "initial",
            "model",
            "training",
            "ensemble_size",
            "explorers",
            "selection",
            "labeller",
            "test_set",
            "store",
            "queues",
            "max_rounds",
            "convergence",
            "autotest",
        )
    ),
    "pool_study": frozenset(
        (
            "workflow",
            "name",
            "seed",
            "elements",
            "pool",
            "model",
            "training",
            "active_sampling",
            "baselines",
            "shear_study",
            "validation",
            "labeller",
            "store",
            "queues",
        )
    ),
}
UNKNOWN_KEY = "unknown key; remove it or check its spelling (see docs/configuration.md)"


def check_top_level(data: object, source: str) -> dict:
    """``data`` if it is a mapping with a known ``workflow`` and known top-level keys, else a
    ConfigError with one line per problem (``source: key: problem; fix``)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the file must hold a mapping of campaign settings, got {type(data).__name__}")
    workflow = data.get("workflow", "active_learning")
    if workflow not in TOP_LEVEL_KEYS:
        raise ConfigError(f"{source}: workflow: unknown workflow {workflow!r}; choose one of {list(TOP_LEVEL_KEYS)}")
    unknown = [k for k in data if k not in TOP_LEVEL_KEYS[workflow]]
    if unknown:
        raise ConfigError("\n".join(f"{source}: {k}: {UNKNOWN_KEY}" for k in unknown))
    return data


def read_campaign_file(path: str | Path) -> dict:
    """The settings mapping of a campaign YAML, checked by :func:`check_top_level`; messages name
    the file by the path as given."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{path}: no such campaign file; pass the path of a campaign YAML (e.g. flows/demo_cuni_emt.yaml)"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}; fix the file's syntax") from None
    return check_top_level(data, str(path))
