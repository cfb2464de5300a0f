"""The operator's console in the browser: a real worker on the workers page, gone once it is
SIGKILLed and its lease passes; the queue showing a job waiting for the one writing its
collection."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from reindexer.jobs import create_job
from reindexer.models import JobStatus, ReindexJob
from reindexer.specs import JobSpec
from tests.browser.servers import Stack, running_stack
from tests.integration.conftest import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHORT_LEASE = {"REINDEXER_LEASE_SECONDS": "2", "REINDEXER_HEARTBEAT_SECONDS": "0.5"}


@pytest.fixture
def short_lease_stack(
    worker_env: dict[str, str], tmp_path: Path, transactional_db: None
) -> Iterator[Stack]:
    """daphne and a worker, both with a two-second lease."""
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    env = {k: v for k, v in worker_env.items() if k != "REDIS_URL"}
    with running_stack({**env, **SHORT_LEASE}, log_dir) as stack:
        yield stack


def _slow_job(name: str) -> ReindexJob:
    spec = {
        "source": "jsonl:slow.jsonl",
        "store": "flaky(sqlite-vec,latency=100)",
        "collection": "shared",
        "batch_size": 10,
        "name": name,
    }
    return create_job(JobSpec.parse(spec))


def _log_in(page: Page, base_url: str, user: User) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=username]", user.get_username())
    page.fill("input[name=password]", f"pw-{user.get_username()}")
    page.press("input[name=password]", "Enter")
    page.wait_for_url(f"{base_url}/")


def test_console__shows_the_worker_and_the_waiting_job_then_the_worker_gone_after_sigkill(
    short_lease_stack: Stack,
    browser_page: Page,
    viewer: User,
    make_corpus: Any,
) -> None:
    stack, page = short_lease_stack, browser_page
    make_corpus(3000, "slow.jsonl")  # about 30 s of writing: it outlasts the test
    first, second = _slow_job("first"), _slow_job("second")
    wait_until(
        lambda: ReindexJob.objects.get(pk=first.pk).status == JobStatus.RUNNING,
        what="the worker to claim the first job",
    )
    _log_in(page, stack.base_url, viewer)

    page.goto(f"{stack.base_url}/queue/")
    running = page.locator(f'.queue-running tr[data-job-id="{first.pk}"]')
    expect(running).to_contain_text("running on")
    waiting = page.locator(f'.queue-pending tr[data-job-id="{second.pk}"]')
    expect(waiting).to_contain_text(f"waiting for #{first.pk}")
    expect(waiting).to_have_attribute("data-position", "1")

    page.goto(f"{stack.base_url}/workers/")
    worker_pid = stack.processes["worker"].pid
    row = page.locator("tr[data-worker]", has_text=str(worker_pid))
    expect(row).to_have_attribute("data-state", "running")
    expect(row.locator(f'a[data-job-id="{first.pk}"]')).to_be_visible()

    os.kill(worker_pid, signal.SIGKILL)
    stack.processes["worker"].wait(timeout=10)
    # No reload: the table re-fetches itself, and the row turns gone once the lease has passed.
    expect(row).to_have_attribute("data-state", "gone", timeout=20_000)
    expect(row.locator(".badge")).to_have_text("gone")
    page.reload()
    expect(page.locator("tr[data-worker]", has_text=str(worker_pid))).to_have_attribute(
        "data-state", "gone"
    )
