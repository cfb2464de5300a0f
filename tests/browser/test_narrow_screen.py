"""A phone-sized screen (390 x 844): the list and the job page fit its width, the jobs table
scrolls inside its own frame, and a long job name wraps by word, not one letter per line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect, sync_playwright

from reindexer.models import JobStatus
from tests.browser.servers import Stack, launch_chromium

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTH, HEIGHT = 390, 844
LONG_NAME = "nightly reindex of the customer support knowledge base articles and attachments"
SHOTS = Path("/tmp/narrow-screen")  # noqa: S108 - screenshots to look at by hand

# The elements wider than the viewport's right edge, to say what overflows when one does.
OVERFLOWING_JS = """
(width) => [...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > width + 1)
  .filter(e => !e.closest('.table-wrap') || e.classList.contains('table-wrap'))
  .slice(0, 10)
  .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + '.' + e.className
       + ' ' + Math.round(e.getBoundingClientRect().right))
"""


@pytest.fixture
def live_mode() -> str:
    return "relay"


@pytest.fixture
def phone_page(chromium: str) -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
            context.set_default_timeout(15_000)
            yield context.new_page()
            context.close()
        finally:
            browser.close()


def assert_fits_the_width(page: Page, where: str) -> None:
    page.screenshot(path=str(SHOTS / f"{where}.png"), full_page=True)
    scroll_width: int = page.evaluate("() => document.documentElement.scrollWidth")
    overflowing = page.evaluate(OVERFLOWING_JS, WIDTH)
    assert scroll_width <= WIDTH, f"{where}: {scroll_width} px wide; {overflowing}"


def test_narrow_screen__list_and_job_page_fit_and_a_long_name_wraps_by_word(
    stack: Stack, phone_page: Page, operator: User, make_job: Any
) -> None:
    SHOTS.mkdir(exist_ok=True)
    page = phone_page
    job = make_job(status=JobStatus.COMPLETED, name=LONG_NAME, processed=5)
    make_job(status=JobStatus.RUNNING, name="short", processed=2)

    page.goto(f"{stack.base_url}/accounts/login/")
    page.fill("input[name=username]", operator.get_username())
    page.fill("input[name=password]", f"pw-{operator.get_username()}")
    page.press("input[name=password]", "Enter")
    page.wait_for_url(f"{stack.base_url}/")
    expect(page.locator("tr[data-job-id]")).to_have_count(2)
    assert_fits_the_width(page, "list")
    # The table keeps its columns and scrolls sideways inside its own frame instead.
    wrap = page.locator(".table-wrap").first
    assert wrap.evaluate("(e) => e.scrollWidth > e.clientWidth")

    name = page.locator(f"#job-row-{job.pk} .col-name a")
    style = page.evaluate(
        "(e) => { const s = getComputedStyle(e); return [s.fontSize, s.lineHeight]; }",
        name.element_handle(),
    )
    font_size, line_height = (float(value.removesuffix("px")) for value in style)
    box = name.bounding_box()
    assert box is not None
    # Eleven words on a handful of lines, at least a word wide; not one letter on each of ~80.
    assert box["width"] >= 8 * font_size, box
    assert box["height"] <= 8 * line_height, box

    page.goto(f"{stack.base_url}/jobs/{job.pk}/")
    expect(page.locator("h1")).to_have_text(LONG_NAME)
    assert_fits_the_width(page, "detail")
