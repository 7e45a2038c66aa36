"""JobStores for campaigns: an embedded on-disk store by default, MongoDB by configuration.

Documents (job outputs) go to the JobStore's docs store; large binary outputs
(model weights, datasets, explored frames) go to its additional store named
``data`` as bytes, never inside a document.

- embedded: maggma ``MontyStore`` (montydb on sqlite) in ``WORKDIR/store``;
- mongodb: maggma ``MongoStore`` for documents and ``GridFSStore`` for data.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from jobflow import JobStore
from maggma.core import Store
from maggma.stores import GridFSStore, MongoStore, MontyStore

from al_flows.workflow.config import EmbeddedStore, MongoStoreConfig
from al_flows.workflow.jobs import DATA_STORE

_URI_CREDENTIALS = re.compile(r"(?P<scheme>mongodb(?:\+srv)?://)(?P<user>[^:@/]+)(?::[^@/]*)?@")


def mask_uri(uri: str) -> str:
    """Hide the password of a MongoDB URI: mongodb://user:***@host/..."""
    return _URI_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", uri)


def embedded_store_path(workdir: str | Path) -> Path:
    """Directory of the embedded store inside a campaign work directory."""
    return Path(workdir) / "store"


def make_job_store(config: EmbeddedStore | MongoStoreConfig, workdir: str | Path) -> JobStore:
    """Build (not connect) the JobStore a campaign uses."""
    docs: Store
    data: Store
    common: dict[str, Any]
    if isinstance(config, EmbeddedStore):
        path = embedded_store_path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        docs = MontyStore("outputs", database_path=str(path), database_name="al_flows", storage="sqlite")
        data = MontyStore("data", database_path=str(path), database_name="al_flows", storage="sqlite")
        return JobStore(docs, additional_stores={DATA_STORE: data})
    if config.password_env or config.uri_env:
        common = dict(
            database=config.database,
            host=config.host,
            port=config.port,
            username=config.username,
            password_env=config.password_env,
            uri_env=config.uri_env,
            auth_source=config.auth_source,
        )
        docs = EnvMongoStore(collection_name=config.collection, **common)
        data = EnvGridFSStore(collection_name=f"{config.collection}_data", **common)
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


class StoreSecretError(RuntimeError):
    """An environment variable named in the store settings is not set."""


def _secret(var: str, field: str) -> str:
    value = os.environ.get(var)
    if not value:
        raise StoreSecretError(
            f"store.{field}: environment variable {var} is not set; export it on this machine (and on every FireWorks "
            "worker)"
        )
    return value


def _secrets_from_environment(store: EnvMongoStore | EnvGridFSStore) -> None:
    """Password (or whole URI) read from environment variables when connecting, so the store's
    serialised form (FireWorks specs, job documents, campaign.json) holds only the variables' names."""
    if store.password_env:
        store.password = _secret(store.password_env, "password_env")
    if store.uri_env:
        store.uri = _secret(store.uri_env, "uri_env")


class _EnvSecrets:
    """What both stores below share: the password or URI environment variables (read when
    connecting). Comes first in the bases, before the maggma store."""

    def __init__(
        self,
        database: str,
        collection_name: str,
        host: str = "localhost",
        port: int = 27017,
        username: str = "",
        password_env: str | None = None,
        uri_env: str | None = None,
        auth_source: str | None = None,
    ):
        self.password_env, self.uri_env = password_env, uri_env
        super().__init__(database, collection_name, host=host, port=port, username=username, auth_source=auth_source)  # type: ignore[call-arg]

    def connect(self, force_reset: bool = False):
        """Connect with the password or URI read from the environment now."""
        _secrets_from_environment(self)  # type: ignore[arg-type]
        return super().connect(force_reset)  # type: ignore[misc]


class EnvMongoStore(_EnvSecrets, MongoStore):
    """maggma MongoStore whose password or URI comes from environment variables at connect time."""


class EnvGridFSStore(_EnvSecrets, GridFSStore):
    """maggma GridFSStore whose password or URI comes from environment variables at connect time."""


def describe_store(config: EmbeddedStore | MongoStoreConfig, workdir: str | Path) -> str:
    """One line for logs and reports, credentials masked."""
    if isinstance(config, EmbeddedStore):
        return f"embedded MontyStore at {embedded_store_path(workdir)}"
    if config.uri_env:
        where = f"URI from ${config.uri_env}"
    else:
        where = mask_uri(config.uri) if config.uri else f"{config.host}:{config.port}"
    return f"MongoDB {where} database={config.database} collection={config.collection} (+GridFS data)"


# Fields the CLI and the docs/provenance.md cookbook query on.
INDEX_FIELDS = (
    "uuid",
    "metadata.campaign",
    "metadata.stage",
    "metadata.round",
    "metadata.frame_id",
    "output.round",
    "output.model_id",
    "output.train_ids",
    "output.val_ids",
    "output.records.frame_id",
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
