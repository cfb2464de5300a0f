"""The live indicator and the list socket's rows, in a real browser against daphne and a worker:
"disconnected, retrying" while daphne is dead, "live" and the missed change once it is back; and a
list that shows only some jobs gets only their rows (no htmx:oobErrorNoTarget)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Page, expect

from reindexer.jobs import create_job
from reindexer.models import JobStatus, ReindexJob
from reindexer.progress import announce
from reindexer.specs import JobSpec
from tests.browser.conftest import ConsoleErrors
from tests.browser.servers import Stack
from tests.browser.test_dashboard_live import log_in, track_navigations

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DEADLINE_MS = 30_000
# While daphne is dead the browser's reconnect attempts fail: Chromium may log each failed socket
# ("WebSocket connection to 'ws://…' failed"), and htmx's ws extension logs the socket's error
# event with console.error, which reads "[object Event]" from htmx itself. Those are the outage
# the test makes; any other error still fails it.
SOCKET_DOWN_ERRORS = ("WebSocket connection to", "htmx-2.min.js:0): [object Event]")


def running_job(name: str, processed: int = 0) -> int:
    """A running job whose counters this test commits itself (no worker holds it)."""
    return ReindexJob.objects.create(
        name=name,
        source="jsonl:docs.jsonl",
        collection=f"c-{uuid.uuid4().hex}",
        status=JobStatus.RUNNING,
        total_docs=100,
        processed_docs=processed,
        lease_token=uuid.uuid4(),
        worker="test-worker",
        heartbeat_at=timezone.now(),
        started_at=timezone.now(),
    ).pk


def commit(job_id: int, processed: int) -> None:
    """A batch commit as the worker makes it, then its announcement (Redis) or nothing (relay)."""
    ReindexJob.objects.filter(pk=job_id).update(
        processed_docs=processed, heartbeat_at=timezone.now(), updated_at=timezone.now()
    )
    announce(job_id)


def indicator(page: Page) -> Any:
    return page.locator("#live-status")


def kill_then_restart(stack: Stack, page: Page, change: Any) -> None:
    expect(indicator(page)).to_have_attribute("data-live", "live")
    stack.kill_daphne()
    expect(indicator(page)).to_have_text("disconnected, retrying", timeout=DEADLINE_MS)
    expect(indicator(page)).to_have_attribute("data-live", "disconnected")
    change()
    stack.start_daphne()
    expect(indicator(page)).to_have_text("live", timeout=DEADLINE_MS)


def test_live_indicator__list_says_disconnected_then_live_and_shows_what_changed_meanwhile(
    stack: Stack,
    browser_page: Page,
    console_errors: ConsoleErrors,
    operator: User,
    make_corpus: Any,
    tmp_path: Path,
) -> None:
    console_errors.allow(*SOCKET_DOWN_ERRORS)
    page = browser_page
    make_corpus(20, "docs.jsonl")
    log_in(page, stack, operator)
    navigations = track_navigations(page)
    queued: list[int] = []

    def queue_elsewhere() -> None:
        queued.append(create_job(JobSpec(source="jsonl:docs.jsonl", name="while-down")).pk)

    kill_then_restart(stack, page, queue_elsewhere)
    # The catch-up on reconnect re-fetches the panel: the job queued meanwhile is there.
    expect(page.locator(f"#job-row-{queued[0]}")).to_have_count(1, timeout=DEADLINE_MS)
    assert navigations == [], f"the page navigated: {navigations}"
    page.screenshot(path=str(tmp_path / "list-reconnected.png"), full_page=True)


def test_live_indicator__detail_page_says_disconnected_then_live_and_catches_up(
    stack: Stack,
    browser_page: Page,
    console_errors: ConsoleErrors,
    operator: User,
) -> None:
    console_errors.allow(*SOCKET_DOWN_ERRORS)
    page = browser_page
    job_id = running_job("followed", processed=10)
    log_in(page, stack, operator)
    page.goto(f"{stack.base_url}/jobs/{job_id}/")
    navigations = track_navigations(page)
    bar = page.locator(f"#job-progress-{job_id}").get_by_role("progressbar")
    expect(bar).to_have_attribute("aria-valuenow", "10")

    kill_then_restart(stack, page, lambda: commit(job_id, 70))
    expect(bar).to_have_attribute("aria-valuenow", "70", timeout=DEADLINE_MS)
    # And it follows on after the reconnect.
    commit(job_id, 90)
    expect(bar).to_have_attribute("aria-valuenow", "90", timeout=DEADLINE_MS)
    assert navigations == [], f"the page navigated: {navigations}"


def test_list_socket__a_search_that_hides_a_running_job__updates_its_rows_without_console_errors(
    stack: Stack, browser_page: Page, operator: User
) -> None:
    page = browser_page
    shown = running_job("shown-job")
    hidden = running_job("hidden-job")
    log_in(page, stack, operator)
    page.goto(f"{stack.base_url}/?q=shown-job")
    expect(page.locator(f"#job-row-{shown}")).to_have_count(1)
    expect(page.locator(f"#job-row-{hidden}")).to_have_count(0)
    navigations = track_navigations(page)
    for percent in range(5, 55, 5):
        commit(hidden, percent)
        commit(shown, percent)
        time.sleep(0.1)  # a batch's pace, so that several pushes go out
    bar = page.locator(f"#job-row-{shown}").get_by_role("progressbar")
    expect(bar).to_have_attribute("aria-valuenow", "50", timeout=DEADLINE_MS)
    expect(page.locator(f"#job-row-{hidden}")).to_have_count(0)
    assert navigations == [], f"the page navigated: {navigations}"
    # Any htmx:oobErrorNoTarget for the hidden job's row fails the test (console_errors).
