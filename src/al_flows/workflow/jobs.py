"""What every jobflow job of al_flows shares: the ``al_job`` decorator (jobflow's ``@job`` plus a
failure record in the store), routing to FireWorks categories, fixed job uuids, reading job
outputs back from the JobStore (completed jobs, latest outputs of a stage), and loading the
models a job received. Used by :mod:`al_flows.active_learning`, :mod:`al_flows.pool_study`
and :mod:`al_flows.campaign`; imports no workflow of its own."""

from __future__ import annotations

import functools
import hashlib
import time
import uuid as _uuid

import numpy as np
from jobflow import CURRENT_JOB, JobStore, OutputReference, job

from al_flows.workflow.documents import blob_fields
from al_flows.workflow.timing import TIMING_KEY, Stopwatch, timing_record

# Name of the JobStore's additional store that receives the ``*_blob`` fields of job outputs
# (``@al_job(data=[...])``): frames, datasets and model weights, never inside a document.
DATA_STORE = "data"

# Namespace of the deterministic job uuids (uuid5 of the campaign, fingerprint, round, stage, key).
_JOB_NAMESPACE = _uuid.UUID("5f0c8a52-4c1e-4f43-9a0e-6d1f2b7c9e11")


def route(job, category: str):
    """Send ``job`` to the FireWorks category ``category``, and stop jobflow from copying a
    parent's manager_config onto the jobs this one creates (dynamic jobs keep their own).
    The job sees the store (``expose_store``) so that a failure is recorded there."""
    job.update_config(
        {"manager_config": {"_category": category}, "pass_manager_config": False, "expose_store": True}, dynamic=False
    )
    return job


def resolve_reference(value, store):
    """``value`` resolved against ``store`` when it is an OutputReference (jobs that run with
    ``resolve_references=False`` resolve their inputs themselves), else ``value``."""
    return value.resolve(store) if isinstance(value, OutputReference) else value


def field(doc, key):
    """Read ``key`` from a job output that arrives as a pydantic document or as a dict."""
    return doc[key] if isinstance(doc, dict) else getattr(doc, key)


def field_or_none(doc, key):
    """:func:`field`, or None when the output lacks ``key`` (written before the field existed)."""
    return doc.get(key) if isinstance(doc, dict) else getattr(doc, key, None)


def derived_seed(*parts: int) -> int:
    """A reproducible 31-bit seed from integers (campaign seed, round, member, ...)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] & 0x7FFFFFFF)


def ensemble_id(model_ids: list[str]) -> str:
    """Identifier of an ensemble: hash of its members' ids, in member order."""
    return hashlib.sha1("|".join(model_ids).encode()).hexdigest()[:16]


def load_ensemble(models: list, device: str | None = None):
    """Ensemble from TrainingDocuments (weights loaded with weights_only=True), on ``device``
    (None: the worker's run-time device, :func:`al_flows.potential.device.resolve_device`)."""
    from al_flows.potential.device import resolve_device
    from al_flows.potential.ensemble import Ensemble
    from al_flows.potential.weights import weights_bytes

    blobs = [weights_bytes(field(m, "model_blob")) for m in models]
    return Ensemble.from_bytes(blobs, device=resolve_device(device))


def model_calculator(model_doc):
    """ASE calculator of the one model of a document with ``model_blob`` (a SamplingDocument)."""
    from al_flows.potential.device import resolve_device
    from al_flows.potential.ensemble import Ensemble
    from al_flows.potential.weights import weights_bytes

    return Ensemble.from_bytes([weights_bytes(field(model_doc, "model_blob"))], device=resolve_device()).calculator()


def model_ids_of(models: list) -> list[str]:
    """The ``model_id`` of each TrainingDocument (or dict) in ``models``."""
    return [field(m, "model_id") for m in models]


def stable_uuid(*parts) -> str:
    """A job uuid fixed by its place in a campaign (campaign, fingerprint, round, stage, key):
    the same job of a re-planned flow gets the same uuid, so a run after a crash finds the
    outputs of the jobs that had finished (see :func:`drop_completed`)."""
    return str(_uuid.uuid5(_JOB_NAMESPACE, "/".join(str(p) for p in parts)))


def latest_outputs(
    store: JobStore,
    campaign: str,
    stage: str,
    criteria: dict | None = None,
    properties: list[str] | None = None,
    load: bool = False,
) -> list[dict]:
    """Documents of ``campaign``'s jobs at ``stage``: the highest index per uuid (a job
    replaced at run time has a later index), output not None; sorted by round, uuid."""
    crit = {"metadata.campaign": campaign, "metadata.stage": stage, **(criteria or {})}
    props = None if properties is None else sorted({"uuid", "index", "metadata", *properties})
    latest: dict[str, dict] = {}
    # jobflow annotates ``properties: dict | list = None`` (None is its default)
    for d in store.query(crit, properties=props, load=load):  # type: ignore[arg-type]
        if d.get("output") is None:
            continue
        if d["uuid"] not in latest or d["index"] > latest[d["uuid"]]["index"]:
            latest[d["uuid"]] = d
    return sorted(latest.values(), key=lambda d: (d["metadata"].get("round", -1), d["uuid"]))


# Stages whose jobs always run again: they only create the jobs after them, and re-creating
# them (with the same uuids) is how a crashed run finds its place.
ALWAYS_RUN_STAGES = frozenset({"round"})


def completed_uuids(store, uuids) -> set[str]:
    """Those of ``uuids`` with a stored, non-empty output (any index) in ``store``."""
    uuids = list(uuids)
    if not uuids or store is None:
        return set()
    done: set[str] = set()
    pointers: dict[str, set[str]] = {}
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


# -- failure records ------------------------------------------------------------------------------
# A job that raises leaves no output in the store (jobflow stores outputs of finished jobs only).
# Jobs made with :func:`al_job` record the failure themselves, as a document of the JobStore's
# docs store with a top-level ``failure`` key (no ``uuid``: jobflow never mistakes it for a job):
#     {"failure_id", "failure": {campaign, fingerprint, round, stage, job_uuid, job_name, reason, time}}
FAILURE_KEY = "failure"


def one_line_reason(exc: BaseException) -> str:
    """``module.ExceptionType: first line of the message`` (al_flows' errors say what to do)."""
    cls = type(exc)
    name = cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{name}: {lines[0]}" if lines else name


def record_failure(exc: BaseException) -> None:
    """Store a failure record of the running job (needs ``job.config.expose_store``)."""
    current, store = CURRENT_JOB.job, CURRENT_JOB.store
    if current is None:
        return
    md = current.metadata or {}
    from al_flows.workflow import progress

    progress.report("FAILED", md.get("round"), job=repr(current.name), reason=one_line_reason(exc)[:300])
    if store is None:
        return
    record = {
        "campaign": md.get("campaign", ""),
        "fingerprint": md.get("fingerprint", ""),
        "round": md.get("round", -1),
        "stage": md.get("stage", ""),
        "job_uuid": current.uuid,
        "job_index": current.index,
        "job_name": current.name,
        "reason": one_line_reason(exc)[:1000],
        "time": time.time(),
    }
    try:
        store.docs_store.update(
            [{"failure_id": f"{current.uuid}/{current.index}", FAILURE_KEY: record}], key="failure_id"
        )
    except Exception:  # noqa: BLE001 - recording must never hide the job's own error
        pass


def record_timing(watch: Stopwatch, ok: bool) -> None:
    """Store the running job's timing record (:mod:`al_flows.workflow.timing`; needs ``expose_store``)."""
    current, store = CURRENT_JOB.job, CURRENT_JOB.store
    if current is None or store is None:
        return
    record = timing_record(current.metadata or {}, current.name or "", current.uuid, current.index, watch, ok)
    try:
        store.docs_store.update(
            [{"timing_id": f"{current.uuid}/{current.index}/{record['started']:.6f}", TIMING_KEY: record}],
            key="timing_id",
        )
    except Exception:  # noqa: BLE001 - timing must never fail a job
        pass


def al_job(method=None, **job_kwargs):
    """jobflow's ``@job`` for al_flows' jobs: same arguments, plus a failure record in the store
    when the job raises (see :func:`record_failure`) and a timing record of every run
    (:mod:`al_flows.workflow.timing`). ``data`` (what goes to the data store)
    defaults to the ``*_blob`` fields of ``output_schema``, so a document's large text is never
    stored inside it."""
    if "data" not in job_kwargs and blob_fields(job_kwargs.get("output_schema")):
        job_kwargs["data"] = blob_fields(job_kwargs["output_schema"])

    def decorator(func):
        @functools.wraps(func)
        def recorded(*args, **kwargs):
            watch = Stopwatch()
            try:
                out = func(*args, **kwargs)
            except Exception as exc:
                record_failure(exc)
                record_timing(watch, ok=False)
                raise
            record_timing(watch, ok=True)
            return out

        return job(recorded, **job_kwargs)

    return decorator if method is None else decorator(method)
