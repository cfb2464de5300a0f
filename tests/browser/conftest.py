"""Fixtures for the browser tests: Debian's Chromium through Playwright, daphne and a worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, WebError, sync_playwright

from tests.browser.servers import (
    CHROMIUM,
    OBSERVER_INIT_JS,
    Stack,
    env_without,
    launch_chromium,
    running_stack,
    wait_for_chromium,
)
from tests.live.redis_check import redis_url_or_fail

REDIS_DB = 14  # the browser tests' own database on the local Redis


@pytest.fixture(scope="session")
def chromium() -> str:
    path = wait_for_chromium()
    if path is None:
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests drive Debian's Chromium "
            "(`make chromium`, or apt-get install -y chromium)",
            pytrace=False,
        )
    return path


@pytest.fixture(autouse=True)
def _async_unsafe_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    # Playwright's sync API keeps an event loop on this thread; the test still queries the DB.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(params=["relay", "redis"])
def live_mode(request: pytest.FixtureRequest) -> str:
    """How progress reaches the browser: the in-memory layer plus the relay, or Redis."""
    mode: str = request.param
    return mode


@pytest.fixture
def stack(
    live_mode: str, worker_env: dict[str, str], tmp_path: Path, transactional_db: None
) -> Iterator[Stack]:
    env = env_without(worker_env, "REDIS_URL")
    if live_mode == "redis":
        env["REDIS_URL"] = redis_url_or_fail(REDIS_DB)
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    with running_stack(env, log_dir) as running:
        yield running


# Chromium's console line for a response with an error status.
FAILED_LOAD = "Failed to load resource: the server responded with a status of"


# Chromium asks for /favicon.ico on pages without an icon (the admin's): the browser's doing.
IGNORED_SOURCES = ("/favicon.ico",)
# Errors that tests in files owned elsewhere provoke or still show, allowed by test name until
# those tests say it themselves with `console_errors.allow(...)`:
KNOWN_ERRORS: dict[str, tuple[str, ...]] = {
    # It injects an inline script on purpose, to see the policy refuse it.
    "test_csp__login_list_live_job_and_admin_run_without_a_violation": (
        "Executing inline script violates",
    ),
}


class ConsoleErrors:
    """Every console error and uncaught page error of a browser context's pages.

    A test that provokes an error on purpose says which with `allow` (a substring of its text)."""

    def __init__(self, context: BrowserContext) -> None:
        self.errors: list[str] = []
        self._allowed: list[str] = []
        context.on("console", self._on_console)
        context.on("weberror", self._on_web_error)

    def allow(self, *texts: str) -> None:
        self._allowed.extend(texts)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        page_url = message.page.url if message.page else "?"
        source = message.location.get("url", "")
        if message.text.startswith(FAILED_LOAD) and source == page_url:
            return  # the page's own status, which a test of an error page asked for (and checks)
        if source.endswith(IGNORED_SOURCES):
            return
        where = f"{source or '?'}:{message.location.get('lineNumber')}"
        self.errors.append(f"console ({page_url}, from {where}): {message.text}")

    def _on_web_error(self, error: WebError) -> None:
        self.errors.append(f"page error ({error.page.url if error.page else '?'}): {error.error}")

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(text in e for text in self._allowed)]


@pytest.fixture
def browser_context(chromium: str) -> Iterator[BrowserContext]:
    """A fresh context in Debian's Chromium, recording progress changes (OBSERVER_JS) on every
    page load; the test fails at teardown if any of its pages logged an error (console_errors)."""
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.set_default_timeout(15_000)
            context.add_init_script(OBSERVER_INIT_JS)
            yield context
            context.close()
        finally:
            browser.close()


@pytest.fixture
def console_errors(
    browser_context: BrowserContext, request: pytest.FixtureRequest
) -> Iterator[ConsoleErrors]:
    errors = ConsoleErrors(browser_context)
    errors.allow(*KNOWN_ERRORS.get(request.node.originalname, ()))
    yield errors
    unexpected = errors.unexpected()
    if unexpected:
        pytest.fail("the browser logged errors:\n" + "\n".join(unexpected), pytrace=False)


@pytest.fixture
def browser_page(browser_context: BrowserContext, console_errors: ConsoleErrors) -> Page:
    """A fresh page in Debian's Chromium (see browser_context), failing on any console error."""
    return browser_context.new_page()
