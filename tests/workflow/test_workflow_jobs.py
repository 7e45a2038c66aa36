"""The shared job machinery of :mod:`al_flows.workflow.jobs`: the failure record of ``al_job``,
fixed job uuids (``stable_uuid``) and the completed jobs a resumed run skips (``drop_completed``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jobflow import CURRENT_JOB, Flow, JobStore, Response, job, run_locally
from maggma.stores import MemoryStore

from al_flows.workflow.jobs import (
    DATA_STORE,
    FAILURE_KEY,
    al_job,
    drop_completed,
    record_failure,
    route,
    stable_uuid,
)

SRC = Path(__file__).resolve().parents[2] / "src"
METADATA = {"campaign": "camp", "fingerprint": "fp0123", "round": 3, "stage": "train"}


class Boom(RuntimeError):
    pass


@al_job
def explode(x: int):
    raise Boom(f"\n  bad input {x}: use a smaller one  \nsecond line, never in the reason")


@al_job
def explode_with(message: str):
    raise ValueError(message)


@job
def add(a: int, b: int) -> int:
    return a + b


@pytest.fixture(autouse=True)
def no_current_job():
    """jobflow leaves CURRENT_JOB set when a job raises: each test starts without one."""
    CURRENT_JOB.reset()
    yield
    CURRENT_JOB.reset()


def memory_store() -> JobStore:
    store = JobStore(MemoryStore(), additional_stores={DATA_STORE: MemoryStore()})
    store.connect()
    return store


def failures(store: JobStore) -> list[dict]:
    return list(store.docs_store.query({FAILURE_KEY: {"$exists": True}}))


# -- al_job: the failure record ---------------------------------------------------------------------


def test_a_failing_job_records_its_failure_with_the_jobs_metadata():
    store = memory_store()
    j = route(explode(7), "cpu")
    j.update_metadata(METADATA)
    before = time.time()
    responses = run_locally(j, store=store, create_folders=False, log=False)
    after = time.time()

    assert j.uuid not in responses  # the flow went on (run_locally logs the error, raises nothing)
    assert store.query_one({"uuid": j.uuid}) is None  # no output document
    [doc] = failures(store)
    assert "uuid" not in doc  # never mistaken for a job's output document
    assert doc["failure_id"] == f"{j.uuid}/1"
    record = doc[FAILURE_KEY]
    assert {k: record[k] for k in ("campaign", "fingerprint", "round", "stage")} == METADATA
    assert (record["job_uuid"], record["job_index"], record["job_name"]) == (j.uuid, 1, "explode")
    # builtins are named bare, other exceptions with their module; the first non-blank line, stripped
    assert record["reason"] == f"{Boom.__module__}.Boom: bad input 7: use a smaller one"
    assert before <= record["time"] <= after


def test_the_exception_propagates_unchanged_after_the_record():
    store = memory_store()
    j = route(explode(8), "cpu")
    with pytest.raises(Boom, match="bad input 8") as info:
        run_locally(j, store=store, create_folders=False, log=False, raise_immediately=True)
    assert "second line" in str(info.value)  # the job's own exception, message whole
    [doc] = failures(store)
    assert doc[FAILURE_KEY]["reason"] == f"{Boom.__module__}.Boom: bad input 8: use a smaller one"

    with pytest.raises(RuntimeError, match="did not finish running successfully"):
        run_locally(route(explode(9), "cpu"), store=store, create_folders=False, log=False, ensure_success=True)
    reasons = sorted(d[FAILURE_KEY]["reason"] for d in failures(store))
    assert reasons == [f"{Boom.__module__}.Boom: bad input {x}: use a smaller one" for x in (8, 9)]


def test_a_job_without_metadata_records_defaults_and_a_bounded_reason():
    store = memory_store()
    long, empty = route(explode_with("x" * 5000), "cpu"), route(explode_with("  \n "), "cpu")
    run_locally(Flow([long, empty]), store=store, create_folders=False, log=False)
    by_uuid = {d[FAILURE_KEY]["job_uuid"]: d[FAILURE_KEY] for d in failures(store)}
    assert set(by_uuid) == {long.uuid, empty.uuid}
    for record in by_uuid.values():
        assert (record["campaign"], record["fingerprint"], record["round"], record["stage"]) == ("", "", -1, "")
        assert record["job_name"] == "explode_with"
    assert by_uuid[long.uuid]["reason"] == "ValueError: " + "x" * (1000 - len("ValueError: "))
    assert by_uuid[empty.uuid]["reason"] == "ValueError"  # no message: the type alone


def test_no_record_without_the_store_exposed_or_on_success():
    store = memory_store()
    unrouted = explode(1)  # al_job alone: the job does not see the store
    assert not unrouted.config.expose_store
    fine = route(add(1, 2), "cpu")
    run_locally(Flow([unrouted, fine]), store=store, create_folders=False, log=False)
    assert failures(store) == []
    assert store.query_one({"uuid": fine.uuid})["output"] == 3


def test_recording_never_hides_the_jobs_error():
    class BrokenDocs:
        def update(self, *args, **kwargs):
            raise ConnectionError("store went away")

    class BrokenStore:
        docs_store = BrokenDocs()

    CURRENT_JOB.job, CURRENT_JOB.store = explode(2), BrokenStore()
    record_failure(ValueError("the job's own error"))  # returns, raises nothing
    CURRENT_JOB.reset()
    record_failure(ValueError("outside any job"))  # no current job: nothing to record, nothing raised


# -- stable_uuid ----------------------------------------------------------------------------------------

PARTS = ("camp", "fp0123", 2, "train", "member-1")
# computed once (uuid5 in al_flows' namespace): a change of the namespace or of the joining would
# give every job of an interrupted campaign a new uuid, and a resumed run would redo them all
PINNED = "ba53d5f1-5134-5eb3-9785-8f8e5ea632a6"


def test_stable_uuid_is_pinned_across_calls_and_processes():
    assert stable_uuid(*PARTS) == stable_uuid(*PARTS) == PINNED
    code = f"from al_flows.workflow.jobs import stable_uuid; print(stable_uuid(*{PARTS!r}))"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert other.stdout.strip() == PINNED
    assert stable_uuid("camp", "fp0123", "2", "train", "member-1") == PINNED  # parts count by their text


@pytest.mark.parametrize("index", range(len(PARTS)))
def test_every_part_changes_the_uuid(index):
    changed = list(PARTS)
    changed[index] = f"{changed[index]}x"
    assert stable_uuid(*changed) != PINNED


def test_a_missing_or_extra_part_changes_the_uuid():
    assert len({stable_uuid(*PARTS[:4]), stable_uuid(*PARTS, ""), PINNED}) == 3


# -- drop_completed -----------------------------------------------------------------------------------


def store_output(store: JobStore, uuid: str, output, index: int = 1) -> None:
    store.docs_store.update([{"uuid": uuid, "index": index, "output": output, "metadata": {}}], key=["uuid", "index"])


def reference_to(uuid: str) -> dict:
    """A replaced job's stored output: a reference to the output of the job that replaced it."""
    return {"@module": "jobflow.core.reference", "@class": "OutputReference", "uuid": uuid, "attributes": []}


def uuids(jobs) -> list[str]:
    return [j.uuid for j in jobs]


def test_jobs_that_ran_are_done_the_others_todo_in_their_order():
    store = memory_store()
    first, second = add(1, 2), add(3, 4)
    run_locally(Flow([first, second]), store=store, create_folders=False, log=False)
    third, fourth = add(5, 6), add(7, 8)
    todo, done = drop_completed([third, first, fourth, second], store)
    assert (uuids(todo), uuids(done)) == ([third.uuid, fourth.uuid], [first.uuid, second.uuid])


def test_round_jobs_always_run_and_metadata_may_be_none():
    store = memory_store()
    rnd, plain = add(1, 1), add(2, 2)
    rnd.update_metadata({"stage": "round"})
    plain.metadata = None
    for j in (rnd, plain):
        store_output(store, j.uuid, 42)
    todo, done = drop_completed([rnd, plain], store)
    assert (uuids(todo), uuids(done)) == ([rnd.uuid], [plain.uuid])


def test_no_store_or_no_jobs():
    jobs = [add(1, 2), add(3, 4)]
    assert drop_completed(jobs, None) == (jobs, [])
    assert drop_completed([], memory_store()) == ([], [])


def test_an_output_of_none_is_not_done_but_any_index_with_output_is():
    store = memory_store()
    empty, later = add(1, 2), add(3, 4)
    store_output(store, empty.uuid, None)
    store_output(store, later.uuid, None, index=1)
    store_output(store, later.uuid, 0, index=2)  # 0 is an output
    todo, done = drop_completed([empty, later], store)
    assert (uuids(todo), uuids(done)) == ([empty.uuid], [later.uuid])


def test_a_replaced_job_is_done_only_when_its_replacement_is():
    store = memory_store()
    chained, dangling, finished = add(1, 2), add(3, 4), add(5, 6)
    store_output(store, chained.uuid, None)
    store_output(store, chained.uuid, reference_to("middle"), index=2)
    store_output(store, "middle", reference_to("last"), index=2)
    store_output(store, "last", {"energy": -1.0})
    store_output(store, dangling.uuid, reference_to("never-ran"), index=2)
    store_output(store, finished.uuid, reference_to("never-ran"), index=2)
    store_output(store, finished.uuid, 7, index=3)  # its own output counts as well
    todo, done = drop_completed([chained, dangling, finished], store)
    assert (uuids(todo), uuids(done)) == ([dangling.uuid], [chained.uuid, finished.uuid])


@job
def replace_with_add(x: int):
    j = add(x, 1)
    return Response(replace=Flow([j], output=j.output))


def test_a_job_replaced_by_a_flow_in_a_real_run_is_done():
    store = memory_store()
    replaced = replace_with_add(1)
    run_locally(replaced, store=store, create_folders=False, log=False)
    stored = store.query_one({"uuid": replaced.uuid, "index": 2})
    assert stored["output"]["@class"] == "OutputReference"  # jobflow's layout the code relies on
    assert drop_completed([replaced], store) == ([], [replaced])
