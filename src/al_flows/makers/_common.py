"""Small helpers shared by the Makers."""

from __future__ import annotations

import hashlib
import uuid as _uuid

import numpy as np

# Namespace of the deterministic job uuids (uuid5 of the campaign, fingerprint, round, stage, key).
_JOB_NAMESPACE = _uuid.UUID("5f0c8a52-4c1e-4f43-9a0e-6d1f2b7c9e11")


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


def stable_uuid(*parts) -> str:
    """A job uuid fixed by its place in a campaign (campaign, fingerprint, round, stage, key):
    the same job of a re-planned flow gets the same uuid, so a run after a crash finds the
    outputs of the jobs that had finished (see :func:`drop_completed`)."""
    return str(_uuid.uuid5(_JOB_NAMESPACE, "/".join(str(p) for p in parts)))


# Stages whose jobs always run again: they only create the jobs after them, and re-creating
# them (with the same uuids) is how a crashed run finds its place.
ALWAYS_RUN_STAGES = frozenset({"round"})


def completed_uuids(store, uuids) -> set[str]:
    """Those of ``uuids`` with a stored, non-empty output (any index) in ``store``."""
    uuids = list(uuids)
    if not uuids or store is None:
        return set()
    done, pointers = set(), {}
    for d in store.query({"uuid": {"$in": uuids}, "output": {"$ne": None}}, properties=["uuid", "output"]):
        out = d["output"]
        if isinstance(out, dict) and out.get("@class") == "OutputReference":
            # a replaced job's output is a reference to the job that replaced it (jobflow's
            # store_inputs): done only when that job is
            pointers.setdefault(d["uuid"], set()).add(out["uuid"])
        else:
            done.add(d["uuid"])
    pending = {u: refs for u, refs in pointers.items() if u not in done}
    if pending:
        targets = completed_uuids(store, {r for refs in pending.values() for r in refs})
        done |= {u for u, refs in pending.items() if refs & targets}
    return done


def drop_completed(jobs: list, store) -> tuple[list, list]:
    """(jobs to run, jobs already done): a job whose output is in ``store`` from an earlier,
    interrupted run is not run again; the jobs after it read its output by uuid."""
    candidates = [j for j in jobs if (j.metadata or {}).get("stage") not in ALWAYS_RUN_STAGES]
    done = completed_uuids(store, [j.uuid for j in candidates])
    return [j for j in jobs if j.uuid not in done], [j for j in jobs if j.uuid in done]
