"""The rate limit of a running job, changed from its page: the limit beside the rate, in its
panel, on its chart and in its settings follows at once, on this page and by push on another one
kept open, without a reload; a change made elsewhere (as the API or the command line make it)
reaches both pages; each equals a fresh load; and no page logs an error. In both live modes."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, Page, expect

from reindexer.jobs import cancel_job, create_job, set_throttle
from reindexer.models import EventKind, JobEvent, JobStatus, ReindexJob
from reindexer.specs import JobSpec
from tests.browser.conftest import ConsoleErrors
from tests.browser.servers import Stack
from tests.browser.test_dashboard_live import log_in
from tests.browser.test_live_equals_reload import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DOCS = 3000
# Batches of 10 that each take 100 ms in the store: at most about 100 docs/s without a limit, so
# the job is still running whether the pacer holds it at its limit or not.
STORE = "flaky(sqlite-vec,latency=100)"
SETTLE_S = 8.0  # a push, or the hub's 5 s tick, reaching the page

READ_JS = """
(id) => {
  const q = (s) => document.querySelector(s);
  const text = (s) => {
    const e = q(s);
    return e ? e.textContent.replace(/\\s+/g, ' ').trim() : null;
  };
  const panel = q('#job-throttle-' + id), chart = q('#job-chart-' + id);
  return {
    panel: text('#job-throttle-' + id + ' .throttle-limit'),
    panel_limit: panel ? panel.dataset.limit : null,
    beside_rate: text('#job-progress-' + id + ' .rate-limit'),
    chart_label: text('#job-chart-' + id + ' .limit-label'),
    chart_limit: chart ? chart.dataset.limit : null,
    settings: text('#job-settings-' + id + ' .settings-limit'),
  };
}
"""


def read(page: Page, job_id: int) -> Any:
    return page.evaluate(READ_JS, job_id)


def expected_for(limit: str) -> dict[str, str]:
    return {
        "panel": f"{limit} docs/s",
        "panel_limit": f"{float(limit)}",
        "beside_rate": f"(limit {limit})",
        "chart_label": f"limit {limit}",
        "chart_limit": f"{float(limit)}",
        "settings": f"{limit} docs/s",
    }


def shows(page: Page, job_id: int, limit: str, what: str) -> None:
    """Waits (no reload) until the page shows `limit` everywhere it shows the limit."""
    expected = expected_for(limit)
    give_up = time.monotonic() + SETTLE_S
    while (shown := read(page, job_id)) != expected:
        assert time.monotonic() < give_up, f"{what}: shows {shown}, not {expected}"
        time.sleep(0.1)


def equals_a_reload(context: BrowserContext, live: Page, job_id: int, what: str) -> None:
    fresh = context.new_page()
    try:
        fresh.goto(live.url)
        expect(fresh.locator("#live-status")).to_have_attribute("data-live", "live")
        expect(fresh.locator(f"#job-chart-{job_id} svg.rate-chart")).to_be_visible()
        reloaded = read(fresh, job_id)
    finally:
        fresh.close()
    assert read(live, job_id) == reloaded, f"{what}: the live page differs from a reload"


def test_rate_limit__changed_on_a_running_job__follows_live_and_equals_a_reload(
    stack: Stack,
    browser_context: BrowserContext,
    console_errors: ConsoleErrors,
    operator: User,
    viewer: User,
    make_corpus: Any,
) -> None:
    make_corpus(DOCS, "throttled.jsonl")
    job = create_job(
        JobSpec(
            source="jsonl:throttled.jsonl",
            store=STORE,
            collection=f"throttled_{stack.port}",
            batch_size=10,
            max_docs_per_second=20,
            name="throttled-live",
        )
    )
    wait_until(
        lambda: ReindexJob.objects.get(pk=job.pk).processed_docs >= 20, "the job under way", 60
    )

    page = browser_context.new_page()
    log_in(page, stack, operator)
    page.goto(f"{stack.base_url}/jobs/{job.pk}/")
    expect(page.locator("#live-status")).to_have_attribute("data-live", "live")
    # The chart draws once the job has samples.
    expect(page.locator(f"#job-chart-{job.pk} svg.rate-chart")).to_be_visible(timeout=30_000)
    shows(page, job.pk, "20", "at first")

    # A viewer's page, kept open: it learns of the change by push alone, and has no control.
    other_context = browser_context.browser.new_context() if browser_context.browser else None
    assert other_context is not None
    other_errors = ConsoleErrors(other_context)
    try:
        watcher = other_context.new_page()
        log_in(watcher, stack, viewer)
        watcher.goto(f"{stack.base_url}/jobs/{job.pk}/")
        expect(watcher.locator("#live-status")).to_have_attribute("data-live", "live")
        expect(watcher.locator(f"#job-chart-{job.pk} svg.rate-chart")).to_be_visible()
        assert watcher.locator(f"#job-throttle-{job.pk} form").count() == 0
        shows(watcher, job.pk, "20", "the viewer, at first")

        # The operator changes it in the control.
        control = page.locator(f"#job-throttle-{job.pk}")
        control.locator("input[name=max_docs_per_second]").fill("35")
        control.get_by_role("button", name="Set limit").click()
        expect(page.locator("#flash")).to_contain_text(
            f"Job {job.pk}: limit changed from 20 to 35 docs/s."
        )
        shows(page, job.pk, "35", "after Set limit")
        shows(watcher, job.pk, "35", "the viewer, after Set limit")
        equals_a_reload(browser_context, page, job.pk, "after Set limit")

        # A change made elsewhere (the API and the command line go through set_throttle too).
        set_throttle(ReindexJob.objects.get(pk=job.pk), 15, user=operator)
        shows(page, job.pk, "15", "after a change elsewhere")
        shows(watcher, job.pk, "15", "the viewer, after a change elsewhere")
        equals_a_reload(browser_context, page, job.pk, "after a change elsewhere")

        # An invalid rate is refused beside the control (422, which Chromium logs as a failed
        # load: that one is expected); the limit stays.
        console_errors.allow(
            f"/jobs/{job.pk}/throttle/:0): Failed to load resource: the server responded with a"
            " status of 422"
        )
        control.locator("input[name=max_docs_per_second]").fill("2000000")
        control.get_by_role("button", name="Set limit").click()
        expect(control.locator(".throttle-error")).to_contain_text(
            "between 0 and 1,000,000 documents per second"
        )
        shows(page, job.pk, "15", "after an invalid rate")

        # No limit: the line and the figures go, on both pages.
        control.get_by_role("button", name="No limit").click()
        expect(page.locator(f"#job-throttle-{job.pk} .throttle-limit")).to_have_text("No limit")
        for shown_on in (page, watcher):
            expect(shown_on.locator(f"#job-chart-{job.pk} .limit-line")).to_have_count(0)
            expect(shown_on.locator(f"#job-progress-{job.pk} .rate-limit")).to_have_count(0)
            expect(shown_on.locator(f"#job-settings-{job.pk} .settings-limit")).to_have_text("none")
        equals_a_reload(browser_context, page, job.pk, "after No limit")
        assert other_errors.unexpected() == []
    finally:
        other_context.close()

    details = list(
        JobEvent.objects.filter(job_id=job.pk, kind=EventKind.THROTTLED)
        .order_by("at", "id")
        .values_list("actor", "detail")
    )
    assert details == [
        ("operator", "limit changed from 20 to 35 docs/s"),
        ("operator", "limit changed from 35 to 15 docs/s"),
        ("operator", "limit lifted"),
    ]
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.max_docs_per_second is None
    cancel_job(job)  # the rest of the corpus is not this test's concern
