"""How fast the `sql:` source hands out records, beside `jsonl:` reading the same documents.

    .venv/bin/python bench/sql_source.py [--rows 50000] [--batch 200]

The same rows go into a JSONL file, a SQLite table and a PostgreSQL table (a throwaway database
`reindexer_bench_sqlsource` on 127.0.0.1:5432, dropped at the end); each source is read through
`read_batch` as the engine reads it, and the figures are records/s and the ratio to JSONL.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
PG_NAME = "reindexer_bench_sqlsource"


def rows(n: int) -> list[tuple[str, str, str]]:
    return [
        (f"doc-{i:07d}", f"document {i} about topic {i % 97}", json.dumps({"n": i}))
        for i in range(n)
    ]


def read_rate(spec: str, batch: int) -> tuple[float, int]:
    from reindexer.sources import open_source

    source = open_source(spec)
    started = time.perf_counter()
    reader = source.open()
    count = 0
    while records := reader.read_batch(batch):
        count += len(records)
    reader.close()
    return count / (time.perf_counter() - started), count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    data = rows(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["REINDEXER_DATA_DIR"] = tmp
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reindexer.settings")
        import apsw
        import django
        import psycopg
        from django.conf import settings

        django.setup()
        path = Path(tmp, "docs.jsonl")
        with path.open("w") as f:
            for doc_id, text, metadata in data:
                f.write(json.dumps({"id": doc_id, "text": text, "metadata": json.loads(metadata)}))
                f.write("\n")
        lite = Path(tmp, "source.sqlite3")
        conn = apsw.Connection(str(lite))
        conn.execute("create table docs (id text primary key, text text, metadata text)")
        with conn:
            conn.executemany("insert into docs values (?, ?, ?)", data)
        conn.close()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"drop database if exists {PG_NAME}")
            admin.execute(f"create database {PG_NAME}")
        pg_url = f"postgres://postgres@127.0.0.1:5432/{PG_NAME}"
        try:
            with psycopg.connect(pg_url) as pg:
                pg.execute("create table docs (id text primary key, text text, metadata jsonb)")
                with pg.cursor().copy("copy docs from stdin") as copy:
                    for row in data:
                        copy.write_row(row)
            base = settings.REINDEXER
            settings.REINDEXER = dataclasses.replace(base, source_roots=(Path(tmp),))
            jsonl_rate, _ = read_rate("jsonl:docs.jsonl", args.batch)
            results = [("jsonl", jsonl_rate)]
            for name, url in (("sql (SQLite)", f"sqlite:///{lite}"), ("sql (PostgreSQL)", pg_url)):
                settings.REINDEXER = dataclasses.replace(settings.REINDEXER, sql_source_url=url)
                rate, count = read_rate("sql:docs", args.batch)
                if count != args.rows:
                    raise SystemExit(f"{name} read {count} records of {args.rows}")
                results.append((name, rate))
        finally:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f"drop database if exists {PG_NAME} with (force)")
    print(f"{args.rows} records, batches of {args.batch}")
    for name, rate in results:
        print(f"{name:18} {rate:10,.0f} records/s   ratio to jsonl {rate / jsonl_rate:.2f}")


if __name__ == "__main__":
    main()
