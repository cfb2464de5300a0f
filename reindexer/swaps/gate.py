"""The cutover gate: before the alias moves, the collection a swap job built must hold every
document of the source (none missing, none twice), have a count within the error budget of the
collection the alias serves now, and find each of a sample of its own documents in its top 5.

Its result is the job's `verification`, in the shape the pages and `status --json` show:
{"passed", "collection", "previous", "missing", "duplicates", "count", "previous_count",
"budget", "canary": {"sampled", "found", "misses"}, "failures"}.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from reindexer.documents import Document
from reindexer.embedders.base import Embedder
from reindexer.models import BatchFailure, ReindexJob
from reindexer.sources import open_source
from reindexer.stores import VectorStore, store_backend
from reindexer.swaps.names import build_collection, serving

# Documents the canary samples, spread over the collection in its id order, and how near each
# must find itself.
CANARY_SAMPLE = 20
CANARY_K = 5
# Documents per page while the canary walks the collection to its sampled positions.
PAGE_DOCS = 1000

T = TypeVar("T")


class Retrying(Protocol):
    """Runs a store call with the job's retries of transient errors; `what` names it."""

    def __call__(self, call: Callable[[], T], what: str) -> T: ...


@dataclass
class Canary:
    sampled: int = 0
    found: int = 0
    misses: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"sampled": self.sampled, "found": self.found, "misses": list(self.misses)}


def source_ids(job: ReindexJob) -> set[str]:
    """The ids of the well-formed records of the job's source."""
    reader = open_source(job.source).open()
    try:
        return {record.id for record in reader if isinstance(record, Document)}
    finally:
        reader.close()


def failed_ids(job: ReindexJob) -> set[str]:
    """The ids held by the job's unresolved failures: written nowhere, and not missing."""
    ids: set[str] = set()
    for doc_ids in (
        BatchFailure.objects.unresolved().filter(job=job).values_list("doc_ids", flat=True)
    ):
        ids.update(doc_ids)
    return ids


def spread(n: int, k: int = CANARY_SAMPLE) -> list[int]:
    """Up to `k` positions among `n`, evenly spread from the first: deterministic."""
    k = min(k, n)
    return sorted({i * n // k for i in range(k)}) if k else []


def sample_documents(store: VectorStore, n: int) -> list[Document]:
    """The documents at `spread(n)` positions of the store's own id order."""
    wanted = set(spread(n))
    picked: list[Document] = []
    position, after = 0, None
    while len(picked) < len(wanted):
        page = store.documents(after, PAGE_DOCS)
        if not page:
            break
        for doc in page:
            if position in wanted:
                picked.append(doc)
            position += 1
        after = page[-1].id
    return picked


def canary(store: VectorStore, embedder: Embedder, n: int, retrying: Retrying) -> Canary:
    """Search each sampled document's own text: it must come back in its top CANARY_K."""
    docs = retrying(lambda: sample_documents(store, n), "canary sample")
    result = Canary(sampled=len(docs))
    if not docs:
        return result
    vectors = embedder.embed([doc.text for doc in docs])
    for doc, vector in zip(docs, vectors, strict=True):
        if doc.id in _nearest_ids(store, vector, retrying):
            result.found += 1
        else:
            result.misses.append(doc.id)
    return result


def _nearest_ids(store: VectorStore, vector: Any, retrying: Retrying) -> set[str]:
    hits = retrying(lambda: store.search(vector, k=CANARY_K), "canary search")
    return {hit.id for hit in hits}


def _count_of(job: ReindexJob, name: str) -> int:
    opened = store_backend(job.store).open_existing(name)
    if opened is None:
        return 0
    try:
        return opened.count()
    finally:
        opened.close()


def run_gate(
    job: ReindexJob, store: VectorStore, embedder: Embedder, retrying: Retrying
) -> dict[str, Any]:
    """The verification of the collection `store` (the one `job` built), as stored on the job."""
    backend = store_backend(job.store)
    collection = build_collection(job)
    previous = retrying(lambda: serving(backend, job.collection), "alias lookup")
    stored = Counter(retrying(lambda: list(store.ids()), "store ids"))
    missing = len(source_ids(job) - stored.keys() - failed_ids(job))
    duplicates = sum(1 for n in stored.values() if n > 1)
    count = retrying(store.count, "store count")
    previous_count = (
        None if previous is None else retrying(lambda: _count_of(job, previous), "previous count")
    )
    budget = 0 if previous_count is None else math.ceil(job.max_failed_ratio * previous_count)
    sample = canary(store, embedder, len(stored), retrying)
    failures = gate_failures(
        collection, previous, missing, duplicates, count, previous_count, budget, sample
    )
    return {
        "passed": not failures,
        "collection": collection,
        "previous": previous,
        "missing": missing,
        "duplicates": duplicates,
        "count": count,
        "previous_count": previous_count,
        "budget": budget,
        "canary": sample.as_json(),
        "failures": failures,
    }


def gate_failures(
    collection: str,
    previous: str | None,
    missing: int,
    duplicates: int,
    count: int,
    previous_count: int | None,
    budget: int,
    sample: Canary,
) -> list[str]:
    """Each check that failed, as a sentence an operator reads."""
    failures = []
    if missing:
        failures.append(f"{missing} documents of the source are missing from {collection}")
    if duplicates:
        failures.append(f"{duplicates} ids are stored more than once in {collection}")
    if previous_count is not None and abs(count - previous_count) > budget:
        failures.append(
            f"{collection} holds {count} documents against {previous_count} in {previous}:"
            f" {abs(count - previous_count)} apart, more than the error budget of {budget}"
        )
    if sample.misses:
        shown = ", ".join(sample.misses[:5]) + (", …" if len(sample.misses) > 5 else "")
        failures.append(
            f"canary: {len(sample.misses)} of {sample.sampled} sampled documents were not in"
            f" their own top {CANARY_K} ({shown})"
        )
    return failures


def summary(verification: dict[str, Any]) -> str:
    """The verification in one line, for the job's events."""
    previous = verification["previous"]
    against = (
        f", {verification['previous_count']} in {previous} (budget {verification['budget']})"
        if previous
        else ", no previous collection"
    )
    sample = verification["canary"]
    return (
        f"{verification['collection']}: {verification['count']} documents{against};"
        f" {verification['missing']} missing, {verification['duplicates']} duplicated;"
        f" canary {sample['found']}/{sample['sampled']} found in their top {CANARY_K}"
    )
