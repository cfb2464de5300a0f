"""Swap, Discard, Rollback and Prune in the browser, on real swap jobs run by the stack's worker
into a real sqlite-vec store, in both live modes: a job started with manual approval reaches
"awaiting approval" on its page live, its verification shown; the operator clicks Swap and
confirms, and the page goes to completed live; the aliases page shows the alias serving the new
collection, Rollback moves it back and Prune drops the collection it left; Discard ends another
job. At each step the live page equals a fresh load, and no page logs an error."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, Dialog, Page, expect

from reindexer.jobs import create_job
from reindexer.models import JobStatus, ReindexJob
from reindexer.specs import JobSpec
from tests.browser.conftest import ConsoleErrors
from tests.browser.servers import Stack
from tests.browser.test_dashboard_live import log_in
from tests.browser.test_live_equals_reload import assert_live_equals_reload, wait_until
from tests.dashboard.swap_jobs import ALIAS, STORE, built, collections, serves

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DOCS = 60
DEADLINE_MS = 60_000

# The job block's state as markup hooks give it, for the live-equals-reload comparison.
STATE_JS = """
(id) => {
  const of = (s) => {
    const e = document.querySelector(s);
    return e ? [e.dataset.status, e.dataset.phase] : null;
  };
  return {progress: of('#job-progress-' + id), swap: of('#job-swap-' + id)};
}
"""

CARD_JS = """
(s) => {
  const e = document.querySelector(s);
  return e ? [e.dataset.serves, e.textContent.replace(/\\s+/g, ' ').trim()] : null;
}
"""


def start_swap(make_corpus: Any, name: str, *, approve: str, **spec: Any) -> ReindexJob:
    make_corpus(DOCS, name=f"{name}.jsonl")
    fields = {"source": f"jsonl:{name}.jsonl", "collection": ALIAS, "mode": "swap"}
    return create_job(
        JobSpec.parse({**fields, "approve": approve, "batch_size": 10, "name": name, **spec})
    )


def status_of(job: ReindexJob) -> str:
    return ReindexJob.objects.get(pk=job.pk).status


def confirm(page: Page) -> list[str]:
    """Accept the next confirmation; what it asked is appended to the list returned."""
    asked: list[str] = []

    def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    return asked


def state_equals_a_reload(context: BrowserContext, live: Page, job_id: int, moment: str) -> None:
    fresh = context.new_page()
    try:
        fresh.goto(live.url)
        expect(fresh.locator("#live-status")).to_have_attribute("data-live", "live")
        reloaded = fresh.evaluate(STATE_JS, job_id)
    finally:
        fresh.close()
    assert live.evaluate(STATE_JS, job_id) == reloaded, f"{moment}: the live state differs"


def panels(job_id: int) -> list[str]:
    return [
        f"#job-progress-{job_id}",
        f"#job-swap-{job_id}",
        f"#job-settings-{job_id}",
        f"#job-timeline-{job_id}",
    ]


def test_swap_then_rollback_then_prune_then_discard__each_live_and_equal_to_a_reload(
    stack: Stack,
    browser_context: BrowserContext,
    console_errors: ConsoleErrors,
    operator: User,
    make_corpus: Any,
) -> None:
    first = start_swap(make_corpus, "first", approve="auto")
    wait_until(lambda: status_of(first) == JobStatus.COMPLETED, "the first swap", 60)
    assert serves() == built(first)

    # Held by its rate limit, so that its page is open well before it is verified.
    second = start_swap(make_corpus, "second", approve="manual", max_docs_per_second=15)
    page = browser_context.new_page()
    log_in(page, stack, operator)
    detail = f"{stack.base_url}/jobs/{second.pk}/"
    page.goto(detail)
    expect(page.locator("#live-status")).to_have_attribute("data-live", "live")
    swap_panel = page.locator(f"#job-swap-{second.pk}")
    assert swap_panel.get_attribute("data-status") in ("pending", "running")
    expect(swap_panel.get_by_role("button", name="Swap", exact=True)).to_have_count(0)

    # Awaiting approval, live: the badge, the verification, and the two buttons.
    expect(swap_panel).to_have_attribute("data-status", "awaiting_approval", timeout=DEADLINE_MS)
    expect(page.locator(f"#job-progress-{second.pk}")).to_have_attribute(
        "data-status", "awaiting_approval"
    )
    expect(swap_panel).to_have_attribute("data-verified", "passed")
    expect(swap_panel.locator(".badge-awaiting-approval")).to_have_text("awaiting approval")
    expect(swap_panel.locator("tr.check-verify")).to_contain_text("0 missing, 0 duplicates")
    expect(swap_panel.locator("tr.check-count")).to_contain_text(f"was {DOCS}")
    expect(swap_panel.locator(".swap-previous")).to_have_text(built(first))
    assert serves() == built(first)  # readers still get the first until the operator swaps
    pages = {detail: panels(second.pk)}
    assert_live_equals_reload(browser_context, pages, "awaiting approval", mask=True)
    state_equals_a_reload(browser_context, page, second.pk, "awaiting approval")

    # Swap, confirmed: the page goes to completed live, and the alias serves the second.
    asked = confirm(page)
    swap_panel.get_by_role("button", name="Swap", exact=True).click()
    expect(page.locator("#flash")).to_contain_text(
        f"Job #{second.pk} swapped: {ALIAS} now serves {built(second)}."
    )
    assert asked and asked[0].startswith(f"Swap alias {ALIAS} to {built(second)}")
    expect(swap_panel).to_have_attribute("data-status", "completed")
    expect(page.locator(f"#job-progress-{second.pk}")).to_have_attribute("data-status", "completed")
    expect(swap_panel.locator("button")).to_have_count(0)
    assert serves() == built(second)
    assert_live_equals_reload(browser_context, pages, "after Swap", mask=False)
    state_equals_a_reload(browser_context, page, second.pk, "after Swap")

    # The aliases page: the alias serves the second; Rollback, confirmed, moves it back.
    page.goto(f"{stack.base_url}/aliases/")
    card = page.locator(f'section.alias-card[data-alias="{ALIAS}"]')
    expect(card).to_have_attribute("data-serves", built(second))
    expect(card.locator("tr.move").first).to_have_attribute("data-collection", built(second))
    asked = confirm(page)
    card.get_by_role("button", name="Rollback").click()
    expect(page.locator("#flash")).to_contain_text(f"it serves {built(first)} again")
    assert asked and f"goes back to {built(first)}" in asked[0]
    expect(card).to_have_attribute("data-serves", built(first))
    expect(card.locator("tr.move").first).to_have_attribute("data-kind", "rollback")
    assert serves() == built(first)
    card_equals_a_reload(browser_context, page)

    # Prune, keeping none but the one it serves: the second is dropped, live as a reload shows.
    card.locator('input[name="keep"]').fill("0")
    asked = confirm(page)
    card.get_by_role("button", name="Prune").click()
    expect(page.locator("#flash")).to_contain_text(
        f"Alias {ALIAS} pruned: dropped {built(second)}; it keeps {built(first)}."
    )
    assert asked and asked[0].startswith(f"Prune alias {ALIAS} on {STORE}?")
    assert f"the one it serves ({built(first)})" in asked[0]
    expect(card.locator(".alias-collections")).to_have_text(f"Collections: {built(first)}")
    expect(card).to_have_attribute("data-serves", built(first))
    assert collections() == [built(first)] and serves() == built(first)
    card_equals_a_reload(browser_context, page)

    # Discard another job awaiting approval: cancelled live, its collection gone, alias kept.
    third = start_swap(make_corpus, "third", approve="manual")
    wait_until(lambda: status_of(third) == JobStatus.AWAITING_APPROVAL, "the third job", 60)
    page.goto(f"{stack.base_url}/jobs/{third.pk}/")
    expect(page.locator("#live-status")).to_have_attribute("data-live", "live")
    third_panel = page.locator(f"#job-swap-{third.pk}")
    asked = confirm(page)
    third_panel.get_by_role("button", name="Discard").click()
    expect(third_panel).to_have_attribute("data-status", "cancelled")
    expect(page.locator(f"#job-progress-{third.pk}")).to_have_attribute("data-status", "cancelled")
    assert asked and asked[0].startswith(f"Discard job #{third.pk}?")
    assert serves() == built(first) and built(third) not in collections()
    third_pages = {f"{stack.base_url}/jobs/{third.pk}/": panels(third.pk)}
    assert_live_equals_reload(browser_context, third_pages, "after Discard", mask=False)
    state_equals_a_reload(browser_context, page, third.pk, "after Discard")


def card_equals_a_reload(context: BrowserContext, live: Page) -> None:
    selector = f'section.alias-card[data-alias="{ALIAS}"]'
    fresh = context.new_page()
    try:
        fresh.goto(live.url)
        reloaded = fresh.evaluate(CARD_JS, selector)
    finally:
        fresh.close()
    assert reloaded is not None
    assert live.evaluate(CARD_JS, selector) == reloaded, "the aliases page differs from a reload"
