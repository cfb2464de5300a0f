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

import functools
import importlib.util
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self, TypeVar

import numpy as np

from reindexer import conf
from reindexer.backends import ParsedSpec
from reindexer.documents import Document
from reindexer.embedders import Vectors
from reindexer.errors import BackendFailed, DimensionMismatch, PermanentError, SpecError
from reindexer.stores.base import Hit, IndexReport
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
IDS_PAGE = 5_000
DELETE_CHUNK = 1_000
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

    def _flush(self) -> None:
        # Without a flush, count and query wait on the growing segments: ~1 s per 20k rows.
        self._call(lambda: self._client.flush(self.collection, timeout=self.timeout))
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
        rows = self._call(
            lambda: self._client.query(
                self.collection, output_fields=["count(*)"], timeout=self.timeout
            )
        )
        return int(rows[0]["count(*)"]) if rows else 0

    def ids(self) -> Iterator[str]:
        self._flush()
        pages = self._call(
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

    def search(self, vector: Vectors, k: int = 10) -> list[Hit]:
        if self._dirty:
            self._flush()
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
        results = self._call(
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
        return pymilvus.MilvusClient(uri=uri, timeout=CALL_TIMEOUT_SECONDS)


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


class MilvusBackend:
    """`milvus`: collections on the server at REINDEXER_MILVUS_URI."""

    def check_collection(self, name: str) -> None:
        check_collection(name)

    def location(self, collection: str) -> str:
        return f"collection {collection!r} on the Milvus server at {SETTING}"

    def exists(self, collection: str) -> bool:
        check_collection(collection)
        client = _connect()
        try:
            with translated(collection):
                return bool(client.has_collection(collection, timeout=CALL_TIMEOUT_SECONDS))
        finally:
            client.close()

    def open(self, collection: str, dimensions: int) -> MilvusStore:
        check_collection(collection)
        client = _connect()
        try:
            with translated(collection):
                _prepare(client, collection, dimensions)
        except BaseException:
            client.close()
            raise
        return MilvusStore(client, collection, dimensions)
