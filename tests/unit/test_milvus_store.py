"""The `milvus` store's own behaviour against a real milvus-lite server (tests/milvus_server.py).

The contract every store keeps (idempotent upsert, delete, count, ids, kNN, names, restart) is
the shared suite in tests/stores/; this file covers what is Milvus's alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient  # type: ignore[import-untyped]

from reindexer.batching import BatchWriter, RetryPolicy
from reindexer.documents import Document
from reindexer.embedders.hashing import HashingEmbedder
from reindexer.errors import (
    BackendFailed,
    DimensionMismatch,
    ErrorKind,
    SpecError,
    TransientError,
    classify,
)
from reindexer.stores import VectorStore, open_store, validate_collection, validate_store
from reindexer.stores.milvus import (
    GRPC_OPTIONS,
    ID_MAX_BYTES,
    TEXT_MAX_BYTES,
    MilvusBackend,
    MilvusStore,
    milvus_configured,
)
from tests.milvus_server import MilvusServer

pytestmark = pytest.mark.backends

REPO_ROOT = Path(__file__).resolve().parents[2]
DIM = 8


def unique(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def use(settings: Any, server: MilvusServer) -> None:
    settings.REINDEXER = dataclasses.replace(settings.REINDEXER, milvus_uri=server.url)


@pytest.fixture
def milvus(settings: Any, milvus_server: MilvusServer) -> MilvusServer:
    use(settings, milvus_server)
    return milvus_server


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusServer]:
    """A server of this module's own, for the tests that stop, pause or restart it."""
    server = MilvusServer(tmp_path_factory.mktemp("milvus-own"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(milvus: MilvusServer) -> Iterator[MilvusClient]:
    """A client of the test's own, to look at what the store made from the outside."""
    c = MilvusClient(uri=milvus.url, timeout=30, grpc_options=GRPC_OPTIONS)
    try:
        yield c
    finally:
        c.close()


def docs(n: int, start: int = 0) -> list[Document]:
    return [Document(f"doc-{i}", f"text {i}", {"n": i}) for i in range(start, start + n)]


def vectors(n: int, seed: int = 0) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.random.default_rng(seed).random((n, DIM), dtype=np.float32) + 0.01


def opened(collection: str, dimensions: int = DIM) -> MilvusStore:
    store = MilvusBackend().open(collection, dimensions)
    assert isinstance(store, MilvusStore)
    return store


def test_open__creates_the_fields_of_the_design_with_a_cosine_index(
    milvus: MilvusServer, client: MilvusClient
) -> None:
    name = unique()
    opened(name).close()
    fields = {f["name"]: f for f in client.describe_collection(name)["fields"]}
    assert set(fields) == {"id", "embedding", "text", "metadata"}
    assert fields["id"]["type"] == DataType.VARCHAR and fields["id"]["is_primary"]
    assert fields["id"]["params"]["max_length"] == ID_MAX_BYTES
    assert fields["embedding"]["type"] == DataType.FLOAT_VECTOR
    assert fields["embedding"]["params"]["dim"] == DIM
    assert fields["text"]["type"] == DataType.VARCHAR
    assert fields["text"]["params"]["max_length"] == TEXT_MAX_BYTES
    assert fields["metadata"]["type"] == DataType.JSON
    [index] = client.list_indexes(name)
    assert client.describe_index(name, index)["metric_type"] == "COSINE"
    assert client.get_load_state(name)["state"].name == "Loaded"


def test_open__an_existing_collection_of_other_dimensions_is_refused_with_both_numbers(
    milvus: MilvusServer, client: MilvusClient
) -> None:
    name = unique()
    store = opened(name)
    store.upsert(docs(3), vectors(3))
    store.close()
    with pytest.raises(DimensionMismatch) as caught:
        opened(name, 16)
    assert (caught.value.existing, caught.value.wanted) == (DIM, 16)
    assert "8 dimensions" in str(caught.value) and "16" in str(caught.value)
    assert client.describe_collection(name)["fields"][1]["params"]["dim"] == DIM
    again = opened(name)
    try:
        assert again.count() == 3, "the refused open changed nothing"
    finally:
        again.close()


def test_open__a_collection_of_another_schema_fails_the_store_not_each_document(
    milvus: MilvusServer, client: MilvusClient
) -> None:
    name = unique()
    client.create_collection(name, dimension=DIM)  # quick setup: INT64 id, "vector"
    with pytest.raises(BackendFailed, match="not id VARCHAR") as caught:
        opened(name)
    assert classify(caught.value) is ErrorKind.STORE


def test_upsert__an_over_long_id_or_text_is_that_documents_failure_and_the_rest_are_written(
    milvus: MilvusServer,
) -> None:
    name = unique()
    # 513 two-byte characters: within the server's count of characters, over the byte limit.
    long_id = "é" * (ID_MAX_BYTES // 2 + 1)
    long_text = "x" * (TEXT_MAX_BYTES + 1)
    batch = [*docs(3), Document(long_id, "short"), Document("big", long_text), *docs(3, 3)]
    store = MilvusBackend().open(name, 384)
    try:
        outcome = BatchWriter(HashingEmbedder(384), store, RetryPolicy(max_retries=0)).write(batch)
        assert outcome.written == 6
        by_id = {f.doc_ids[0]: f for f in outcome.failures}
        assert set(by_id) == {long_id, "big"}
        assert f"{ID_MAX_BYTES + 2} bytes" in by_id[long_id].message
        assert "not truncated" in by_id["big"].message
        assert not any(f.transient for f in outcome.failures)
        assert sorted(store.ids()) == sorted(d.id for d in [*docs(3), *docs(3, 3)])
    finally:
        store.close()


def test_count_and_ids__are_exact_for_another_client_right_after_the_writes(
    milvus: MilvusServer, client: MilvusClient
) -> None:
    name = unique()
    writer = opened(name)
    reader = opened(name)  # as `reindex verify` is: another process, another connection
    try:
        writer.upsert(docs(500), vectors(500))
        writer.upsert(docs(100), vectors(100, seed=1))  # re-upserts: still one row per id
        assert reader.count() == 500
        assert sorted(reader.ids()) == sorted(d.id for d in docs(500))
        # count() flushed: the rows are sealed, so the server's own statistics have them too.
        assert client.get_collection_stats(name)["row_count"] == 500
        [hit, *_] = writer.search(vectors(100, seed=1)[7], k=3)
        assert hit.id == "doc-7" and hit.distance == pytest.approx(0.0, abs=1e-5)
        assert (hit.text, hit.metadata) == ("text 7", {"n": 7})
    finally:
        writer.close()
        reader.close()


def test_ids__pages_through_more_rows_than_one_query_may_return(milvus: MilvusServer) -> None:
    name = unique()
    store = opened(name)
    try:
        n = 20_000  # over Milvus's 16384 limit of a single query
        for start in range(0, n, 5_000):
            store.upsert(docs(5_000, start), vectors(5_000, seed=start))
        got = list(store.ids())
        assert len(got) == n and len(set(got)) == n
    finally:
        store.close()


def test_delete__counts_only_the_rows_that_went_even_for_ids_with_quotes_and_newlines(
    milvus: MilvusServer,
) -> None:
    name = unique()
    odd = ['a"b', "c'd", "e\\f", 'g\\"h', "new\nline", "cr\rx", "tab\tx", "x]y", "☃ é"]
    store = opened(name)
    try:
        store.upsert([Document(i, "t") for i in odd], vectors(len(odd)))
        assert store.delete([*odd[:5], "absent", odd[0]]) == 5
        assert sorted(store.ids()) == sorted(odd[5:])
    finally:
        store.close()


def test_a_restarted_server__the_same_store_reconnects_and_reloads_the_released_collection(
    settings: Any, own_server: MilvusServer
) -> None:
    use(settings, own_server)
    name = unique()
    store = opened(name)
    try:
        store.upsert(docs(50), vectors(50))
        assert store.count() == 50
        own_server.restart()
        probe = MilvusClient(uri=own_server.url, timeout=30, grpc_options=GRPC_OPTIONS)
        try:
            assert probe.get_load_state(name)["state"].name == "NotLoad", "a restart releases"
        finally:
            probe.close()
        [hit, *_] = store.search(vectors(50)[3], k=1)  # Milvus refuses search until loaded
        assert hit.id == "doc-3"
        store.upsert(docs(10, 50), vectors(10, seed=2))
        assert store.count() == 60
        assert len(set(store.ids())) == 60
    finally:
        store.close()


def test_a_server_that_is_down__raises_transient_errors_then_the_store_works_again(
    settings: Any, own_server: MilvusServer
) -> None:
    use(settings, own_server)
    name = unique()
    store = opened(name)
    try:
        store.upsert(docs(5), vectors(5))
        own_server.stop()
        for call in (lambda: store.upsert(docs(5, 5), vectors(5)), store.count):
            with pytest.raises(TransientError, match="unreachable") as caught:
                call()
            assert classify(caught.value) is ErrorKind.TRANSIENT
        own_server.restart()
        store.upsert(docs(5, 5), vectors(5))
        assert store.count() == 10
    finally:
        own_server.restart()  # running again for the next test, whatever happened
        store.close()


def test_a_server_that_hangs__is_a_transient_timeout_not_a_documents_fault(
    settings: Any, own_server: MilvusServer
) -> None:
    use(settings, own_server)
    store = opened(unique())
    store.timeout = 1.0
    os.kill(own_server.pid, signal.SIGSTOP)
    try:
        with pytest.raises(TransientError, match="DEADLINE_EXCEEDED") as caught:
            store.upsert(docs(2), vectors(2))
        assert classify(caught.value) is ErrorKind.TRANSIENT
    finally:
        os.kill(own_server.pid, signal.SIGCONT)
    store.upsert(docs(2), vectors(2))
    assert store.count() == 2
    store.close()


def test_names__follow_milvus_rules(settings: Any) -> None:
    # Checking a name opens no connection: a server that is not there is fine.
    settings.REINDEXER = dataclasses.replace(settings.REINDEXER, milvus_uri="http://127.0.0.1:9")
    for good in ("docs", "_x", "A1_b", "alias__42", "a" * 255):
        validate_collection("milvus", good)
    for bad in ("1docs", "with-dash", "dot.ted", "", "a" * 256, "docs\n", "é"):
        with pytest.raises(SpecError, match="Milvus collection"):
            validate_collection("milvus", bad)


def test_spec__is_refused_naming_the_setting_when_no_server_is_configured(settings: Any) -> None:
    settings.REINDEXER = dataclasses.replace(settings.REINDEXER, milvus_uri=None)
    assert not milvus_configured()
    with pytest.raises(SpecError, match="REINDEXER_MILVUS_URI"):
        validate_store("milvus")
    with pytest.raises(SpecError, match="REINDEXER_MILVUS_URI"):
        open_store("milvus", "docs", DIM)


PROBE = """
import json, sys
import django
django.setup()
from reindexer.errors import SpecError
from reindexer.stores import validate_store
from reindexer.stores.milvus import milvus_configured
loaded = "pymilvus" in sys.modules
sys.modules["pymilvus"] = None  # as if the extra were not installed
try:
    validate_store("milvus")
    refusal = None
except SpecError as exc:
    refusal = str(exc)
print(json.dumps({"loaded": loaded, "configured": milvus_configured(), "refusal": refusal}))
"""


def test_without_pymilvus__reindexer_imports_and_the_spec_is_refused_naming_the_extra() -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "reindexer.settings",
        "REINDEXER_MILVUS_URI": "http://127.0.0.1:9",
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["loaded"] is False, "importing reindexer must not import pymilvus"
    assert result["configured"] is False
    assert "pymilvus" in result["refusal"] and "[milvus]" in result["refusal"]


def test_open__waits_out_a_plain_collection_becoming_an_alias_instead_of_creating_its_name(
    milvus: MilvusServer, client: MilvusClient
) -> None:
    """Between the rename to NAME__base and the alias (milvus_aliases.point), NAME is nothing:
    an open then (a reader's, per query) waits for the alias; it must not make a new NAME."""
    name = unique("adopt")
    base = f"{name}__base"
    store = opened(base)
    store.upsert(docs(7), vectors(7))
    store.close()
    assert not client.has_collection(name) and client.has_collection(base)  # mid-adoption

    result: dict[str, object] = {}

    def open_it() -> None:
        try:
            result["store"] = MilvusBackend().open(name, DIM)
        except Exception as exc:  # noqa: BLE001 - reported below
            result["error"] = exc

    reader = threading.Thread(target=open_it)
    reader.start()
    time.sleep(0.2)  # the reader is waiting by now (it would have made NAME at once before)
    client.create_alias(base, name)
    reader.join(30)

    assert "error" not in result, result.get("error")
    reading = cast(VectorStore, result["store"])
    try:
        assert reading.count() == 7
    finally:
        reading.close()
    assert client.describe_alias(name)["collection_name"] == base
    assert name not in client.list_collections()  # no plain collection of that name was made
