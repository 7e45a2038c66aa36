"""docs/configuration.md documents every key a campaign file accepts."""

import re
import typing
from pathlib import Path

from pydantic import BaseModel

from al_flows.config import CampaignConfig, PoolStudyConfig

DOCS = Path(__file__).resolve().parents[1] / "docs"
DOC = (DOCS / "configuration.md").read_text()


def _models(annotation):
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _models(arg)


def all_keys(model, seen=None):
    seen = set() if seen is None else seen
    if model in seen:
        return set()
    seen.add(model)
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(name)
        for sub in _models(field.annotation):
            keys |= all_keys(sub, seen)
    return keys


def test_every_config_key_is_documented():
    text = DOC + (DOCS / "exploration.md").read_text()
    documented = set(re.findall(r"`([A-Za-z_0-9]+)`", text))
    keys = all_keys(CampaignConfig)
    assert len(keys) > 50
    missing = sorted(keys - documented)
    assert not missing, f"undocumented config keys: {missing}"


def test_every_pool_study_key_is_documented():
    text = DOC + (DOCS / "pool_study.md").read_text() + (DOCS / "exploration.md").read_text()
    documented = set(re.findall(r"`([A-Za-z_]+)`", text))
    keys = all_keys(PoolStudyConfig)
    assert {"eps_tol", "top_fraction", "merge_tol", "spurious_tol", "temperatures_K"} <= keys
    missing = sorted(keys - documented)
    assert not missing, f"undocumented pool-study keys: {missing}"
