"""JobStores for campaigns: an embedded on-disk store by default, MongoDB by configuration.

Documents (job outputs) go to the JobStore's docs store; large binary outputs
(model weights, datasets, explored frames) go to its additional store named
``data`` as bytes, never inside a document.

- embedded: maggma ``MontyStore`` (montydb on sqlite) in ``WORKDIR/store``;
- mongodb: maggma ``MongoStore`` for documents and ``GridFSStore`` for data.
"""

from __future__ import annotations

import re
from pathlib import Path

from jobflow import JobStore
from maggma.stores import GridFSStore, MongoStore, MontyStore

from al_flows.config import EmbeddedStore, MongoStoreConfig

DATA_STORE = "data"
_URI_CREDENTIALS = re.compile(r"(?P<scheme>mongodb(?:\+srv)?://)(?P<user>[^:@/]+)(?::[^@/]*)?@")


def mask_uri(uri: str) -> str:
    """Hide the password of a MongoDB URI: mongodb://user:***@host/..."""
    return _URI_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", uri)


def embedded_store_path(workdir: str | Path) -> Path:
    """Directory of the embedded store inside a campaign work directory."""
    return Path(workdir) / "store"


def make_job_store(config: EmbeddedStore | MongoStoreConfig, workdir: str | Path) -> JobStore:
    """Build (not connect) the JobStore a campaign uses."""
    if isinstance(config, EmbeddedStore):
        path = embedded_store_path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        docs = MontyStore("outputs", database_path=str(path), database_name="al_flows", storage="sqlite")
        data = MontyStore("data", database_path=str(path), database_name="al_flows", storage="sqlite")
        return JobStore(docs, additional_stores={DATA_STORE: data})
    common = dict(database=config.database)
    if config.uri:
        common["uri"] = config.uri
    else:
        common.update(host=config.host, port=config.port, username=config.username, password=config.password)
        if config.auth_source:
            common["auth_source"] = config.auth_source
    docs = MongoStore(collection_name=config.collection, **common)
    data = GridFSStore(collection_name=f"{config.collection}_data", **common)
    return JobStore(docs, additional_stores={DATA_STORE: data})


def describe_store(config: EmbeddedStore | MongoStoreConfig, workdir: str | Path) -> str:
    """One line for logs and reports, credentials masked."""
    if isinstance(config, EmbeddedStore):
        return f"embedded MontyStore at {embedded_store_path(workdir)}"
    where = mask_uri(config.uri) if config.uri else f"{config.host}:{config.port}"
    return f"MongoDB {where} database={config.database} collection={config.collection} (+GridFS data)"


# Fields the CLI and the docs/provenance.md cookbook query on.
INDEX_FIELDS = (
    "uuid", "metadata.campaign", "metadata.stage", "metadata.round", "metadata.frame_id",
    "output.round", "output.model_id", "output.train_ids", "output.val_ids", "output.records.frame_id",
)


def ensure_indexes(store: JobStore) -> list[str]:
    """Create the indexes the queries use on a MongoDB docs store; the embedded store
    (montydb) has none, and gets none. Returns the fields indexed."""
    docs = store.docs_store
    if isinstance(docs, MontyStore):
        return []
    for name in INDEX_FIELDS:
        docs.ensure_index(name)
    return list(INDEX_FIELDS)
