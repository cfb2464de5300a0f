"""The dashboard in a real browser against daphne and a real worker: live progress without reloads
(jobs list and job page sockets), cancelling, and reading a failure's traceback; with the relay and
with Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from reindexer.jobs import create_job as create_job_elsewhere
from reindexer.models import EventKind, JobStatus, ReindexJob
from reindexer.specs import JobSpec
from tests.browser.servers import Stack

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

POISONED = "doc-7"
SLOW_BATCH_SIZE = 10
CANCEL_DEADLINE_MS = 120_000


def log_in(page: Page, stack: Stack, user: User) -> None:
    page.goto(f"{stack.base_url}/accounts/login/")
    page.fill("input[name=username]", user.get_username())
    page.fill("input[name=password]", f"pw-{user.get_username()}")
    page.press("input[name=password]", "Enter")
    page.wait_for_url(f"{stack.base_url}/")


def create_job(page: Page, **fields: str) -> int:
    """Submit the list page's "New job" form (htmx: the page stays, the new row appears on top)."""
    form = page.locator("#new-job-form")
    if not form.is_visible():
        page.locator("summary", has_text="New job").click()
    for name, value in fields.items():
        form.locator(f"[name={name}]").fill(value)
    form.get_by_role("button", name="Start job").click()
    row = page.locator("tr[data-job-id]", has_text=fields["name"])
    expect(row).to_have_count(1)
    job_id = row.get_attribute("data-job-id")
    assert job_id
    return int(job_id)


def seen_values(page: Page, element_id: str) -> list[int]:
    """The aria-valuenow values the page's observer saw on that element, in order."""
    records: list[dict[str, Any]] = page.evaluate("() => window.__progress || []")
    return [r["value"] for r in records if r["el"] == element_id]


def track_navigations(page: Page) -> list[str]:
    urls: list[str] = []
    page.on(
        "framenavigated", lambda frame: urls.append(frame.url) if frame == page.main_frame else None
    )
    return urls


def test_dashboard__live_progress_cancel_and_failure_traceback(
    stack: Stack,
    browser_page: Page,
    operator: User,
    make_corpus: Any,
    tmp_path: Path,
    live_mode: str,
) -> None:
    page = browser_page
    make_corpus(300, "steady.jsonl")
    make_corpus(3000, "slow.jsonl")
    try:
        # 1. Log in through Django's form; the list page opens its socket.
        log_in(page, stack, operator)
        expect(page.locator("[ws-connect]")).to_have_count(1)
        navigations = track_navigations(page)

        # 2. A job on a slow store with a poisoned document: its row's bar rises live.
        steady = create_job(
            page,
            source="jsonl:steady.jsonl",
            embedder="hashing",
            store=f"flaky(sqlite-vec,latency=100,poison={POISONED})",
            collection="browser",
            batch_size="10",
            max_retries="0",
            name="browser-steady",
        )
        row = page.locator(f"#job-row-{steady}")
        expect(row).to_have_attribute("data-status", "completed", timeout=30_000)
        expect(row.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
        values = seen_values(page, f"job-row-{steady}")
        assert len(set(values)) >= 4, f"saw only {values} before completion ({live_mode})"
        assert values == sorted(values), f"progress went backwards: {values}"
        assert navigations == [], f"the page navigated: {navigations}"
        assert page.evaluate("() => window.__noReload === true")
        page.screenshot(path=str(tmp_path / "1-completed.png"), full_page=True)

        # 3. A long job, followed on its own page and cancelled there once it is running.
        slow = create_job(
            page,
            source="jsonl:slow.jsonl",
            embedder="hashing",
            store="flaky(sqlite-vec,latency=150)",
            collection="browser-slow",
            batch_size=str(SLOW_BATCH_SIZE),
            max_retries="0",
            name="browser-slow",
        )
        page.locator(f"#job-row-{slow}").get_by_role("link", name="browser-slow").click()
        page.wait_for_url(f"{stack.base_url}/jobs/{slow}/")
        navigations = track_navigations(page)
        block = page.locator(f"#job-progress-{slow}")
        expect(block).to_have_attribute("data-status", "running", timeout=15_000)
        expect(block.get_by_role("progressbar")).not_to_have_attribute("aria-valuenow", "0")
        page.once("dialog", lambda dialog: dialog.accept())
        block.get_by_role("button", name="Cancel").click()
        # A generous deadline that returns as soon as the page shows it; the speed is in
        # `make bench` (bench/latency.py), not here.
        expect(block).to_have_attribute("data-status", "cancelled", timeout=CANCEL_DEADLINE_MS)
        assert len(seen_values(page, f"job-progress-{slow}")) >= 2, "no live change seen"
        assert navigations == [], f"the page navigated: {navigations}"
        page.screenshot(path=str(tmp_path / "2-cancelled.png"), full_page=True)
        job = ReindexJob.objects.get(pk=slow)
        assert job.status == JobStatus.CANCELLED
        assert 0 < job.processed_docs < 3000
        # It stopped at a batch boundary, after the request was recorded.
        assert job.processed_docs % SLOW_BATCH_SIZE == 0, job.processed_docs
        kinds = list(job.events.order_by("at", "id").values_list("kind", flat=True))
        assert kinds.index(EventKind.CANCEL_REQUESTED) < kinds.index(EventKind.CANCELLED), kinds
        assert kinds[-1] == EventKind.CANCELLED, kinds

        # 4. The poisoned document's failure, and its traceback, on the first job's page.
        page.goto(f"{stack.base_url}/jobs/{steady}/")
        failure = page.locator("tbody.failure")
        expect(failure).to_have_count(1)
        failure.get_by_role("link", name="Details").click()
        expect(page.locator("pre.traceback")).to_contain_text("Traceback (most recent call last)")
        expect(page.locator("ul.doc-ids")).to_contain_text(POISONED)
        page.screenshot(path=str(tmp_path / "3-failure.png"), full_page=True)

        # 5. A job queued elsewhere (the command line, the API) appears in an open list, and the
        #    tab counts follow, without a reload.
        page.goto(f"{stack.base_url}/")
        all_tab = page.locator("nav.tabs a", has_text="All").locator(".count")
        expect(all_tab).to_have_text(str(ReindexJob.objects.count()))
        navigations = track_navigations(page)
        elsewhere = create_job_elsewhere(JobSpec(source="jsonl:steady.jsonl", name="elsewhere"))
        expect(page.locator(f"#job-row-{elsewhere.pk}")).to_have_count(1, timeout=10_000)
        expect(all_tab).to_have_text(str(ReindexJob.objects.count()))
        assert navigations == [], f"the page navigated: {navigations}"
        page.screenshot(path=str(tmp_path / "4-queued-elsewhere.png"), full_page=True)
    except Exception:
        page.screenshot(path=str(tmp_path / "error.png"), full_page=True)
        print(stack.logs())  # noqa: T201 - pytest shows it with the failure
        raise
