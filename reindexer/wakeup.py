"""Waking idle workers at once: PostgreSQL's LISTEN/NOTIFY, with polling as the fallback.

`notify_workers()` is called wherever a worker may have something new to do: a job queued,
resumed or ended (freeing its collection), a cancel requested, a sliced job split. It sends once
the surrounding transaction commits. Elsewhere (SQLite) it sends nothing, and workers poll.
"""

from __future__ import annotations

CHANNEL = "reindexer_jobs"


def notify_workers(reason: str, job_id: int) -> None:
    """Wake idle workers once the current transaction commits (a no-op without LISTEN/NOTIFY)."""
    # Scaffold: LISTEN/NOTIFY is being built (issue "Many workers on many machines").
    del reason, job_id
