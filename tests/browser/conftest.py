"""Fixtures for the browser tests: Debian's Chromium through Playwright, daphne and a worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

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


@pytest.fixture
def browser_page(chromium: str) -> Iterator[Page]:
    """A fresh page in Debian's Chromium, recording progress changes (OBSERVER_JS) on every load."""
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.set_default_timeout(15_000)
            context.add_init_script(OBSERVER_INIT_JS)
            yield context.new_page()
            context.close()
        finally:
            browser.close()
