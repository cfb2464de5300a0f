"""The rule "live equals reload": a job page and the jobs list, kept open from before a job starts
until it ends, show at every moment what a freshly loaded page shows, panel by panel.

The worker is paused (SIGSTOP) at each moment of comparison, so that the job stands still while
the live page settles and a fresh page is read; only the figures that tick with the clock (rate,
ETA, elapsed, heartbeat age) are masked, and only while the job runs.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import OperationalError, connection, transaction
from playwright.sync_api import BrowserContext, Page, expect

from reindexer.jobs import create_job
from reindexer.models import JobStatus, ReindexJob
from reindexer.specs import JobSpec
from tests.browser.conftest import ConsoleErrors
from tests.browser.servers import Stack
from tests.browser.test_dashboard_live import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DOCS = 100
FLAKY = "flaky(sqlite-vec,poison=doc-3,poison=doc-17,transient=0.2,seed=5,latency=80)"
SLOW = "flaky(sqlite-vec,latency=150)"
# Time for the last push (or, on Redis after a missed publish, the 5 s tick) to reach the page.
SETTLE_S = 8.0
DEADLINE_MS = 60_000
SQLITE_BUSY_MS = 20_000  # the project's own (reindexer/settings.py)
TICKING = ("Rate", "ETA", "Elapsed", "Heartbeat")  # the progress block's <dt> labels
TICKING_ROW_CELLS = (6, 7, 8, 9)  # rate, ETA, elapsed, heartbeat in a jobs row (after select)

# Reads a panel's text, with the fields that tick masked when asked; whitespace is collapsed so
# that only what a reader sees is compared.
READ_JS = """
([selector, mask, maskLabels, maskCells]) => {
  const el = document.querySelector(selector);
  if (!el) return null;
  const copy = el.cloneNode(true);
  if (mask) {
    for (const div of copy.querySelectorAll('dl.stats > div')) {
      const dt = div.querySelector('dt');
      const ticks = dt && maskLabels.includes(dt.textContent.trim());
      if (ticks) div.querySelector('dd').textContent = '*';
    }
    if (copy.tagName === 'TR') {
      copy.querySelectorAll(':scope > td').forEach((td, i) => {
        if (maskCells.includes(i)) td.textContent = '*';
      });
    }
  }
  return copy.textContent.replace(/\\s+/g, ' ').trim();
}
"""


@contextlib.contextmanager
def paused(stack: Stack, job_id: int | None = None) -> Iterator[None]:
    """The worker stopped where it stands (its job, lease and heartbeat frozen), then resumed.

    Never inside one of its transactions: the test's own writes (a new job, a cancel) would
    wait for a lock that a stopped process never releases."""
    worker = stack.processes["worker"]
    for _ in range(50):
        worker.send_signal(signal.SIGSTOP)
        if holds_no_lock(job_id):
            break
        worker.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    else:
        pytest.fail("the worker never stopped outside a transaction")
    try:
        yield
    finally:
        worker.send_signal(signal.SIGCONT)


def holds_no_lock(job_id: int | None) -> bool:
    """Whether this process can take the database's write lock (SQLite) or the job's row lock
    (PostgreSQL) at once."""
    try:
        if connection.vendor == "sqlite":
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA busy_timeout = 200")
            try:
                with transaction.atomic():  # BEGIN IMMEDIATE: the write lock
                    pass
            finally:
                with connection.cursor() as cursor:
                    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS}")
        elif job_id is not None:
            with transaction.atomic():
                list(ReindexJob.objects.select_for_update(nowait=True).filter(pk=job_id))
    except OperationalError:
        return False
    return True


def detail_panels(job_id: int) -> list[str]:
    return [
        f"#job-progress-{job_id}",
        f"#job-failures-{job_id}",
        f"#job-settings-{job_id}",
        f"#job-timeline-{job_id}",
    ]


def list_panels(job_id: int) -> list[str]:
    return [f"#job-row-{job_id}", "nav.tabs"]


def read(page: Page, selectors: list[str], *, mask: bool) -> dict[str, str | None]:
    return {
        selector: page.evaluate(READ_JS, [selector, mask, list(TICKING), list(TICKING_ROW_CELLS)])
        for selector in selectors
    }


def reloaded(context: BrowserContext, url: str, selectors: list[str], *, mask: bool) -> Any:
    """The same panels on a page loaded afresh (after its socket's first state, which it must not
    change either), read and closed."""
    fresh = context.new_page()
    try:
        fresh.goto(url)
        expect(fresh.locator("#live-status")).to_have_attribute("data-live", "live")
        return read(fresh, selectors, mask=mask)
    finally:
        fresh.close()


def assert_live_equals_reload(
    context: BrowserContext, pages: dict[str, list[str]], moment: str, *, mask: bool
) -> None:
    """Each open page (url → its panels) shows what a reload shows, once the pushes settle."""
    for url_page, selectors in pages.items():
        page = next(p for p in context.pages if p.url == url_page)
        give_up = time.monotonic() + SETTLE_S
        while True:
            expected = reloaded(context, url_page, selectors, mask=mask)
            shown = read(page, selectors, mask=mask)
            if shown == expected or time.monotonic() > give_up:
                break
            page.wait_for_timeout(500)  # a push may still be on its way
        for selector in selectors:
            assert expected[selector] is not None, f"{moment}: {selector} missing after a reload"
            assert shown[selector] == expected[selector], (
                f"{moment}: {url_page} {selector} differs from a reload\n"
                f"  live:   {shown[selector]}\n  reload: {expected[selector]}"
            )


def processed(job_id: int) -> int:
    return ReindexJob.objects.values_list("processed_docs", flat=True).get(pk=job_id)


def wait_until(predicate: Any, what: str, timeout_s: float = DEADLINE_MS / 1000) -> None:
    give_up = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < give_up, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_job_page_and_list__kept_open_through_failures_retries_and_a_cancel__equal_a_reload(
    stack: Stack,
    browser_context: BrowserContext,
    console_errors: ConsoleErrors,
    operator: User,
    make_corpus: Any,
) -> None:
    make_corpus(DOCS, "flaky.jsonl")
    make_corpus(3000, "slow.jsonl")
    listing = browser_context.new_page()
    log_in(listing, stack, operator)
    detail = browser_context.new_page()
    list_url = f"{stack.base_url}/"

    try:
        # 1. A job with failures and retries, queued while the worker is held: both pages open
        #    before it starts.
        with paused(stack):
            flaky = create_job(
                JobSpec(
                    source="jsonl:flaky.jsonl",
                    store=FLAKY,
                    collection="live-equals-reload",
                    batch_size=5,
                    max_retries=2,
                    max_failed_ratio=1.0,
                    name="live-equals-reload",
                )
            ).pk
            detail_url = f"{stack.base_url}/jobs/{flaky}/"
            detail.goto(detail_url)
            expect(listing.locator(f"#job-row-{flaky}")).to_have_count(1, timeout=DEADLINE_MS)
            pages = {detail_url: detail_panels(flaky), list_url: list_panels(flaky)}
            assert_live_equals_reload(browser_context, pages, "queued", mask=False)

        # 2. At moments during the run, the first after the first poisoned document.
        for share in (0.3, 0.7):
            target = DOCS * share
            wait_until(lambda: processed(flaky) >= target, f"{share:.0%} processed")  # noqa: B023
            with paused(stack, flaky):
                job = ReindexJob.objects.get(pk=flaky)
                if job.status == JobStatus.RUNNING:
                    assert_live_equals_reload(
                        browser_context, pages, f"running at {job.processed_docs}", mask=True
                    )

        # 3. At the end, every figure frozen: nothing is masked.
        expect(detail.locator(f"#job-progress-{flaky}")).to_have_attribute(
            "data-status", "completed", timeout=DEADLINE_MS
        )
        job = ReindexJob.objects.get(pk=flaky)
        assert job.failed_docs >= 2 and job.retries >= 1, (job.failed_docs, job.retries)
        assert_live_equals_reload(browser_context, pages, "completed", mask=False)

        # 4. A second job, cancelled from its page: while cancelling, and once cancelled.
        with paused(stack):
            slow = create_job(
                JobSpec(
                    source="jsonl:slow.jsonl",
                    store=SLOW,
                    collection="live-equals-reload-slow",
                    batch_size=10,
                    name="live-equals-reload-slow",
                )
            ).pk
            detail_url = f"{stack.base_url}/jobs/{slow}/"
            detail.goto(detail_url)
            expect(listing.locator(f"#job-row-{slow}")).to_have_count(1, timeout=DEADLINE_MS)
        pages = {detail_url: detail_panels(slow), list_url: list_panels(slow)}
        block = detail.locator(f"#job-progress-{slow}")
        expect(block).to_have_attribute("data-status", "running", timeout=DEADLINE_MS)
        with paused(stack, slow):
            detail.once("dialog", lambda dialog: dialog.accept())
            block.get_by_role("button", name="Cancel").click()
            expect(block.locator(".badge", has_text="cancelling")).to_have_count(1)
            assert_live_equals_reload(browser_context, pages, "cancelling", mask=True)
        expect(block).to_have_attribute("data-status", "cancelled", timeout=DEADLINE_MS)
        assert_live_equals_reload(browser_context, pages, "cancelled", mask=False)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.logs()}") from None
