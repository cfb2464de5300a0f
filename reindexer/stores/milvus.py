"""`milvus`: a collection on the Milvus server at REINDEXER_MILVUS_URI, through pymilvus.

Collection `C` has the fields `id` (VARCHAR primary key), `embedding` (FLOAT_VECTOR, COSINE
index, made with the collection), `text` (VARCHAR) and `metadata` (JSON).

A document whose id is over ID_MAX_BYTES or whose text is over TEXT_MAX_BYTES (UTF-8) is that
document's failure (PermanentError), recorded like any other: the text is never truncated, since
search results and `collection:` sources hand back what was stored, and a cut document would
pass for a whole one. Split such documents before indexing them.

pymilvus is the optional extra `[milvus]`, imported only when a collection is opened.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self, TypeVar

import numpy as np

from reindexer import conf
from reindexer.backends import ParsedSpec
from reindexer.documents import Document
from reindexer.embedders import Vectors
from reindexer.errors import (
    NO_TABLE,
    BackendFailed,
    DimensionMismatch,
    PermanentError,
    SpecError,
)
from reindexer.stores import aliases, milvus_aliases
from reindexer.stores.aliases import AliasReader
from reindexer.stores.base import Hit, IndexReport, VectorStore
from reindexer.stores.milvus_errors import SETTING as SETTING
from reindexer.stores.milvus_errors import is_not_loaded, translated

if TYPE_CHECKING:
    from pymilvus import MilvusClient  # type: ignore[import-untyped]

log = logging.getLogger(__name__)

# Milvus's own rule for collection names.
COLLECTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
ID_MAX_BYTES = 1024
TEXT_MAX_BYTES = 65_535  # the most a Milvus VARCHAR holds
# Every call gets a deadline, so a server that hangs is a (transient) error, not a stuck job.
CALL_TIMEOUT_SECONDS = 60.0
# pymilvus pings every 10 s, idle or not, and Milvus (milvus-lite too) answers a third ping
# within its 5-minute floor with GOAWAY "too_many_pings": the shared connection of a process that
# left it idle then failed to reconnect, under load. So: no pings while idle, and none more often
# than the floor; a dead server is noticed by each call's own deadline. Every client of one
# server must pass these (pymilvus shares one connection per address, made by the first).
GRPC_OPTIONS: dict[str, int] = {
    "grpc.keepalive_time_ms": 330_000,
    "grpc.keepalive_permit_without_calls": 0,
}
IDS_PAGE = 5_000
DELETE_CHUNK = 1_000
# How long a read waits for a collection that is not found (see MilvusStore._read).
READ_RETRY_SECONDS = 2.0
READ_RETRY_PAUSE = 0.01
SCHEMA_MISMATCH = "schema mismatch"
_T = TypeVar("_T")


def pymilvus_installed() -> bool:
    """Whether the extra is there, without importing it (that takes ~0.7 s)."""
    try:
        return importlib.util.find_spec("pymilvus") is not None
    except (ImportError, ValueError):
        return False


def milvus_configured() -> bool:
    return conf.get().milvus_uri is not None and pymilvus_installed()


@dataclass(frozen=True, slots=True)
class MilvusOptions:
    @classmethod
    def from_spec(cls, spec: ParsedSpec) -> Self:
        if not pymilvus_installed():
            raise SpecError(
                "milvus store needs pymilvus: install the extra (pip install '.[milvus]')",
                field="store",
            )
        if conf.get().milvus_uri is None:
            raise SpecError(
                f"milvus store needs the setting {SETTING}"
                " (the server, e.g. http://127.0.0.1:19530)",
                field="store",
            )
        return cls()


def check_collection(name: str) -> None:
    if not COLLECTION_NAME.fullmatch(name):
        raise SpecError(
            f"Milvus collection {name!r} must be 1-255 letters, digits or '_', "
            "starting with a letter or '_'",
            field="collection",
        )


def _literal(value: str) -> str:
    """`value` as a string literal of Milvus's filter expressions (no \\u escapes there)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r") + '"'


def _ids_filter(ids: Sequence[str]) -> str:
    return "id in [" + ",".join(_literal(i) for i in ids) + "]"


def _refusal(doc: Document) -> str | None:
    """Why Milvus cannot hold `doc` whole, or None."""
    id_bytes = len(doc.id.encode())
    if id_bytes > ID_MAX_BYTES:
        return f"its id is {id_bytes} bytes; a Milvus primary key holds at most {ID_MAX_BYTES}"
    text_bytes = len(doc.text.encode())
    if text_bytes > TEXT_MAX_BYTES:
        return (
            f"its text is {text_bytes} bytes; a Milvus VARCHAR holds at most {TEXT_MAX_BYTES}"
            " (split the document; it is not truncated)"
        )
    return None


class MilvusStore:
    """One collection. pymilvus reconnects by itself after a restart; `_call` reloads."""

    def __init__(self, client: MilvusClient, collection: str, dimensions: int) -> None:
        self._client = client
        self.collection = collection
        self.dimensions = dimensions
        self._dirty = False  # written since the last flush
        self.timeout = CALL_TIMEOUT_SECONDS

    def _call(self, fn: Callable[[], _T]) -> _T:
        """`fn()`, loading the collection and trying once more if the server released it."""
        with translated(self.collection):
            try:
                return fn()
            except Exception as exc:
                if not is_not_loaded(exc):
                    raise
            self._client.load_collection(self.collection, timeout=self.timeout)
            return fn()

    def _read(self, fn: Callable[[], _T]) -> _T:
        """`_call(fn)` for a read, which waits up to READ_RETRY_SECONDS for a collection that is
        not found: the name of a plain collection becoming an alias is nothing for a moment
        (milvus_aliases.py). A write fails at once, and fails the job."""
        deadline = time.monotonic() + READ_RETRY_SECONDS
        while True:
            try:
                return self._call(fn)
            except BackendFailed as exc:
                if exc.cause != NO_TABLE or time.monotonic() > deadline:
                    raise
            time.sleep(READ_RETRY_PAUSE)

    def _flush(self) -> None:
        # Without a flush, count and query wait on the growing segments: ~1 s per 20k rows.
        self._read(lambda: self._client.flush(self.collection, timeout=self.timeout))
        self._dirty = False

    def upsert(self, docs: Sequence[Document], vectors: Vectors) -> None:
        if len(docs) != len(vectors):
            raise ValueError(f"{len(docs)} documents but {len(vectors)} vectors")
        for doc in docs:
            reason = _refusal(doc)
            if reason is not None:
                raise PermanentError(f"document {doc.id[:80]!r} refused by Milvus: {reason}")
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        rows = [
            {"id": doc.id, "embedding": vec, "text": doc.text, "metadata": doc.metadata}
            for doc, vec in zip(docs, matrix, strict=True)
        ]
        self._dirty = True
        self._call(lambda: self._client.upsert(self.collection, rows, timeout=self.timeout))

    def _existing(self, ids: Sequence[str]) -> list[str]:
        rows = self._call(
            lambda: self._client.query(
                self.collection,
                filter=_ids_filter(ids),
                output_fields=["id"],
                timeout=self.timeout,
            )
        )
        return [str(row["id"]) for row in rows]

    def delete(self, ids: Iterable[str]) -> int:
        wanted = list(dict.fromkeys(ids))
        deleted = 0
        for start in range(0, len(wanted), DELETE_CHUNK):
            # Milvus's delete answers with the ids it was given, so ask which ones exist first.
            existing = self._existing(wanted[start : start + DELETE_CHUNK])
            if existing:
                self._dirty = True
                expr = _ids_filter(existing)
                self._call(
                    functools.partial(
                        self._client.delete, self.collection, filter=expr, timeout=self.timeout
                    )
                )
                deleted += len(existing)
        return deleted

    def count(self) -> int:
        self._flush()
        rows = self._read(
            lambda: self._client.query(
                self.collection, output_fields=["count(*)"], timeout=self.timeout
            )
        )
        return int(rows[0]["count(*)"]) if rows else 0

    def ids(self) -> Iterator[str]:
        self._flush()
        pages = self._read(
            lambda: self._client.query_iterator(
                self.collection,
                batch_size=IDS_PAGE,
                output_fields=["id"],
                timeout=self.timeout,
            )
        )
        try:
            while page := self._call(pages.next):
                for row in page:
                    yield str(row["id"])
        finally:
            pages.close()

    def documents(self, after_id: str | None, limit: int) -> list[Document]:
        if self._dirty or after_id is None:
            self._flush()  # from the first page on, what other writers sealed is seen too
        # Milvus reduces a query with a limit in primary-key order: the page is the next ids.
        rows = self._read(
            lambda: self._client.query(
                self.collection,
                filter="" if after_id is None else f"id > {_literal(after_id)}",
                limit=int(limit),
                output_fields=["id", "text", "metadata"],
                timeout=self.timeout,
            )
        )
        found = [
            Document(
                str(row["id"]),
                str(row.get("text") or ""),
                row["metadata"] if isinstance(row.get("metadata"), dict) else {},
            )
            for row in rows
        ]
        return sorted(found, key=lambda doc: doc.id)

    def search(self, vector: Vectors, k: int = 10) -> list[Hit]:
        if self._dirty:
            self._flush()
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
        results = self._read(
            lambda: self._client.search(
                self.collection,
                data=[query],
                limit=int(k),
                anns_field="embedding",
                output_fields=["text", "metadata"],
                search_params={"metric_type": "COSINE"},
                timeout=self.timeout,
            )
        )
        hits = [_hit(row) for row in (results[0] if results else [])]
        return sorted(hits, key=lambda hit: hit.distance)

    def build_index(self, report: IndexReport) -> bool:
        return False  # the index is made with the collection, and Milvus keeps it up to date

    def close(self) -> None:
        try:
            if self._dirty:
                self._flush()  # seals what this store wrote, so the next reader needn't wait
        except Exception as exc:  # noqa: BLE001 - closing must not fail a finished job
            log.warning("milvus: flush of %r at close failed: %s", self.collection, exc)
        finally:
            self._client.close()


def _hit(row: dict[str, Any]) -> Hit:
    entity = row.get("entity") or {}
    # COSINE in Milvus is a similarity (1 = same direction); the Protocol speaks distances.
    distance = max(0.0, 1.0 - float(row["distance"]))
    metadata = entity.get("metadata")
    return Hit(
        str(row["id"]),
        distance,
        str(entity.get("text") or ""),
        metadata if isinstance(metadata, dict) else {},
    )


def _connect() -> MilvusClient:
    import pymilvus  # the optional extra: imported only here (see the module docstring)

    # The store turns every failure into an exception the engine logs once; pymilvus's own
    # logging would add a traceback per failed call (and per retry) to the worker's log.
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
    uri = conf.get().milvus_uri
    if uri is None:
        raise SpecError(f"milvus store needs the setting {SETTING}", field="store")
    with translated(""):
        return pymilvus.MilvusClient(
            uri=uri, timeout=CALL_TIMEOUT_SECONDS, grpc_options=GRPC_OPTIONS
        )


def _existing_dimensions(client: MilvusClient, collection: str) -> int:
    """The dimensions of an existing collection; BackendFailed if it is not one of ours."""
    from pymilvus import DataType

    described = client.describe_collection(collection, timeout=CALL_TIMEOUT_SECONDS)
    fields = {f["name"]: f for f in described.get("fields", [])}
    wanted = {
        "id": DataType.VARCHAR,
        "embedding": DataType.FLOAT_VECTOR,
        "text": DataType.VARCHAR,
        "metadata": DataType.JSON,
    }
    if any(name not in fields or fields[name]["type"] != t for name, t in wanted.items()):
        found = ", ".join(f"{name} {field['type'].name}" for name, field in fields.items())
        raise BackendFailed(
            f"collection {collection!r} on the Milvus server has the fields ({found}), not"
            " id VARCHAR, embedding FLOAT_VECTOR, text VARCHAR, metadata JSON",
            cause=SCHEMA_MISMATCH,
        )
    return int(fields["embedding"]["params"]["dim"])


def _create(client: MilvusClient, collection: str, dimensions: int) -> None:
    from pymilvus import DataType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=ID_MAX_BYTES)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=dimensions)
    schema.add_field("text", DataType.VARCHAR, max_length=TEXT_MAX_BYTES)
    schema.add_field("metadata", DataType.JSON)
    index = client.prepare_index_params()
    index.add_index(field_name="embedding", index_type="AUTOINDEX", metric_type="COSINE")
    client.create_collection(
        collection, schema=schema, index_params=index, timeout=CALL_TIMEOUT_SECONDS
    )


def _prepare(client: MilvusClient, collection: str, dimensions: int) -> None:
    """Create `collection` if it is missing, check its dimensions, and load it."""
    if not client.has_collection(collection, timeout=CALL_TIMEOUT_SECONDS):
        try:
            _create(client, collection, dimensions)
        except Exception:
            # Another process (a worker, `verify`) may have created it just now.
            if not client.has_collection(collection, timeout=CALL_TIMEOUT_SECONDS):
                raise
    existing = _existing_dimensions(client, collection)
    if existing != dimensions:
        raise DimensionMismatch(collection, existing=existing, wanted=dimensions)
    state = client.get_load_state(collection, timeout=CALL_TIMEOUT_SECONDS)
    if getattr(state.get("state"), "name", "") != "Loaded":
        client.load_collection(collection, timeout=CALL_TIMEOUT_SECONDS)


def _opened(client: MilvusClient, collection: str, dimensions: int) -> str | None:
    """Prepare `collection` (`_prepare`) and return what it serves if it is an alias. A name
    that is nothing for a moment because a plain collection is becoming an alias (renamed to
    `NAME__base`, the alias not made yet: milvus_aliases.py) is waited for, up to
    READ_RETRY_SECONDS, as reads wait: it is neither created anew nor reported gone."""
    deadline = time.monotonic() + READ_RETRY_SECONDS
    while True:
        try:
            with translated(collection):
                target = milvus_aliases.target(client, collection)
                if target is None and _mid_adoption(client, collection):
                    raise BackendFailed(
                        f"collection {collection!r} is becoming an alias of"
                        f" {aliases.base_name(collection)!r}",
                        cause=NO_TABLE,
                    )
                _prepare(client, collection, dimensions)
                return target
        except BackendFailed as exc:
            if exc.cause != NO_TABLE or time.monotonic() > deadline:
                raise
        time.sleep(READ_RETRY_PAUSE)


def _mid_adoption(client: MilvusClient, collection: str) -> bool:
    """Whether `collection` is nothing while its `__base` exists: renamed, its alias to come."""
    if client.has_collection(collection, timeout=CALL_TIMEOUT_SECONDS):
        return False
    base = aliases.base_name(collection)
    return bool(client.has_collection(base, timeout=CALL_TIMEOUT_SECONDS))


class MilvusBackend:
    """`milvus`: collections on the server at REINDEXER_MILVUS_URI, and Milvus's own aliases
    (milvus_aliases.py)."""

    def check_collection(self, name: str) -> None:
        check_collection(name)

    def location(self, collection: str) -> str:
        return f"collection {collection!r} on the Milvus server at {SETTING}"

    def exists(self, collection: str) -> bool:
        check_collection(collection)
        with _client(collection) as client:
            # True for an alias too: Milvus resolves it.
            return bool(client.has_collection(collection, timeout=CALL_TIMEOUT_SECONDS))

    def open(self, collection: str, dimensions: int) -> VectorStore:
        check_collection(collection)
        client = _connect()
        try:
            target = _opened(client, collection, dimensions)
        except BaseException:
            client.close()
            raise
        store = MilvusStore(client, collection, dimensions)
        # Milvus resolves the alias on each request, so reads follow it as it moves.
        return store if target is None else AliasReader(collection, store, target)

    def open_existing(self, collection: str) -> VectorStore | None:
        check_collection(collection)
        with _client(collection) as client:
            if not client.has_collection(collection, timeout=CALL_TIMEOUT_SECONDS):
                return None
            dimensions = _existing_dimensions(client, collection)
        return self.open(collection, dimensions)

    def alias_target(self, alias: str) -> str | None:
        check_collection(alias)
        with _client(alias) as client:
            return milvus_aliases.target(client, alias)

    def point_alias(self, alias: str, collection: str) -> str | None:
        check_collection(alias)
        check_collection(collection)
        with _client(alias) as client:
            return milvus_aliases.point(client, alias, collection)

    def drop_collection(self, name: str) -> bool:
        check_collection(name)
        with _client(name) as client:
            return milvus_aliases.drop(client, name)

    def physical_collections(self, alias: str) -> list[str]:
        check_collection(alias)
        with _client(alias) as client:
            names = client.list_collections(timeout=CALL_TIMEOUT_SECONDS)
        return aliases.physical_order(alias, [str(name) for name in names])


@contextlib.contextmanager
def _client(collection: str) -> Iterator[MilvusClient]:
    """A client for one call, its errors translated, closed at the end."""
    client = _connect()
    try:
        with translated(collection):
            yield client
    finally:
        client.close()
