"""A job's failures at volume: counts by error type, filters, pages, and rows for the CSV.

Every query is bounded by the job and reads the (job, error_type) and (job, batch_number)
indexes: a page costs the same few queries however many failures the job holds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.core.paginator import Page, Paginator
from django.db.models import Count, Q

from reindexer.jobs import job_failures as recorded_failures
from reindexer.models import BatchFailure, BatchFailureQuerySet, ReindexJob

LIST_PAGE_SIZE = 50
PAGE_PARAM = "page"
# Rows the CSV export reads per query: memory stays flat however many failures there are.
EXPORT_CHUNK = 1000
TRANSIENT_CHOICES = {"yes": True, "no": False}


@dataclass(frozen=True)
class TypeCount:
    error_type: str
    count: int


@dataclass(frozen=True)
class FailureFilter:
    """What the failures page and the CSV show: an error type, transient or permanent, or all."""

    error_type: str = ""
    transient: bool | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> FailureFilter:
        """The filter of `?type=...&transient=yes|no`; any other transient value means both."""
        return cls(
            error_type=query.get("type", "").strip(),
            transient=TRANSIENT_CHOICES.get(query.get("transient", "")),
        )

    @property
    def transient_param(self) -> str:
        if self.transient is None:
            return ""
        return "yes" if self.transient else "no"

    def params(self) -> dict[str, str]:
        """The filter as query parameters, only the ones set."""
        params = {"type": self.error_type, "transient": self.transient_param}
        return {key: value for key, value in params.items() if value}

    def query_string(self, **extra: str | int) -> str:
        """`?type=...&page=2`, or an empty string when nothing is set."""
        params: dict[str, str | int] = {**self.params(), **extra}
        return f"?{urlencode(params)}" if params else ""

    def apply(self, failures: BatchFailureQuerySet) -> BatchFailureQuerySet:
        if self.error_type:
            failures = failures.filter(error_type=self.error_type)
        if self.transient is not None:
            failures = failures.filter(transient=self.transient)
        return failures


def job_failures(job: ReindexJob) -> BatchFailureQuerySet:
    """The job's failures in the model's order (batch, id); the traceback is only read when a
    failure is opened. A sliced job's are its slices', each with its slice (one join)."""
    failures = recorded_failures(job).defer("traceback")
    if job.is_sliced:
        failures = failures.select_related("job").defer("job__checkpoint", "job__trace_context")
    return failures


def failure_of(job_pk: int, failure_pk: int) -> BatchFailureQuerySet:
    """The failure `failure_pk` if it is job `job_pk`'s, or one of its slices'."""
    return BatchFailure.objects.filter(
        Q(job_id=job_pk) | Q(job__parent_id=job_pk), pk=failure_pk
    ).select_related("job")


def type_counts(job: ReindexJob) -> list[TypeCount]:
    """How many failures of each error type the job has, the most frequent first (one query)."""
    rows = (
        recorded_failures(job)
        .values("error_type")
        .annotate(n=Count("id"))
        .order_by("-n", "error_type")
    )
    return [TypeCount(row["error_type"], row["n"]) for row in rows]


def filtered_page(job: ReindexJob, flt: FailureFilter, number: str | None) -> Page[Any]:
    """One page of the job's failures that match `flt` (a count and a slice: two queries)."""
    return Paginator(flt.apply(job_failures(job)), LIST_PAGE_SIZE).get_page(number)


def page_links(page: Page[Any], flt: FailureFilter) -> dict[str, str | None]:
    """The previous and next pages' links, keeping the filter."""

    def link(number: int) -> str:
        return flt.query_string(**{PAGE_PARAM: number})

    return {
        "prev": link(page.previous_page_number()) if page.has_previous() else None,
        "next": link(page.next_page_number()) if page.has_next() else None,
    }


def export_chunks(job: ReindexJob, flt: FailureFilter) -> Iterator[list[BatchFailure]]:
    """Every matching failure in the list's order, a chunk per query, each starting after the last
    row of the one before (keyset, not OFFSET: the last chunk costs what the first does)."""
    failures = flt.apply(job_failures(job)).order_by("batch_number", "id")
    after: tuple[int, int] | None = None
    while True:
        chunk = next_chunk(failures, after)
        if not chunk:
            return
        yield chunk
        after = (chunk[-1].batch_number, chunk[-1].pk)


def next_chunk(failures: BatchFailureQuerySet, after: tuple[int, int] | None) -> list[BatchFailure]:
    """The EXPORT_CHUNK failures that follow `after` (batch number, id) in `failures`."""
    if after is not None:
        batch, pk = after
        failures = failures.filter(Q(batch_number__gt=batch) | Q(batch_number=batch, pk__gt=pk))
    return list(failures[:EXPORT_CHUNK])
