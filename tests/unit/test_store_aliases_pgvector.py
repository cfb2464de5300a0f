"""pgvector's aliases are views, which the planner inlines: a search through one uses its table's
HNSW index. (A move to other dimensions is in test_store_aliases.py, on every store.)"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.sql import SQL, Identifier

from reindexer.documents import Document
from reindexer.stores import store_backend
from tests.pgvector_server import PgvectorServer
from tests.stores.harnesses import DIMS, vector_for, vectors_of

pytestmark = pytest.mark.backends


def test_search_through_the_alias_view_uses_the_tables_hnsw_index(
    pgvector_server: PgvectorServer, settings: Any, data_dir: Path
) -> None:
    settings.REINDEXER = dataclasses.replace(settings.REINDEXER, pgvector_url=pgvector_server.url)
    backend = store_backend("pgvector")
    alias = f"pv_{uuid.uuid4().hex[:10]}"
    table = f"{alias}__1"
    store = backend.open(table, DIMS)
    docs = [Document(f"d{i}", f"text {i}") for i in range(300)]
    store.upsert(docs, vectors_of(docs))
    assert store.build_index(lambda _: True) is True
    store.close()
    backend.point_alias(alias, table)

    with psycopg.connect(pgvector_server.url, autocommit=True) as conn:
        from pgvector.psycopg import register_vector

        register_vector(conn)
        conn.execute("SET enable_seqscan = off")  # a 300-row table would be scanned otherwise
        plan = "\n".join(
            str(line[0])
            for line in conn.execute(
                SQL("EXPLAIN SELECT id FROM {} ORDER BY embedding <=> %s LIMIT 5").format(
                    Identifier(alias)
                ),
                (vector_for("text 3"),),
            )
        )
    assert f"Index Scan using {table}_embedding_hnsw on {table}" in plan, plan
