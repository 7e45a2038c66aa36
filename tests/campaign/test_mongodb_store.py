"""The MongoDB configuration: maggma MongoStore (documents) + GridFSStore (data) through
pymongo's API, served by mongomock in place of a MongoDB server."""

import maggma.stores.gridfs as maggma_gridfs
import maggma.stores.mongolike as maggma_mongolike
import mongomock_ng as mongomock
import mongomock_ng.gridfs
import numpy as np
import pytest

from al_flows.campaign.config import validate_campaign
from al_flows.campaign.report_json import build_report
from al_flows.campaign.run import run_campaign
from al_flows.campaign.stores import describe_store, make_job_store, mask_uri
from al_flows.frames.dataset import Dataset
from helpers import TINY


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
    tiny_dict["store"] = {
        "kind": "mongodb",
        "database": "al",
        "collection": "tiny",
        "host": "db.example",
        "port": 27017,
    }
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
        {
            **TINY,
            "store": {"kind": "mongodb", "database": "al", "uri": uri},
        }
    ).store
    line = describe_store(config, ".")
    assert "s3cret" not in line and "alice:***@" in line


def test_password_from_environment_never_serialised(tmp_path, tiny_dict, mongo_server, monkeypatch):
    """store.password_env: the password reaches MongoClient but no serialised form of the store
    (what FireWorks copies into every job), no report and no stored document."""
    import json as _json

    from al_flows.campaign.stores import EnvGridFSStore, EnvMongoStore, StoreSecretError

    client, seen = mongo_server
    passed = []
    import maggma.stores.mongolike as ml

    inner = ml.MongoClient

    def spy(*a, **k):
        passed.append(k.get("password"))
        return inner(*a, **k)

    monkeypatch.setattr(ml, "MongoClient", spy)
    tiny_dict["store"] = {
        "kind": "mongodb",
        "database": "al",
        "collection": "sec",
        "username": "alice",
        "password_env": "AL_TEST_PW",
    }
    tiny_dict["max_rounds"] = 1
    config = validate_campaign(tiny_dict)
    store = make_job_store(config.store, tmp_path)
    assert isinstance(store.docs_store, EnvMongoStore) and isinstance(store.additional_stores["data"], EnvGridFSStore)
    with pytest.raises(StoreSecretError, match="store.password_env: environment variable AL_TEST_PW is not set"):
        store.connect()
    monkeypatch.setenv("AL_TEST_PW", "s3cret-pw")
    report = run_campaign(config, ".", tmp_path, echo=lambda *_: None)
    assert report["finished"]
    assert passed and set(passed) == {"s3cret-pw"}
    assert "s3cret" not in _json.dumps(store.as_dict()) and "AL_TEST_PW" in _json.dumps(store.as_dict())
    assert "s3cret" not in (tmp_path / "report.json").read_text() + (tmp_path / "campaign.json").read_text()
    docs = list(client["al"]["sec"].find({}))
    assert docs and "s3cret" not in str(docs)


def test_inline_secrets_are_refused_for_fireworks_and_conflicting_sources(tiny_dict, tmp_path):
    from al_flows.campaign.config import ConfigError
    from al_flows.campaign.fireworks import campaign_workflow
    from al_flows.campaign.run import CampaignError

    tiny_dict["store"] = {"kind": "mongodb", "database": "al", "username": "alice", "password": "pw"}
    with pytest.raises(CampaignError, match=r"store.password: a secret written in the campaign file .* password_env"):
        campaign_workflow(validate_campaign(tiny_dict), ".", tmp_path)
    tiny_dict["store"] = {"kind": "mongodb", "database": "al", "uri": "mongodb://alice:pw@h/al"}
    with pytest.raises(CampaignError, match=r"store.uri: .* uri_env"):
        campaign_workflow(validate_campaign(tiny_dict), ".", tmp_path)
    tiny_dict["store"] = {"kind": "mongodb", "database": "al", "password": "pw", "password_env": "X"}
    with pytest.raises(ConfigError, match="password or password_env, not both"):
        validate_campaign(tiny_dict)


def test_label_checkpoints_round_trip_through_gridfs(mongo_server):
    """A label saved mid-job in GridFS is read back (what a resumed label job reuses)."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from al_flows.active_learning.jobs.labelling import LabelCheckpoint
    from al_flows.labelling.ase import label_frames
    from al_flows.workflow.jobs import DATA_STORE

    store = make_job_store(
        validate_campaign(
            {
                **TINY,
                "store": {"kind": "mongodb", "database": "al", "collection": "ck"},
            }
        ).store,
        ".",
    )
    store.connect()
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=1)
    labelled = label_frames([atoms], EMT, "ase:emt").labelled[0]
    ck = LabelCheckpoint(store.additional_stores[DATA_STORE], "job-1")
    ck.save(labelled)
    ck.save(labelled)  # saving again replaces, never duplicates
    back = LabelCheckpoint(store.additional_stores[DATA_STORE], "job-1").load()
    assert list(back) == [labelled.info["frame_id"]]
    np.testing.assert_allclose(back[labelled.info["frame_id"]].get_forces(), labelled.get_forces(), atol=1e-8)
    assert LabelCheckpoint(store.additional_stores[DATA_STORE], "job-2").load() == {}
    store.close()
