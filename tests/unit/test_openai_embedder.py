"""The `openai:MODEL` embedder against a real OpenAI-protocol server on 127.0.0.1."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reindexer.batching import BatchWriter, RetryPolicy
from reindexer.documents import Document
from reindexer.embedders import open_embedder, validate_embedder
from reindexer.embedders.hashing import HashingEmbedder
from reindexer.embedders.openai import OpenAIEmbedder, parse_retry_after
from reindexer.errors import (
    DimensionMismatch,
    ErrorKind,
    RateLimited,
    SpecError,
    classify,
    retry_after,
)
from reindexer.stores.sqlite_vec import SqliteVecStore
from tests.embedding_server import EmbeddingServer, embedding_server

MODEL = "hash-384"
KEY = "sk-test-do-not-show-me"
TEXTS = [f"document {i}: vector store embedding batch {i * 7}" for i in range(10)]


@pytest.fixture
def server() -> Iterator[EmbeddingServer]:
    with embedding_server(api_key=KEY) as running:
        yield running


@pytest.fixture
def configured(settings: Any, server: EmbeddingServer) -> EmbeddingServer:
    """The settings point `openai:` at the test server, with its key."""
    settings.REINDEXER = dataclasses.replace(
        settings.REINDEXER, openai_base_url=server.base_url, openai_api_key=KEY
    )
    return server


def docs_of(texts: list[str]) -> list[Document]:
    return [Document(f"doc-{i}", text) for i, text in enumerate(texts)]


def test_embed__returns_the_servers_vectors_in_order_and_learns_their_dimensions(
    configured: EmbeddingServer,
) -> None:
    embedder = open_embedder(f"openai:{MODEL}")
    vectors = embedder.embed(TEXTS)
    assert embedder.dimensions == 384
    np.testing.assert_allclose(vectors, HashingEmbedder(384).embed(TEXTS), atol=1e-6)
    assert configured.served.authorizations == [f"Bearer {KEY}"]


def test_dimensions__are_learned_from_the_first_answer_of_a_server_of_any_width() -> None:
    with embedding_server(dimensions=96) as server:
        embedder = OpenAIEmbedder(MODEL, server.base_url)
        assert embedder.dimensions == 96
        assert embedder.embed(TEXTS[:3]).shape == (3, 96)
        assert server.served.batch_sizes == [1, 3]


def test_spec__without_a_configured_base_url_is_refused_naming_the_setting(settings: Any) -> None:
    settings.REINDEXER = dataclasses.replace(settings.REINDEXER, openai_base_url=None)
    with pytest.raises(SpecError, match="REINDEXER_OPENAI_BASE_URL") as caught:
        validate_embedder(f"openai:{MODEL}")
    assert caught.value.field == "embedder"


def test_spec__without_a_model_is_refused(configured: EmbeddingServer) -> None:
    with pytest.raises(SpecError, match="openai:MODEL"):
        validate_embedder("openai:")
    with pytest.raises(SpecError, match="openai:MODEL"):
        validate_embedder("openai")


def test_key__appears_in_no_repr_error_or_settings_repr(settings: Any) -> None:
    with embedding_server(api_key="the-right-key") as server:
        settings.REINDEXER = dataclasses.replace(
            settings.REINDEXER, openai_base_url=server.base_url, openai_api_key=KEY
        )
        embedder = open_embedder(f"openai:{MODEL}")
        with pytest.raises(Exception, match="401") as caught:
            embedder.embed(["text"])
    for shown in (repr(embedder), str(caught.value), repr(caught.value), repr(settings.REINDEXER)):
        assert KEY not in shown


@pytest.mark.parametrize("refusal", [413, 422])
def test_input_limit__batches_above_it_are_split_and_the_limit_is_remembered(refusal: int) -> None:
    with embedding_server(input_limit=4, limit_status=refusal) as server:
        embedder = OpenAIEmbedder(MODEL, server.base_url)
        vectors = embedder.embed(TEXTS)
        refused = server.served.count(refusal)
        assert refused >= 1
        again = embedder.embed(TEXTS)
        assert server.served.count(refusal) == refused, "the next batch is split from the start"
    assert max(server.served.batch_sizes) <= 4
    assert sum(server.served.batch_sizes) == 2 * len(TEXTS)
    np.testing.assert_allclose(vectors, HashingEmbedder(384).embed(TEXTS), atol=1e-6)
    np.testing.assert_allclose(again, vectors)


def test_rate_limit__a_429_is_a_transient_error_carrying_its_retry_after() -> None:
    with embedding_server(schedule=(429,), retry_after="7") as server:
        embedder = OpenAIEmbedder(MODEL, server.base_url)
        with pytest.raises(RateLimited) as caught:
            embedder.embed(TEXTS)
    assert retry_after(caught.value) == 7.0


def test_parse_retry_after__reads_seconds_and_http_dates_and_clips_long_waits() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("garbled") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("86400") == 60.0
    in_a_while = parse_retry_after(formatdate(usegmt=True))
    assert in_a_while is not None and 0.0 <= in_a_while <= 1.0


def test_batch_writer__waits_at_least_retry_after_and_counts_each_429_as_a_retry(
    tmp_path: Path,
) -> None:
    waits: list[float] = []
    with embedding_server(schedule=(200, 429, 200), retry_after="1") as server:
        embedder = OpenAIEmbedder(MODEL, server.base_url)
        store = SqliteVecStore(tmp_path / "store.sqlite-vec", embedder.dimensions)
        try:
            writer = BatchWriter(embedder, store, RetryPolicy(3, 0.001), sleep=waits.append)
            docs = docs_of(TEXTS)
            outcomes = [writer.write(docs[i : i + 2]) for i in range(0, len(docs), 2)]
            assert store.count() == len(TEXTS)
        finally:
            store.close()
    limited = server.served.count(429)
    assert limited >= 1
    assert sum(outcome.retries for outcome in outcomes) == limited
    assert len(waits) == limited and min(waits) >= 1.0


def test_batch_writer__a_503_is_retried_with_backoff_and_counted(tmp_path: Path) -> None:
    waits: list[float] = []
    with embedding_server(schedule=(200, 503)) as server:
        embedder = OpenAIEmbedder(MODEL, server.base_url)
        store = SqliteVecStore(tmp_path / "store.sqlite-vec", embedder.dimensions)
        try:
            writer = BatchWriter(embedder, store, RetryPolicy(3, 0.001), sleep=waits.append)
            outcome = writer.write(docs_of(TEXTS))
        finally:
            store.close()
    assert outcome.written == len(TEXTS) and outcome.retries == 1
    assert outcome.last_retried_error is not None and "503" in outcome.last_retried_error
    assert waits and max(waits) < 1.0


def test_store_open__a_collection_of_other_dimensions_is_refused_with_both_numbers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.sqlite-vec"
    SqliteVecStore(path, 384).close()
    with embedding_server(dimensions=128) as server:
        embedder = OpenAIEmbedder(MODEL, server.base_url)
        with pytest.raises(DimensionMismatch, match="384 dimensions, but the embedder makes 128"):
            SqliteVecStore(path, embedder.dimensions)
    assert classify(DimensionMismatch("c", existing=384, wanted=128)) is ErrorKind.STORE
