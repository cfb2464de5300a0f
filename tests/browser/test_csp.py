"""The Content-Security-Policy in a real browser: the login page, the jobs list, a live job page
and the admin all work under it, with no violation, and the job page's websocket still updates."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from playwright.sync_api import ConsoleMessage, Page, Response, WebSocket, expect

from reindexer.jobs import create_job
from reindexer.models import ReindexJob
from reindexer.specs import JobSpec
from tests.browser.servers import Stack
from tests.dashboard.test_security_headers import policy_of

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Records every violation the page reports, whether or not the console mentions it.
VIOLATIONS_INIT_JS = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline'));
});
"""


@pytest.fixture
def live_mode() -> str:
    """The relay only: the policy does not depend on the channel layer."""
    return "relay"


class Watch:
    """What the page said: console messages about CSP, page errors, and violation events."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.console: list[str] = []
        self.errors: list[str] = []
        self.sockets: list[WebSocket] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("websocket", lambda socket: self.sockets.append(socket))
        page.context.add_init_script(VIOLATIONS_INIT_JS)

    def _on_console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.console.append(message.text)

    def open(self, url: str) -> None:
        """Load `url` and check that it came with the policy."""
        response = self.page.goto(url)
        assert response is not None and response.ok, url
        directives = policy_of(response.headers.get("content-security-policy", ""))
        assert directives.get("script-src") == ["'self'"], (url, directives)
        assert directives.get("style-src") == ["'self'"], (url, directives)

    def assert_clean(self, where: str) -> None:
        self.page.wait_for_load_state("load")
        violations = self.page.evaluate("() => window.__cspViolations || []")
        assert violations == [], f"{where}: {violations}"
        assert self.console == [], f"{where}: {self.console}"
        assert self.errors == [], f"{where}: {self.errors}"


@pytest.fixture
def admin_user(transactional_db: None) -> Iterator[User]:
    yield User.objects.create_superuser("admin", password="pw-admin")


def test_csp__login_list_live_job_and_admin_run_without_a_violation(
    stack: Stack,
    browser_page: Page,
    admin_user: User,
    make_corpus,
    tmp_path: Path,
) -> None:
    page = browser_page
    watch = Watch(page)
    make_corpus(300, "steady.jsonl")
    try:
        # The login page, and logging in through its form.
        watch.open(f"{stack.base_url}/accounts/login/")
        watch.assert_clean("login page")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", "pw-admin")
        page.press("input[name=password]", "Enter")
        page.wait_for_url(f"{stack.base_url}/")
        watch.assert_clean("after logging in")

        # The jobs list opens its socket.
        watch.open(f"{stack.base_url}/")
        expect(page.locator("[ws-connect]")).to_have_count(1)
        watch.assert_clean("jobs list")

        # A job page follows its job live over the websocket, to the end, without a reload.
        job = create_job(
            JobSpec.parse(
                {
                    "source": "jsonl:steady.jsonl",
                    "embedder": "hashing",
                    "store": "flaky(sqlite-vec,latency=100)",
                    "collection": "csp",
                    "batch_size": 10,
                    "name": "csp-live",
                }
            )
        )
        watch.open(f"{stack.base_url}/jobs/{job.pk}/")
        block = page.locator(f"#job-progress-{job.pk}")
        expect(block).to_have_attribute("data-status", "completed", timeout=60_000)
        expect(block.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
        assert any(f"/ws/jobs/{job.pk}/" in socket.url for socket in watch.sockets)
        values = page.evaluate(
            "(id) => (window.__progress || []).filter(r => r.el === id).map(r => r.value)",
            f"job-progress-{job.pk}",
        )
        assert len(set(values)) >= 2, f"no live update reached the page: {values}"
        assert ReindexJob.objects.get(pk=job.pk).processed_docs == 300
        watch.assert_clean("live job page")

        # The admin: its index, the jobs changelist and a job's change page.
        watch.open(f"{stack.base_url}/admin/")
        expect(page.locator("#content h1")).to_have_text("Site administration")
        watch.assert_clean("admin index")
        watch.open(f"{stack.base_url}/admin/reindexer/reindexjob/")
        expect(page.locator("#result_list")).to_contain_text("csp-live")
        watch.assert_clean("admin changelist")
        watch.open(f"{stack.base_url}/admin/reindexer/reindexjob/{job.pk}/change/")
        expect(page.locator("#content h1")).to_be_visible()
        watch.assert_clean("admin change page")

        # The API docs: Swagger UI reads its settings from a JSON data block, not inline script.
        watch.open(f"{stack.base_url}/api/docs")
        expect(page.get_by_role("button", name="Authorize")).to_be_visible()
        watch.assert_clean("API docs")

        # And the policy is enforced: an injected inline script does not run, and is reported.
        watch.open(f"{stack.base_url}/")
        page.evaluate(
            """() => { const s = document.createElement('script');
                       s.textContent = 'window.__injected = true'; document.head.append(s); }"""
        )
        # The violation event is queued as a task; wait for it rather than sleep.
        page.wait_for_function("() => window.__cspViolations.length > 0")
        assert page.evaluate("() => window.__injected === undefined")
        violations = page.evaluate("() => window.__cspViolations")
        assert violations == ["script-src-elem inline"], violations
    except Exception:
        page.screenshot(path=str(tmp_path / "error.png"), full_page=True)
        print(stack.logs())  # noqa: T201 - pytest shows it with the failure
        raise


def test_csp__the_lock_out_page_through_daphne_is_styled_and_clean(
    stack: Stack, browser_page: Page, admin_user: User, tmp_path: Path
) -> None:
    page = browser_page
    watch = Watch(page)
    limit: int = settings.AXES_FAILURE_LIMIT
    statuses: list[int] = []

    def record(response: Response) -> None:
        if response.request.method == "POST":
            statuses.append(response.status)

    page.on("response", record)
    try:
        watch.open(f"{stack.base_url}/accounts/login/")
        for _ in range(limit):
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", "not-the-password")
            with page.expect_navigation():
                page.press("input[name=password]", "Enter")
        assert statuses == [200] * (limit - 1) + [429], statuses
        minutes = settings.REINDEXER.login_cooloff_minutes
        expect(page.get_by_role("alert")).to_contain_text(
            f"Logins are locked for {minutes} minutes."
        )
        watch.assert_clean("lock-out page")
    except Exception:
        page.screenshot(path=str(tmp_path / "error.png"), full_page=True)
        print(stack.logs())  # noqa: T201 - pytest shows it with the failure
        raise
