"""The jobs list's query: filters, whitelisted sorts, the tabs' counts and the filters' choices.

Every shape here is served by an index of migration 0003: the default order by
(-created_at, -id), a tab by (status, -created_at), a store or collection by (store|collection,
-created_at). The tabs' counts are capped index reads, and the page count reuses them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, time, timedelta
from functools import cached_property
from typing import Any
from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from reindexer.models import JobStatus, ReindexJob, ReindexJobQuerySet

# sort key -> ORDER BY; every order ends on id, so equal values keep one order across pages.
SORTS: dict[str, tuple[str, ...]] = {
    "-created": ("-created_at", "-id"),
    "created": ("created_at", "id"),
    "name": ("name", "id"),
    "-name": ("-name", "-id"),
    "status": ("status", "-created_at", "-id"),
    "-status": ("-status", "-created_at", "-id"),
    "processed": ("processed_docs", "id"),
    "-processed": ("-processed_docs", "-id"),
    "failed": ("failed_docs", "id"),
    "-failed": ("-failed_docs", "-id"),
}
DEFAULT_SORT = "-created"
# The sort <select>'s options, one per key (the column headers toggle the same keys).
SORT_LABELS: dict[str, str] = {
    "-created": "Newest first",
    "created": "Oldest first",
    "name": "Name, A to Z",
    "-name": "Name, Z to A",
    "status": "Status, A to Z",
    "-status": "Status, Z to A",
    "-processed": "Most processed",
    "processed": "Least processed",
    "-failed": "Most failed",
    "failed": "Least failed",
}
# Sorts no index serves read every matching job; past this many matches they order only the
# newest this many (one index range, then a sort of at most this many rows), and the page says so.
UNINDEXED_SORTS = frozenset({"name", "-name", "processed", "-processed", "failed", "-failed"})
SORT_WINDOW = 5_000
# The filters' <select>s list at most this many distinct stores or collections.
CHOICES_LIMIT = 100


@dataclass(frozen=True)
class ListFilters:
    """What the list shows; every field lives in the URL, so a re-fetch shows the same."""

    status: str = ""
    q: str = ""
    store: str = ""
    collection: str = ""
    created_from: date | None = None
    created_to: date | None = None
    sort: str = DEFAULT_SORT

    @property
    def narrowed(self) -> bool:
        """Whether anything but the sort narrows the list (for the empty table's message)."""
        return any(value for key, value in asdict(self).items() if key != "sort")

    def query(self, **changes: Any) -> str:
        """This list's query string with `changes` applied; empty values and the default sort
        are left out, so the URLs stay short and equal lists have equal URLs."""
        values = asdict(replace(self, **changes))
        if values["sort"] == DEFAULT_SORT:
            values["sort"] = ""
        return urlencode({k: _param(v) for k, v in values.items() if v})

    def without_status(self) -> ReindexJobQuerySet:
        """Every filter but the tab (the tabs count across it); jobs as operators queued them,
        not the slices of a sliced job."""
        jobs = top_level(ReindexJob.objects.all())
        if self.q:
            jobs = jobs.filter(name__icontains=self.q)
        if self.store:
            jobs = jobs.filter(store=self.store)
        if self.collection:
            jobs = jobs.filter(collection=self.collection)
        if self.created_from:
            jobs = jobs.filter(created_at__gte=_start_of(self.created_from))
        if self.created_to:
            jobs = jobs.filter(created_at__lt=_start_of(self.created_to + timedelta(days=1)))
        return jobs

    def jobs(self, *, matches: int = 0) -> ReindexJobQuerySet:
        """The matching jobs in the chosen order; `matches` is their number, if known."""
        jobs = self.without_status()
        if self.status:
            jobs = jobs.filter(status=self.status)
        if self.windowed(matches):
            newest = jobs.order_by(*SORTS[DEFAULT_SORT]).values("pk")[:SORT_WINDOW]
            jobs = ReindexJob.objects.filter(pk__in=Subquery(newest))
        # A sliced job's row shows its slices' figures (the presenter): one query per page.
        return jobs.order_by(*SORTS[self.sort]).prefetch_related("slice_jobs")

    def windowed(self, matches: int) -> bool:
        """Whether the order covers only the newest SORT_WINDOW matches."""
        return self.sort in UNINDEXED_SORTS and matches > SORT_WINDOW

    def window(self, matches: int) -> int | None:
        """The number of jobs the order covers when it does not cover every match."""
        return SORT_WINDOW if self.windowed(matches) else None


def top_level(jobs: ReindexJobQuerySet) -> ReindexJobQuerySet:
    """`jobs` but the slices of sliced jobs (ReindexJob.objects.top_level()), tested through an
    expression that no index serves: a plain `parent_id IS NULL` makes SQLite's planner read the
    parent index and sort every job, where the list's own order index reads just one page."""
    return jobs.alias(slice_of_or_zero=Coalesce("parent_id", Value(0))).filter(slice_of_or_zero=0)


def _param(value: object) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def _start_of(day: date) -> datetime:
    """Midnight of `day` in the site's time zone: the range is in dates as people read them."""
    return timezone.make_aware(datetime.combine(day, time.min))


# The tabs count up to this many jobs each, then say "10,000+": an exact count reads every
# matching row (a parallel sequential scan of about 100 ms at 200k jobs on PostgreSQL).
COUNT_CAP = 10_000


@dataclass(frozen=True)
class TabCount:
    n: int
    capped: bool

    def __str__(self) -> str:
        return f"{COUNT_CAP:,}+" if self.capped else str(self.n)


def status_counts(jobs: ReindexJobQuerySet) -> dict[str, TabCount]:
    """Jobs per status, and "all", each capped at COUNT_CAP: one bounded index read a status."""
    counts: dict[str, TabCount] = {}
    for status in JobStatus.values:
        n = jobs.filter(status=status).order_by().values("pk")[: COUNT_CAP + 1].count()
        counts[status] = TabCount(min(n, COUNT_CAP), n > COUNT_CAP)
    total = sum(count.n for count in counts.values())
    capped = total > COUNT_CAP or any(count.capped for count in counts.values())
    counts["all"] = TabCount(min(total, COUNT_CAP), capped)
    return counts


class CountedPaginator(Paginator):  # type: ignore[type-arg]
    """A paginator told its count (the tabs' GROUP BY has it), saving a second COUNT(*)."""

    def __init__(self, object_list: Any, per_page: int, *, count: int) -> None:
        super().__init__(object_list, per_page)
        self._known_count = count

    @cached_property
    def count(self) -> int:
        return self._known_count


def distinct_values(field: str, limit: int = CHOICES_LIMIT) -> list[str]:
    """The distinct values of an indexed column, smallest first, by a loose index scan: one index
    probe per value (a recursive CTE), not a scan of every job as SELECT DISTINCT would be."""
    if field not in {"store", "collection"}:  # the columns with an index led by them
        raise ValueError(f"no index for the distinct values of {field!r}")
    quote = connection.ops.quote_name
    table = quote(ReindexJob._meta.db_table)
    column = quote(field)  # the field and its column share the name (no db_column)
    sql = f"""
        WITH RECURSIVE seen(value, depth) AS (
            SELECT MIN({column}), 1 FROM {table}
            UNION ALL
            SELECT (SELECT MIN({column}) FROM {table} WHERE {column} > seen.value), depth + 1
            FROM seen WHERE seen.value IS NOT NULL AND depth < %(limit)s
        )
        SELECT value FROM seen WHERE value IS NOT NULL
    """  # noqa: S608 -- only quoted identifiers from the model are interpolated
    with connection.cursor() as cursor:
        cursor.execute(sql, {"limit": limit})
        return [value for (value,) in cursor.fetchall()]


@dataclass(frozen=True)
class SortHeader:
    """A sortable column's header: the link that toggles its order, and its aria-sort."""

    key: str
    label: str
    query: str
    aria_sort: str  # "ascending", "descending" or "" (not sorted by this column)


# column key -> (label, the direction of a first click: names read A-Z, counts largest first)
SORTABLE_COLUMNS: dict[str, tuple[str, str]] = {
    "name": ("Job", ""),
    "status": ("Status", ""),
    "processed": ("Processed", "-"),
    "failed": ("Failed", "-"),
}


def sort_headers(filters: ListFilters) -> dict[str, SortHeader]:
    headers = {}
    for key, (label, first) in SORTABLE_COLUMNS.items():
        if filters.sort == key:
            aria, next_sort = "ascending", f"-{key}"
        elif filters.sort == f"-{key}":
            aria, next_sort = "descending", key
        else:
            aria, next_sort = "", f"{first}{key}"
        headers[key] = SortHeader(key, label, filters.query(sort=next_sort), aria)
    return headers
