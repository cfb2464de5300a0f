"""The jobs list's sorting and filters: whitelisted sorts with an id tiebreak, filters by store,
collection and creation date, all kept in the URL by the tabs, the search and the pages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from dashboard.list_query import ListFilters, distinct_values
from reindexer.models import ReindexJob

pytestmark = pytest.mark.django_db

PANEL = {"HX-Request": "true", "HX-Target": "jobs-panel"}
FLAKY = "flaky(sqlite-vec,transient=0.1)"


def row_ids(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr id="job-row-(\d+)"', html)]


def header(html: str, label: str) -> str:
    match = re.search(rf'<th scope="col"[^>]*><a class="sort-link"[^>]*>{label}\b.*?</th>', html)
    assert match, f"no sortable header {label}"
    return match.group(0)


def created(job: ReindexJob, when: datetime) -> None:
    ReindexJob.objects.filter(pk=job.pk).update(created_at=when)


def test_sort__by_name_orders_the_rows_and_the_header_toggles_its_direction(
    viewer_client: Client, make_job
) -> None:
    b, a, c = make_job(name="bravo"), make_job(name="alpha"), make_job(name="charlie")
    html = viewer_client.get("/?sort=name").content.decode()
    assert row_ids(html) == [a.pk, b.pk, c.pk]
    job_header = header(html, "Job")
    assert 'aria-sort="ascending"' in job_header
    assert 'href="?sort=-name"' in job_header
    descending = viewer_client.get("/?sort=-name").content.decode()
    assert row_ids(descending) == [c.pk, b.pk, a.pk]
    assert 'aria-sort="descending"' in header(descending, "Job")
    assert 'href="?sort=name"' in header(descending, "Job")
    assert "aria-sort" not in header(descending, "Status")


def test_sort__default_is_newest_first_with_no_column_marked(
    viewer_client: Client, make_job
) -> None:
    first, second = make_job(), make_job()
    html = viewer_client.get("/").content.decode()
    assert row_ids(html) == [second.pk, first.pk]
    assert "aria-sort" not in html
    assert row_ids(viewer_client.get("/?sort=created").content.decode()) == [first.pk, second.pk]


def test_sort__numbers_start_largest_first_and_ties_break_on_the_id(
    viewer_client: Client, make_job
) -> None:
    low = make_job(status="completed", processed=5, failed=1)
    high = make_job(status="completed", processed=5, failed=3)
    tie = make_job(status="completed", processed=5, failed=1)
    html = viewer_client.get("/").content.decode()
    assert 'href="?sort=-failed"' in header(html, "Failed")
    assert row_ids(viewer_client.get("/?sort=-failed").content.decode()) == [
        high.pk,
        tie.pk,
        low.pk,
    ]
    assert row_ids(viewer_client.get("/?sort=failed").content.decode()) == [low.pk, tie.pk, high.pk]


def test_sort__pages_of_equal_values_neither_repeat_nor_skip_a_job(
    viewer_client: Client, make_job
) -> None:
    jobs = [make_job() for _ in range(30)]  # all "pending" with 0 processed: one long tie
    for sort in ("processed", "-processed", "status", "name"):
        first = row_ids(viewer_client.get(f"/?sort={sort}").content.decode())
        second = row_ids(viewer_client.get(f"/?sort={sort}&page=2").content.decode())
        assert sorted(first + second) == sorted(job.pk for job in jobs), sort


def test_sort__an_unknown_key_is_reported_and_the_list_keeps_its_default_order(
    viewer_client: Client, make_job
) -> None:
    older, newer = make_job(), make_job()
    response = viewer_client.get("/?sort=heartbeat_at;drop")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Select a valid choice" in html
    assert "heartbeat_at;drop" in html  # Django's message quotes the value, escaped
    assert row_ids(html) == [newer.pk, older.pk]


def test_filter__by_store_and_by_collection(viewer_client: Client, make_job) -> None:
    plain = make_job(collection="products")
    flaky = make_job(store=FLAKY, collection="products")
    other = make_job(collection="articles")
    assert row_ids(viewer_client.get("/?store=sqlite-vec").content.decode()) == [other.pk, plain.pk]
    assert row_ids(viewer_client.get("/?store=" + FLAKY).content.decode()) == [flaky.pk]
    assert row_ids(viewer_client.get("/?collection=products").content.decode()) == [
        flaky.pk,
        plain.pk,
    ]
    both = viewer_client.get("/?collection=products&store=sqlite-vec").content.decode()
    assert row_ids(both) == [plain.pk]
    assert row_ids(viewer_client.get("/?collection=prod").content.decode()) == []  # exact


def test_filter__offers_each_distinct_store_and_collection_once(
    viewer_client: Client, make_job
) -> None:
    make_job(collection="products"), make_job(collection="products")
    make_job(store=FLAKY, collection="articles")
    assert distinct_values("store") == sorted(["sqlite-vec", FLAKY])
    assert distinct_values("collection") == ["articles", "products"]
    assert distinct_values("collection", limit=1) == ["articles"]
    html = viewer_client.get("/?collection=products").content.decode()
    assert html.count('<option value="products" selected>') == 1
    assert html.count('<option value="articles">') == 1
    with pytest.raises(ValueError):
        distinct_values("name")  # no index leads with it: the loose scan would read every job


def test_filter__a_chosen_value_past_the_choices_limit_stays_selected(
    viewer_client: Client, make_job
) -> None:
    html = viewer_client.get("/?collection=gone").content.decode()
    assert '<option value="gone" selected>gone</option>' in html
    assert "No job matches." in html


def test_filter__created_range_takes_both_days_whole(viewer_client: Client, make_job) -> None:
    before, first_day, last_day, after = make_job(), make_job(), make_job(), make_job()
    created(before, datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC))
    created(first_day, datetime(2026, 4, 1, 0, 0, tzinfo=UTC))
    created(last_day, datetime(2026, 4, 3, 23, 59, 59, tzinfo=UTC))
    created(after, datetime(2026, 4, 4, 0, 0, tzinfo=UTC))
    html = viewer_client.get("/?created_from=2026-04-01&created_to=2026-04-03").content.decode()
    assert row_ids(html) == [last_day.pk, first_day.pk]
    assert 'value="2026-04-01"' in html and 'value="2026-04-03"' in html
    only_from = viewer_client.get("/?created_from=2026-04-04").content.decode()
    assert after.pk in row_ids(only_from) and last_day.pk not in row_ids(only_from)
    assert row_ids(viewer_client.get("/?created_to=2026-03-31").content.decode()) == [before.pk]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("created_from=yesterday", "Created from: Enter a valid date."),
        ("created_to=2026-02-30", "Created to: Enter a valid date."),
        ("created_from=2026-04-03&created_to=2026-04-01", "comes before its start"),
        ("collection=" + "x" * 300, "Collection: Ensure this value has at most"),
    ],
)
def test_filter__invalid_input_gives_a_clear_message_not_an_error_page(
    viewer_client: Client, make_job, query: str, message: str
) -> None:
    job = make_job()
    response = viewer_client.get(f"/?{query}")
    assert response.status_code == 200
    html = response.content.decode()
    assert message in html
    assert 'role="alert"' in html
    assert row_ids(html) == [job.pk]  # the invalid field is left out, the list still shows


def test_filter__tabs_pages_and_headers_keep_the_filters_and_the_sort(
    viewer_client: Client, make_job
) -> None:
    for i in range(27):
        make_job(name=f"job {i:02d}", collection="products")
    html = viewer_client.get("/?collection=products&sort=name&q=job").content.decode()
    assert 'href="?q=job&amp;collection=products&amp;sort=name&amp;status=running"' not in html
    tabs = re.findall(r'<a class="tab[^"]*" href="\?([^"]*)"', html)
    assert all(
        "collection=products" in tab and "sort=name" in tab and "q=job" in tab for tab in tabs
    )
    assert 'href="?q=job&amp;collection=products&amp;sort=name&amp;page=2"' in html
    assert 'href="?q=job&amp;collection=products&amp;sort=-name"' in header(html, "Job")
    assert 'href="?q=job&amp;collection=products&amp;sort=-processed"' in header(html, "Processed")
    # The search is the same form as the filters, so a search keeps them.
    form = re.search(r'<form class="list-filters".*?</form>', html, re.S)
    assert form
    assert '<option value="products" selected>' in form.group(0)
    assert '<option value="name" selected>' in form.group(0)


def test_filter__status_tab_inside_the_filter_form_and_the_counts_follow_the_filters(
    viewer_client: Client, make_job
) -> None:
    make_job(collection="products"), make_job(status="running", collection="products")
    make_job(collection="articles")
    html = viewer_client.get("/?collection=products&status=pending").content.decode()
    assert re.search(r'All <span class="count">2</span>', html)
    assert re.search(r'Pending <span class="count">1</span>', html)
    assert '<input type="hidden" name="status" value="pending">' in html
    assert len(row_ids(html)) == 1


def test_filter__the_htmx_panel_shows_the_same_filtered_rows(
    viewer_client: Client, make_job
) -> None:
    make_job(collection="products"), make_job(collection="articles")
    full = viewer_client.get("/?collection=articles").content.decode()
    panel = viewer_client.get("/?collection=articles", headers=PANEL).content.decode()
    assert panel.lstrip().startswith('<div id="jobs-panel"')
    assert row_ids(panel) == row_ids(full) and len(row_ids(panel)) == 1


def test_list__query_count_of_every_sort_and_filter_does_not_grow_with_the_rows(
    viewer_client: Client, make_job
) -> None:
    make_job(), make_job(status="running", processed=3)  # first by every order below
    viewer_client.get("/")  # warm the session and permission caches
    urls = [
        "/",
        "/?sort=-processed",
        "/?store=sqlite-vec&collection=default&status=pending",
        "/?created_from=2026-01-01&created_to=2030-01-01&q=job&sort=name",
        "/?created_from=nonsense",
    ]

    def counts() -> list[int]:
        found = []
        for url in urls:
            with CaptureQueriesContext(connection) as queries:
                viewer_client.get(url)
            found.append(len(queries))
        return found

    few = counts()
    for i in range(30):
        job = make_job(status="completed", failed=1, collection=f"c{i}", store=FLAKY)
        # Older than the first two, so the first page still shows them: the sparklines (not
        # this list's queries) read samples only when a running job is on the page.
        created(job, job.created_at - timedelta(days=1))
    assert counts() == few


def _plan(sql: str, params: Any) -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # A test table is tiny, where a sequential scan wins; at 200k jobs it does not.
            # A full sort is only chosen if nothing else can give the order: enable_sort=off
            # makes it a last resort, so a Sort node left in the plan means no index serves it.
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_sort = off")
            cursor.execute("EXPLAIN " + sql, params)
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
        return "\n".join(" ".join(str(c) for c in row) for row in cursor.fetchall())


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        (ListFilters(), "reindexjob_created_order"),
        (ListFilters(status="completed"), "reindexjob_status_created"),
        (ListFilters(store="sqlite-vec"), "reindexjob_store_created"),
        (ListFilters(collection="products"), "reindexjob_coll_created"),
    ],
)
def test_list__default_order_and_filters_read_an_index_without_sorting_the_table(
    make_job, filters: ListFilters, index: str
) -> None:
    make_job()
    sql, params = filters.jobs()[:25].query.sql_with_params()
    plan = _plan(sql, params)
    assert index in plan, plan
    if connection.vendor == "sqlite":
        assert "USE TEMP B-TREE FOR ORDER BY" not in plan, plan
    else:
        assert not re.search(r"(^|->)\s*Sort\s+\(", plan, re.M), plan  # Incremental Sort is fine


def test_sort__an_unindexed_order_covers_the_newest_matches_past_its_window_and_says_so(
    viewer_client: Client, make_job, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dashboard.list_query.SORT_WINDOW", 3)
    oldest = make_job(status="completed", processed=5, failed=4)  # most failed, but not newest
    newer = [make_job(status="completed", processed=5, failed=n) for n in (1, 3, 2)]
    html = viewer_client.get("/?sort=-failed").content.decode()
    assert row_ids(html) == [newer[1].pk, newer[2].pk, newer[0].pk]
    assert "Sorted among the newest 3 matching jobs" in html
    narrowed = viewer_client.get("/?sort=-failed&status=completed&q=").content.decode()
    assert oldest.pk not in row_ids(narrowed)
    # An indexed order covers every match, and a short list is sorted whole.
    assert len(row_ids(viewer_client.get("/?sort=created").content.decode())) == 4
    monkeypatch.setattr("dashboard.list_query.SORT_WINDOW", 10)
    whole = viewer_client.get("/?sort=-failed").content.decode()
    assert row_ids(whole)[0] == oldest.pk
    assert "Sorted among" not in whole


def test_tabs__count_up_to_the_cap_then_say_there_are_more(
    viewer_client: Client, make_job, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dashboard import list_query

    monkeypatch.setattr(list_query, "COUNT_CAP", 3)
    for _ in range(4):
        make_job()
    make_job(status="failed")
    html = viewer_client.get("/").content.decode()
    tabs = re.findall(r'class="tab[^"]*"[^>]*>(\w+) <span class="count">([^<]*)</span>', html)
    assert dict(tabs)["All"] == "3+"
    assert dict(tabs)["Pending"] == "3+"
    assert dict(tabs)["Failed"] == "1"
    assert len(row_ids(html)) == 3  # the pages cover the counted jobs
