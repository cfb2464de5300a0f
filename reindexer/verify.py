"""`reindex verify`: compare the ids a job's source yields with the ids in its store."""

from __future__ import annotations

from collections import Counter
from typing import Any

from reindexer.documents import Document
from reindexer.models import BatchFailure, ReindexJob
from reindexer.sources import open_source
from reindexer.stores import store_backend
from reindexer.swaps.names import build_collection

SAMPLE_SIZE = 20


def _job_family(job: ReindexJob) -> list[int]:
    """The job and every retry queued from it, transitively, with the slices of each: a sliced
    job's failures are recorded on its slices."""
    family = [job.pk]
    frontier = [job.pk]
    while frontier:
        frontier = list(
            ReindexJob.objects.filter(retry_of_id__in=frontier).values_list("pk", flat=True)
        )
        family.extend(frontier)
    slices = ReindexJob.objects.filter(parent_id__in=family).values_list("pk", flat=True)
    return [*family, *slices]


def verify_job(job: ReindexJob) -> dict[str, Any]:
    """The report of `verify --json`; a slice is verified as its whole sliced job (one source,
    one collection)."""
    if job.parent_id is not None:
        job = ReindexJob.objects.get(pk=job.parent_id)
    source = open_source(job.source)
    source_ids: set[str] = set()
    reader = source.open()
    try:
        for record in reader:
            if isinstance(record, Document):
                source_ids.add(record.id)
    finally:
        reader.close()

    # The collection the job wrote (a swap job's own ALIAS__<job id>, not what its alias serves),
    # read as it is: verifying never creates a collection, and one that is gone holds nothing.
    store = store_backend(job.store).open_existing(build_collection(job))
    stored: Counter[str] = Counter()
    if store is not None:
        try:
            stored = Counter(store.ids())
        finally:
            store.close()

    recorded: set[str] = set()
    failures = BatchFailure.objects.unresolved().filter(job_id__in=_job_family(job))
    for doc_ids in failures.values_list("doc_ids", flat=True):
        recorded.update(doc_ids)
    failed_recorded = source_ids & recorded
    missing = sorted(source_ids - stored.keys() - failed_recorded)
    return {
        "job": job.pk,
        "source_docs": len(source_ids),
        "in_store": len(stored),
        "failed_recorded": len(failed_recorded),
        "missing": len(missing),
        "duplicates": sum(1 for n in stored.values() if n > 1),
        "missing_sample": missing[:SAMPLE_SIZE],
    }


def verify_problems(report: dict[str, Any]) -> str:
    """What makes `report` fail, as one phrase ("3 missing, 1 duplicated"); empty if it passes."""
    parts = []
    if report["missing"]:
        parts.append(f"{report['missing']} missing")
    if report["duplicates"]:
        parts.append(f"{report['duplicates']} duplicated")
    return ", ".join(parts)
