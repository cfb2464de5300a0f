"""pgvector's aliases: alias `A` is the view `A AS SELECT id, embedding, text, metadata FROM T`.

A move is one transaction (CREATE OR REPLACE VIEW, or DROP and CREATE when the new table's vectors
have other dimensions, as a view's columns cannot change type): a reader's statement runs on the
old view or the new, never on neither, since PostgreSQL looks the name up again after waiting for
the lock the move holds. The planner inlines the view, so a search through it uses the table's
HNSW index (tests/unit/test_store_aliases_pgvector.py checks the plan).

A plain table named like the alias (a collection reindexed in place before) is renamed to
`A__base`, with its index and primary key, in the same transaction that creates the view.
Movers and droppers queue on one advisory lock, so a drop never races a move onto its table.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from reindexer.stores import aliases
from reindexer.stores.pgvector_index import index_name

# pg_advisory_xact_lock key serialising moves and drops: "rgal".
_ALIAS_LOCK = 0x7267_616C
TABLE, VIEW = "r", "v"

_VIEWS_OVER = """
SELECT DISTINCT v.relname FROM pg_depend d
JOIN pg_rewrite r ON r.oid = d.objid
JOIN pg_class v ON v.oid = r.ev_class
WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
  AND d.refobjid = to_regclass(%s) AND v.oid <> d.refobjid AND v.relkind = 'v'
ORDER BY v.relname
"""
_TABLES_UNDER = """
SELECT DISTINCT t.relname FROM pg_rewrite r
JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
  AND d.refclassid = 'pg_class'::regclass
JOIN pg_class t ON t.oid = d.refobjid AND t.oid <> r.ev_class AND t.relkind = 'r'
WHERE r.ev_class = to_regclass(%s)
"""


def _regclass(conn: psycopg.Connection[Any], name: str) -> str:
    return sql.Identifier(name).as_string(conn)


def kind_of(conn: psycopg.Connection[Any], name: str) -> str | None:
    """`r` for a table, `v` for a view, another relkind, or None when `name` is nothing."""
    row = conn.execute(
        "SELECT c.relkind FROM pg_class c"
        " WHERE c.relname = %s AND c.relnamespace = current_schema()::text::regnamespace",
        (name,),
    ).fetchone()
    return str(row[0]) if row else None


def view_target(conn: psycopg.Connection[Any], view: str) -> str | None:
    """The one table the view `view` selects from; None when `view` is not such a view."""
    if kind_of(conn, view) != VIEW:
        return None
    rows = conn.execute(_TABLES_UNDER, (_regclass(conn, view),)).fetchall()
    return str(rows[0][0]) if len(rows) == 1 else None


def views_over(conn: psycopg.Connection[Any], table: str) -> list[str]:
    return [str(name) for (name,) in conn.execute(_VIEWS_OVER, (_regclass(conn, table),))]


def lock(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ALIAS_LOCK,))


def _rename_table(conn: psycopg.Connection[Any], table: str, new: str) -> None:
    """`table` becomes `new`, with its HNSW index and primary key renamed to match."""
    conn.execute(
        sql.SQL("ALTER TABLE {} RENAME TO {}").format(sql.Identifier(table), sql.Identifier(new))
    )
    if kind_of(conn, index_name(table)) == "i":
        conn.execute(
            sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                sql.Identifier(index_name(table)), sql.Identifier(index_name(new))
            )
        )
    if kind_of(conn, f"{table}_pkey") == "i":
        conn.execute(
            sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}").format(
                sql.Identifier(new), sql.Identifier(f"{table}_pkey"), sql.Identifier(f"{new}_pkey")
            )
        )


def _column_type(conn: psycopg.Connection[Any], relation: str) -> str | None:
    row = conn.execute(
        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
        " WHERE a.attrelid = to_regclass(%s) AND a.attname = 'embedding' AND NOT a.attisdropped",
        (_regclass(conn, relation),),
    ).fetchone()
    return str(row[0]) if row else None


def point(conn: psycopg.Connection[Any], alias: str, collection: str, base: str) -> str | None:
    """Make the view `alias` select from `collection`, in the caller's transaction; the table
    it served before (`base`, when `alias` was a plain table, which moves there)."""
    lock(conn)
    if collection == alias or kind_of(conn, collection) == VIEW:
        raise aliases.not_a_collection(alias, collection, "it is an alias")
    if kind_of(conn, collection) != TABLE:
        raise aliases.not_a_collection(alias, collection, "there is no such table")
    kind = kind_of(conn, alias)
    previous: str | None = None
    if kind == VIEW:
        previous = view_target(conn, alias)
    elif kind == TABLE:
        if kind_of(conn, base) is not None:
            raise aliases.not_a_collection(
                alias, collection, f"{alias!r} is a table, and {base!r}, where it would be kept,"
                " exists already",
            )  # fmt: skip
        _rename_table(conn, alias, base)
        previous = base
    elif kind is not None:
        raise aliases.not_a_collection(alias, collection, f"{alias!r} is another kind of object")
    select = sql.SQL("SELECT id, embedding, text, metadata FROM {}").format(
        sql.Identifier(collection)
    )
    if kind == VIEW and _column_type(conn, alias) != _column_type(conn, collection):
        conn.execute(sql.SQL("DROP VIEW {}").format(sql.Identifier(alias)))
    conn.execute(sql.SQL("CREATE OR REPLACE VIEW {} AS {}").format(sql.Identifier(alias), select))
    return previous


def drop(conn: psycopg.Connection[Any], name: str) -> bool:
    """Drop the table `name`, in the caller's transaction; refused for an alias or its target."""
    lock(conn)
    kind = kind_of(conn, name)
    if kind is None:
        return False
    if kind == VIEW:
        raise aliases.refuse_drop_alias(name, view_target(conn, name))
    serving = views_over(conn, name)
    if serving:
        raise aliases.refuse_drop_target(name, serving)
    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
    return True


def physical_tables(conn: psycopg.Connection[Any], alias: str) -> list[str]:
    prefix = alias + aliases.SEPARATOR
    rows = conn.execute(
        "SELECT tablename FROM pg_tables"
        " WHERE schemaname = current_schema() AND left(tablename, %s) = %s",
        (len(prefix), prefix),
    ).fetchall()
    return aliases.physical_order(alias, [str(name) for (name,) in rows])
