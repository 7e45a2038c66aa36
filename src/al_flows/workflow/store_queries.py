"""Store queries that need no campaign record: a campaign's attempts by fingerprint (finding one run
with other settings, discarding it), the stages a campaign has documents of, one job's document,
and a campaign's failure records. The campaign layer asks these instead of querying the JobStore
itself (:class:`al_flows.campaign.record.CampaignRecord` holds the per-round ones)."""

from __future__ import annotations

from jobflow import JobStore

from al_flows.workflow.jobs import FAILURE_KEY
from al_flows.workflow.timing import TIMING_KEY


def other_fingerprint(store: JobStore, campaign: str, fingerprint: str) -> str | None:
    """The fingerprint of a stored job of ``campaign`` run with other settings than ``fingerprint``
    (None when every stored job has it)."""
    other = store.query_one(
        {"metadata.campaign": campaign, "metadata.fingerprint": {"$exists": True, "$ne": fingerprint}},
        properties=["metadata"],
    )
    return None if other is None else other["metadata"].get("fingerprint")


def has_output_beyond(store: JobStore, campaign: str, fingerprint: str, stages: tuple[str, ...]) -> bool:
    """Whether a job of ``campaign`` run with ``fingerprint`` at a stage not in ``stages`` has an output."""
    used = store.query_one(
        {
            "metadata.campaign": campaign,
            "metadata.fingerprint": fingerprint,
            "metadata.stage": {"$nin": list(stages)},
            "output": {"$ne": None},
        },
        properties=["uuid"],
    )
    return used is not None


def discard_attempt(store: JobStore, campaign: str, fingerprint: str) -> int:
    """Delete the documents (and their data-store blobs, failure and timing records) of ``campaign``
    run with ``fingerprint``; returns the number of job documents removed."""
    crit = {"metadata.campaign": campaign, "metadata.fingerprint": fingerprint}
    uuids = sorted({d["uuid"] for d in store.query(crit, properties=["uuid"])})
    store.docs_store.remove_docs(crit)
    for key in (FAILURE_KEY, TIMING_KEY):
        store.docs_store.remove_docs({f"{key}.campaign": campaign, f"{key}.fingerprint": fingerprint})
    for extra in store.additional_stores.values():
        if uuids:
            extra.remove_docs({"job_uuid": {"$in": uuids}})
    return len(uuids)


def stages_stored(store: JobStore, campaign: str) -> set[str]:
    """The stages of which ``campaign`` has job documents in ``store`` (finished or not)."""
    return {d["metadata"]["stage"] for d in store.query({"metadata.campaign": campaign}, properties=["metadata"])}


def job_document(store: JobStore, uuid: str, index: int | None = None) -> dict | None:
    """The document of job ``uuid`` with its output loaded from the data store: of run ``index``,
    or the latest run when None; None when not stored."""
    if index is not None:
        return store.query_one({"uuid": uuid, "index": index}, load=True)
    return store.query_one({"uuid": uuid}, load=True, sort={"index": -1})


def failure_records(store: JobStore, campaign: str) -> list[dict]:
    """Every failure record of ``campaign``'s jobs (see :func:`al_flows.workflow.jobs.record_failure`),
    in store order."""
    return [d[FAILURE_KEY] for d in store.docs_store.query({f"{FAILURE_KEY}.campaign": campaign})]


def timing_records(store: JobStore, campaign: str, round_: int | None = None) -> list[dict]:
    """The timing records of ``campaign``'s jobs (of round ``round_`` when given; see
    :mod:`al_flows.workflow.timing`), in store order."""
    query: dict = {f"{TIMING_KEY}.campaign": campaign}
    if round_ is not None:
        query[f"{TIMING_KEY}.round"] = round_
    return [d[TIMING_KEY] for d in store.docs_store.query(query)]
