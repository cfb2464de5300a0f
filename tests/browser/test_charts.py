"""The pictures in a real browser, against daphne and a real worker running a real flaky job: the
detail page's rate chart follows the job live and ends equal to a reload; the list's running row
has a sparkline and the summary tiles follow the job; no console error, no CSP violation."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, Page, expect

from reindexer.jobs import create_job
from reindexer.models import JobStatus, ReindexJob
from reindexer.specs import JobSpec
from tests.browser.conftest import ConsoleErrors
from tests.browser.servers import Stack
from tests.browser.test_dashboard_live import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DOCS = 1500
FLAKY = "flaky(sqlite-vec,poison=doc-40,poison=doc-900,transient=0.2,seed=3,latency=60)"
DEADLINE_MS = 120_000
SETTLE_S = 8.0

CHART_POINTS_JS = """(id) => {
  const line = document.querySelector(`#job-chart-${id} .rate-line`);
  return line ? line.getAttribute('points') : null;
}"""
STYLED_JS = (
    "(selector) => document.querySelectorAll(`${selector} [style], ${selector}[style]`).length"
)


def tiles_text(page: Page) -> dict[str, str]:
    texts: dict[str, str] = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#summary-tiles [data-tile]')]
              .map(t => [t.dataset.tile, t.querySelector('.tile-value').textContent.trim()]))"""
    )
    return texts


def outer_html(page: Page, selector: str) -> str | None:
    html: str | None = page.evaluate(
        "(s) => { const el = document.querySelector(s); return el ? el.outerHTML : null; }",
        selector,
    )
    return html


def equals_a_reload(context: BrowserContext, page: Page, selector: str) -> tuple[Any, Any]:
    """The element on the open page and on a fresh load of it, once the pushes settle."""
    give_up = time.monotonic() + SETTLE_S
    while True:
        fresh = context.new_page()
        try:
            fresh.goto(page.url)
            expect(fresh.locator("#live-status")).to_have_attribute("data-live", "live")
            expected = outer_html(fresh, selector)
        finally:
            fresh.close()
        shown = outer_html(page, selector)
        if shown == expected or time.monotonic() > give_up:
            return shown, expected
        page.wait_for_timeout(500)


def test_charts__follow_a_flaky_job_live_and_equal_a_reload(
    stack: Stack,
    browser_context: BrowserContext,
    browser_page: Page,
    console_errors: ConsoleErrors,
    operator: User,
    make_corpus: Any,
) -> None:
    make_corpus(DOCS, "charts.jsonl")
    listing = browser_page
    log_in(listing, stack, operator)
    try:
        job_id = create_job(
            JobSpec(
                source="jsonl:charts.jsonl",
                store=FLAKY,
                collection="charts",
                batch_size=10,
                max_retries=2,
                max_failed_ratio=1.0,
                name="charts <&> job",
            )
        ).pk
        detail = browser_context.new_page()
        detail.goto(f"{stack.base_url}/jobs/{job_id}/")
        expect(detail.locator("#live-status")).to_have_attribute("data-live", "live")
        listing.goto(f"{stack.base_url}/")
        expect(listing.locator("#live-status")).to_have_attribute("data-live", "live")

        # The running row draws its sparkline and current rate; the tiles count it as running.
        row = listing.locator(f"#job-row-{job_id}")
        expect(row).to_have_attribute("data-status", "running", timeout=DEADLINE_MS)
        expect(row.locator("svg.sparkline polyline")).to_have_count(1, timeout=DEADLINE_MS)
        expect(row.locator(".rate-now")).to_contain_text("now")
        expect(listing.locator('#summary-tiles [data-tile="running"] .tile-value')).to_have_text(
            "1", timeout=DEADLINE_MS
        )

        # The chart appears and keeps changing on the open page, without a reload.
        expect(detail.locator(f"#job-chart-{job_id} .rate-line")).to_have_count(
            1, timeout=DEADLINE_MS
        )
        first = detail.evaluate(CHART_POINTS_JS, job_id)
        detail.wait_for_function(
            f"(first) => ({CHART_POINTS_JS})({job_id}) !== first", arg=first, timeout=DEADLINE_MS
        )
        assert detail.evaluate("() => window.__noReload") is True

        # The job ends: the open pages follow, and equal a reload.
        expect(detail.locator(f"#job-progress-{job_id}")).to_have_attribute(
            "data-status", JobStatus.COMPLETED, timeout=DEADLINE_MS
        )
        job = ReindexJob.objects.get(pk=job_id)
        assert job.failed_docs == 2 and job.retries > 0, "the flaky store should fail and retry"
        expect(listing.locator('#summary-tiles [data-tile="running"] .tile-value')).to_have_text(
            "0", timeout=DEADLINE_MS
        )
        expect(row.locator("svg.sparkline")).to_have_count(0, timeout=DEADLINE_MS)

        chart = f"#job-chart-{job_id}"
        shown, expected = equals_a_reload(browser_context, detail, chart)
        assert shown == expected, f"the live chart differs from a reload\n{shown}\n{expected}"
        assert detail.locator(f"{chart} .failure-mark").count() >= 1
        assert detail.locator(f"{chart} .retry-band").count() >= 1
        expect(detail.locator(f"{chart} svg title").first).to_contain_text("charts <&> job")

        shown, expected = equals_a_reload(browser_context, listing, "#summary-tiles")
        assert shown == expected, f"the live tiles differ from a reload\n{shown}\n{expected}"
        assert tiles_text(listing)["running"] == "0"

        # The CSP forbids style attributes: the pictures use classes and SVG attributes only.
        for page, selector in (
            (detail, chart),
            (listing, "#summary-tiles"),
            (listing, "#job-rows"),
        ):
            assert page.evaluate(STYLED_JS, selector) == 0, selector
    except Exception:
        print(stack.logs())  # noqa: T201
        raise
