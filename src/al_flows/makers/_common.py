"""Small helpers shared by the Makers."""

from __future__ import annotations

import hashlib

import numpy as np


def route(job, category: str):
    """Send ``job`` to the FireWorks category ``category``, and stop jobflow from copying a
    parent's manager_config onto the jobs this one creates (dynamic jobs keep their own)."""
    job.update_config({"manager_config": {"_category": category}, "pass_manager_config": False}, dynamic=False)
    return job


def field(doc, key):
    """Read ``key`` from a job output that arrives as a pydantic document or as a dict."""
    return doc[key] if isinstance(doc, dict) else getattr(doc, key)


def derived_seed(*parts: int) -> int:
    """A reproducible 31-bit seed from integers (campaign seed, round, member, ...)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] & 0x7FFFFFFF)


def ensemble_id(model_ids: list[str]) -> str:
    """Identifier of an ensemble: hash of its members' ids, in member order."""
    return hashlib.sha1("|".join(model_ids).encode()).hexdigest()[:16]


def load_ensemble(models: list, device: str = "cpu"):
    """Ensemble from TrainingDocuments (weights loaded with weights_only=True)."""
    from al_flows.documents import weights_bytes
    from al_flows.ensemble import Ensemble

    return Ensemble.from_bytes([weights_bytes(field(m, "model_blob")) for m in models], device=device)


def model_ids_of(models: list) -> list[str]:
    return [field(m, "model_id") for m in models]
