"""--cleanup full: once a job completes, delete from its collection the documents that left the
source.

A document left the source when this run saw no record of it: its content hash was neither
written nor marked seen by the job (ContentHash.seen_by), and it did not fail in the job (a
failed document is still in the source). The store's own ids are the candidates, not the hash
records alone, so that documents written before hashes existed are cleaned up too; the records
of the documents gone are then dropped. Every step is idempotent: a cleanup cut short by a crash
is redone whole when the job resumes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from reindexer.content_hashes import ContentHashes
from reindexer.models import BatchFailure, ReindexJob
from reindexer.stores import VectorStore

# Ids per store delete: one request (or transaction) each, small enough for any store.
DELETE_CHUNK = 500

T = TypeVar("T")


class Retrying(Protocol):
    """Runs a store call with the job's retries of transient errors; `what` names it."""

    def __call__(self, call: Callable[[], T], what: str) -> T: ...


def failed_in(job: ReindexJob) -> set[str]:
    """The ids of the unresolved failures of `job` and its slices: still in the source."""
    jobs = [job.pk, *ReindexJob.objects.filter(parent=job).values_list("pk", flat=True)]
    failed: set[str] = set()
    for doc_ids in (
        BatchFailure.objects.unresolved().filter(job_id__in=jobs).values_list("doc_ids", flat=True)
    ):
        failed.update(doc_ids)
    return failed


def vanished(stored: set[str], seen: set[str], failed: set[str]) -> list[str]:
    """The stored ids that this run neither saw nor failed, in order."""
    return sorted(stored - seen - failed)


def _chunks(ids: Sequence[str], size: int = DELETE_CHUNK) -> list[Sequence[str]]:
    return [ids[start : start + size] for start in range(0, len(ids), size)]


def clean_up(job: ReindexJob, store: VectorStore, hashes: ContentHashes, retrying: Retrying) -> int:
    """Delete the documents that left `job`'s source from `store`, then their records; the
    number the store deleted."""
    failed = failed_in(job)
    stored = retrying(lambda: set(store.ids()), "cleanup")
    gone = vanished(stored, hashes.seen_ids(), failed)
    deleted = 0
    for chunk in _chunks(gone):

        def delete(ids: Sequence[str] = chunk) -> int:
            return store.delete(ids)

        deleted += retrying(delete, "cleanup")
        hashes.forget(chunk)
    hashes.forget_unseen(keep=failed)
    return deleted
