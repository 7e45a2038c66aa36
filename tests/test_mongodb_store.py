"""The MongoDB configuration: maggma MongoStore (documents) + GridFSStore (data) through
pymongo's API, served by mongomock in place of a MongoDB server."""

import mongomock_ng as mongomock
import mongomock_ng.gridfs
import numpy as np
import pytest

import maggma.stores.gridfs as maggma_gridfs
import maggma.stores.mongolike as maggma_mongolike
from al_flows.campaign import build_report, run_campaign
from al_flows.config import validate_campaign
from al_flows.dataset import Dataset
from al_flows.stores import describe_store, make_job_store, mask_uri


@pytest.fixture
def mongo_server(monkeypatch):
    """Every MongoClient maggma creates is one shared in-memory mongomock client
    (a new mongomock client with an empty shared ServerStore would make its own)."""
    mongomock_ng.gridfs.enable_gridfs_integration()
    class SharedClient(mongomock.MongoClient):
        def close(self):  # stores close their client; the shared in-memory server must survive
            pass

    shared = SharedClient()
    seen = []

    def client(*args, **kwargs):
        seen.append((args, {k: v for k, v in kwargs.items() if k != "password"}))
        return shared

    monkeypatch.setattr(maggma_mongolike, "MongoClient", client)
    monkeypatch.setattr(maggma_gridfs, "MongoClient", client)
    return shared, seen


def test_campaign_on_mongodb_documents_and_gridfs(tmp_path, tiny_dict, mongo_server):
    client, seen = mongo_server
    tiny_dict["store"] = {"kind": "mongodb", "database": "al", "collection": "tiny", "host": "db.example", "port": 27017}
    tiny_dict["max_rounds"] = 1
    config = validate_campaign(tiny_dict)
    report = run_campaign(config, ".", tmp_path, echo=lambda *_: None)
    assert report["finished"] and [r["round"] for r in report["rounds"]] == [0]
    assert not (tmp_path / "store").exists()  # nothing went to the embedded store

    db = client["al"]
    names = set(db.list_collection_names())
    assert {"tiny", "tiny_data.files", "tiny_data.chunks"} <= names
    indexed = {key for info in db["tiny"].index_information().values() for key, _ in info["key"]}
    assert {"metadata.campaign", "metadata.stage", "output.records.frame_id", "output.train_ids"} <= indexed
    trains = list(db["tiny"].find({"metadata.stage": "train"}))
    assert len(trains) == 2
    assert all(t["output"]["model_blob"]["store"] == "data" for t in trains)
    assert db["tiny_data.files"].count_documents({}) >= 2 + 1  # model blobs + dataset blobs ...

    # read back through a fresh JobStore: data blobs come from GridFS
    store = make_job_store(config.store, tmp_path)
    store.connect()
    merged = store.query_one({"metadata.stage": "merge", "metadata.round": -1}, load=True)
    data = Dataset.from_bytes(merged["output"]["dataset_blob"])
    assert len(data) == 8 and np.isfinite(data[0].get_potential_energy())
    assert build_report(store, config)["rounds"] == report["rounds"]
    store.close()
    # maggma connected with the configured server address (positional when no username)
    assert seen and all(args[:2] == ("db.example", 27017) or kw.get("host") == "db.example" for args, kw in seen)


def test_uri_credentials_are_masked():
    uri = "mongodb+srv://alice:s3cret@cluster0.example.net/al?retryWrites=true"
    assert mask_uri(uri) == "mongodb+srv://alice:***@cluster0.example.net/al?retryWrites=true"
    config = validate_campaign(
        {**__import__("tests.conftest", fromlist=["TINY"]).TINY, "store": {"kind": "mongodb", "database": "al", "uri": uri}}
    ).store
    line = describe_store(config, ".")
    assert "s3cret" not in line and "alice:***@" in line
