"""Contracts from DESIGN.md that several suites check."""

# The fields `reindex status --json` and the JSON API print at least.
STATUS_FIELDS = frozenset(
    {
        "id",
        "name",
        "status",
        "total_docs",
        "processed_docs",
        "failed_docs",
        "skipped_docs",
        "progress",
        "batches_done",
        "batches_failed",
        "retries",
        "docs_per_second",
        "eta_seconds",
        "heartbeat_at",
        "started_at",
        "finished_at",
        "cancel_requested",
        "error",
        # Added by issue 9.
        "phase",
        "dimensions",
    }
)
