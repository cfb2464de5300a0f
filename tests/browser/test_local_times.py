"""Times on the job page read in the browser's own zone, labelled, with the exact ISO time on
hover; on the first load and on the timeline entries that a live push brings in."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Locator, Page, expect, sync_playwright

from reindexer.jobs import cancel_job, create_job
from reindexer.models import ReindexJob
from reindexer.specs import JobSpec
from tests.browser.servers import OBSERVER_INIT_JS, Stack, launch_chromium

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ZONE = "America/New_York"
LOCAL_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (EST|EDT)$")


@pytest.fixture
def live_mode() -> str:
    """The relay only: the zone does not depend on the channel layer."""
    return "relay"


@pytest.fixture
def new_york_page(chromium: str) -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context(
                viewport={"width": 1400, "height": 1000}, timezone_id=ZONE, locale="en-US"
            )
            context.set_default_timeout(15_000)
            context.add_init_script(OBSERVER_INIT_JS)
            yield context.new_page()
            context.close()
        finally:
            browser.close()


def assert_reads_in_new_york(time: Locator) -> None:
    """Its text is the New York wall clock of its ISO datetime, which its title also holds."""
    iso = time.get_attribute("datetime")
    assert iso is not None
    assert time.get_attribute("title") == iso
    text = time.inner_text()
    assert LOCAL_TIME.match(text), text
    local = datetime.fromisoformat(iso).astimezone(ZoneInfo(ZONE))
    assert text == local.strftime("%Y-%m-%d %H:%M:%S %Z")


def test_local_times__the_job_page_reads_in_the_browsers_zone_also_after_a_live_push(
    stack: Stack, new_york_page: Page, operator: User, make_corpus: Any, tmp_path: Path
) -> None:
    page = new_york_page
    make_corpus(3000, "slow.jsonl")
    spec = {
        "source": "jsonl:slow.jsonl",
        "embedder": "hashing",
        "store": "flaky(sqlite-vec,latency=100)",
        "collection": "zones",
        "batch_size": 10,
        "name": "zones",
    }
    job = create_job(JobSpec.parse(spec))
    try:
        page.goto(f"{stack.base_url}/accounts/login/")
        page.fill("input[name=username]", operator.get_username())
        page.fill("input[name=password]", f"pw-{operator.get_username()}")
        page.press("input[name=password]", "Enter")
        page.wait_for_url(f"{stack.base_url}/")

        page.goto(f"{stack.base_url}/jobs/{job.pk}/")
        created = page.locator("dt:text-is('Created') + dd time")
        expect(created).to_have_text(LOCAL_TIME)
        assert_reads_in_new_york(created)
        timeline = page.locator(f"#job-timeline-{job.pk}")
        expect(timeline.locator("time").first).to_have_text(LOCAL_TIME)

        # The cancel comes after the load, so its timeline entry can only arrive by a push.
        expect(page.locator(f"#job-progress-{job.pk}")).to_have_attribute(
            "data-status", "running", timeout=60_000
        )
        cancel_job(ReindexJob.objects.get(pk=job.pk))
        cancelled = timeline.locator(".event-cancelled time")
        expect(cancelled).to_have_count(1, timeout=60_000)
        expect(cancelled).to_have_text(LOCAL_TIME)
        assert_reads_in_new_york(cancelled)
        for time in timeline.locator("time").all():
            assert_reads_in_new_york(time)
        assert page.evaluate("() => window.__noReload === true"), "the page was reloaded"
    except Exception:
        page.screenshot(path=str(tmp_path / "error.png"), full_page=True)
        print(stack.logs())  # noqa: T201 - pytest shows it with the failure
        raise
