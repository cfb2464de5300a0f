"""The jobs list in a real browser against daphne and a real worker: the selection survives live
row swaps and list refreshes, bulk cancel confirms then reports each job (with htmx and without
JavaScript), and sorting and filters live in the URL, kept by the live refresh."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, Page, expect

from reindexer.jobs import create_job
from reindexer.models import JobStatus, ReindexJob
from reindexer.specs import JobSpec
from tests.browser.servers import Stack

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CANCEL_DEADLINE_MS = 120_000


def log_in(page: Page, stack: Stack, user: User) -> None:
    page.goto(f"{stack.base_url}/accounts/login/")
    page.fill("input[name=username]", user.get_username())
    page.fill("input[name=password]", f"pw-{user.get_username()}")
    page.press("input[name=password]", "Enter")
    page.wait_for_url(f"{stack.base_url}/")


def slow_job(make_corpus: Any, name: str) -> ReindexJob:
    """A job the worker takes minutes over (150 ms a batch of 10), so it runs while we look."""
    make_corpus(3000, "slow.jsonl")
    spec = {
        "source": "jsonl:slow.jsonl",
        "store": "flaky(sqlite-vec,latency=150)",
        "collection": "bulk-slow",
        "batch_size": 10,
        "max_retries": 0,
        "name": name,
    }
    return create_job(JobSpec.parse(spec))


def mark(page: Page, element_id: str) -> None:
    """Tag the element now on the page: a swap brings an untagged one."""
    page.evaluate("id => { document.getElementById(id).dataset.before = 'swap'; }", element_id)


def queue_through_the_site(context: BrowserContext, stack: Stack, name: str) -> int:
    """Queue a job with the "New job" page in another tab: the web process announces it to the
    open pages (with Redis, a job written from this test process would reach no page)."""
    other = context.new_page()
    other.goto(f"{stack.base_url}/jobs/new/")
    form = other.locator("#new-job-form")
    form.locator("[name=source]").fill("jsonl:docs.jsonl")
    form.locator("[name=name]").fill(name)
    form.get_by_role("button", name="Start job").click()
    other.wait_for_url(re.compile(r".*/jobs/\d+/$"))
    job_id = int(other.url.rstrip("/").rsplit("/", 1)[1])
    other.close()
    return job_id


def checkbox(page: Page, job_id: int) -> Any:
    return page.locator(f"#job-row-{job_id} input.row-select")


def test_jobs_list__selection_survives_live_swaps_and_bulk_cancel_reports_each_job(
    stack: Stack, browser_page: Page, operator: User, make_corpus: Any, make_job: Any
) -> None:
    page = browser_page
    done = make_job(status="completed", name="already-done")
    running = slow_job(make_corpus, "bulk-slow")
    log_in(page, stack, operator)
    expect(page.locator(f"#job-row-{running.pk}")).to_have_attribute(
        "data-status", "running", timeout=30_000
    )
    checkbox(page, running.pk).check()
    checkbox(page, done.pk).check()
    count = page.locator("[data-bulk-count]")
    expect(count).to_have_text("2 jobs selected")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))

    # A push replaces the running job's row (out of band): its box stays ticked.
    mark(page, f"job-row-{running.pk}")
    expect(page.locator(f"#job-row-{running.pk}[data-before]")).to_have_count(0, timeout=20_000)
    expect(checkbox(page, running.pk)).to_be_checked()

    # A new job makes the list fetch its panel again: both boxes stay ticked.
    mark(page, "jobs-panel")
    newcomer = queue_through_the_site(page.context, stack, "newcomer")
    expect(page.locator(f"#job-row-{newcomer}")).to_have_count(1, timeout=20_000)
    expect(page.locator("#jobs-panel[data-before]")).to_have_count(0)
    expect(checkbox(page, running.pk)).to_be_checked()
    expect(checkbox(page, done.pk)).to_be_checked()
    expect(checkbox(page, newcomer)).not_to_be_checked()
    expect(count).to_have_text("2 jobs selected")

    # The confirmation says what will happen to each, and nothing happens yet.
    page.get_by_role("button", name="Cancel selected…").click()
    confirm = page.locator("#bulk-confirm")
    expect(confirm).to_contain_text("1 running job will be asked to stop.")
    expect(confirm).to_contain_text("1 finished job cannot be cancelled.")
    assert ReindexJob.objects.get(pk=running.pk).cancel_requested_at is None

    # Confirmed: one outcome per job in the flash area; the refusal did not stop the cancel.
    confirm.get_by_role("button", name="Cancel these jobs").click()
    flash = page.locator("#flash")
    expect(flash).to_contain_text("Bulk cancel: 1 of 2 done.")
    expect(flash).to_contain_text(f"Job #{done.pk} (already-done): refused:")
    expect(flash).to_contain_text(f"Job #{running.pk} (bulk-slow): cancel requested")
    expect(confirm).to_be_empty()
    expect(page.locator(f"#job-row-{running.pk}")).to_have_attribute(
        "data-status", "cancelled", timeout=CANCEL_DEADLINE_MS
    )
    expect(count).to_have_text("Tick jobs to act on several at once.")
    expect(page.locator("input.row-select:checked")).to_have_count(0)
    assert navigations == [], f"the page navigated: {navigations}"
    assert ReindexJob.objects.get(pk=done.pk).status == JobStatus.COMPLETED


def test_jobs_list__bulk_cancel_works_without_javascript(
    stack: Stack, browser_context: BrowserContext, operator: User, make_job: Any
) -> None:
    assert browser_context.browser
    context = browser_context.browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        running = make_job(status="running", name="fixture-running", heartbeat_age=0)
        done = make_job(status="completed", name="fixture-done")
        log_in(page, stack, operator)
        page.goto(f"{stack.base_url}/?status=running")
        checkbox(page, running.pk).check()
        page.get_by_role("button", name="Cancel selected…").click()
        page.wait_for_url(f"{stack.base_url}/jobs/bulk/")
        expect(page.locator("main")).to_contain_text("1 running job will be asked to stop.")
        page.get_by_role("button", name="Cancel these jobs").click()
        page.wait_for_url(f"{stack.base_url}/?status=running")
        expect(page.locator("#flash")).to_contain_text(f"Job #{running.pk} (fixture-running):")
        assert ReindexJob.objects.get(pk=running.pk).cancel_requested_at is not None
        assert ReindexJob.objects.get(pk=done.pk).status == JobStatus.COMPLETED
    finally:
        context.close()


def test_jobs_list__sort_and_filters_live_in_the_url_and_the_live_refresh_keeps_them(
    stack: Stack, browser_page: Page, viewer: User, make_job: Any, browser_context: BrowserContext
) -> None:
    page = browser_page
    beta = make_job(name="beta", collection="products")
    alpha = make_job(name="alpha", collection="products")
    other = make_job(name="aardvark", collection="articles")
    log_in(page, stack, viewer)
    expect(page.locator("input.row-select")).to_have_count(0)  # a viewer has no bulk actions
    expect(page.locator("#bulk-form")).to_have_count(0)

    page.locator("th").get_by_role("link", name="Job").click()
    page.wait_for_url(f"{stack.base_url}/?sort=name")
    expect(page.locator("th[aria-sort]")).to_have_attribute("aria-sort", "ascending")
    page.locator("select[name=collection]").select_option("products")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(f"{stack.base_url}/?collection=products&sort=name")
    rows = page.locator("tr.job-row")
    expect(rows).to_have_count(2)
    assert [rows.nth(i).get_attribute("data-job-id") for i in range(2)] == [
        str(alpha.pk),
        str(beta.pk),
    ]

    # A job appears elsewhere: the list re-fetches its own URL, filters and sort included.
    newcomer = make_job(name="aaron", collection="products")
    make_job(name="abacus", collection="articles")
    expect(rows).to_have_count(3, timeout=20_000)
    expect(rows.first).to_have_attribute("data-job-id", str(newcomer.pk))
    expect(page.locator(f"#job-row-{other.pk}")).to_have_count(0)
    assert page.url == f"{stack.base_url}/?collection=products&sort=name"
    expect(page.locator("select[name=collection]")).to_have_value("products")

    # And it shows what a fresh load of the same URL shows.
    fresh = browser_context.new_page()
    fresh.goto(page.url)
    live_ids = page.locator("tr.job-row").evaluate_all("rows => rows.map(r => r.dataset.jobId)")
    reload_ids = fresh.locator("tr.job-row").evaluate_all("rows => rows.map(r => r.dataset.jobId)")
    assert live_ids == reload_ids
    fresh.close()
