"""The common document base and the job decorator that routes every ``*_blob`` field to the data store."""

from __future__ import annotations

import inspect

from jobflow import JobStore, run_locally
from maggma.stores import MemoryStore

import al_flows.active_learning.schemas as schemas
from al_flows.workflow.documents import CampaignDocument, EnsembleDocument, RoundDocument, blob_fields
from al_flows.workflow.jobs import DATA_STORE, al_job


class FramesDocument(RoundDocument):
    n_frames: int
    frames_blob: str


@al_job(output_schema=FramesDocument)
def make_frames(n: int) -> FramesDocument:
    return FramesDocument(campaign="c", round=0, n_frames=n, frames_blob="x" * n)


def test_blob_fields_go_to_the_data_store_without_being_listed():
    store = JobStore(MemoryStore(), additional_stores={DATA_STORE: MemoryStore()})
    j = make_frames(1000)
    run_locally(j, store=store, create_folders=False, log=False)
    doc = store.docs_store.query_one({"uuid": j.uuid})
    ref = doc["output"]["frames_blob"]  # the document keeps a reference, not the text
    assert ref["store"] == DATA_STORE and set(ref) >= {"blob_uuid"}
    assert doc["output"]["n_frames"] == 1000
    assert store.query_one({"uuid": j.uuid}, load=True)["output"]["frames_blob"] == "x" * 1000
    assert store.additional_stores[DATA_STORE].count() == 1


def test_every_loop_document_carries_the_common_fields():
    docs = [c for _, c in inspect.getmembers(schemas, inspect.isclass) if c.__module__ == schemas.__name__]
    outputs = [c for c in docs if c.__name__ != "RoundState"]
    assert len(outputs) == 15  # with the property reference, the per-round properties and the extension selection
    assert all(issubclass(c, CampaignDocument) for c in outputs)
    assert issubclass(schemas.SelectionDocument, EnsembleDocument)
    assert {"campaign", "round", "ensemble_id", "wall_time"} <= set(schemas.ExplorationDocument.model_fields)
    assert blob_fields(schemas.TrainingDocument) == ["model_blob"]
    assert blob_fields(None) == []
