"""A Redis restart under an open job page, in a real browser against daphne and a real worker:
the page says "live updates paused", then "live" again and follows the job on, without a reload;
and the job itself never notices: it completes with every document, no failed batch, no retry,
and `verify` finds nothing missing or duplicated."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.contrib.auth.models import User
from playwright.sync_api import ConsoleMessage, Page, expect

from reindexer.jobs import create_job
from reindexer.models import BatchFailure, EventKind, JobEvent, JobStatus, ReindexJob
from reindexer.progress import job_group
from reindexer.specs import JobSpec
from reindexer.verify import verify_job
from tests.browser.servers import RedisServer, Stack, env_without, running_stack
from tests.browser.test_dashboard_live import log_in, track_navigations

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DOCS = 3000  # at 10 documents per 100 ms batch, the job outlasts the restart comfortably
# Generous deadlines on a shared 2-core machine; the consumer retries within a few seconds.
DEADLINE_MS = 30_000


@pytest.fixture
def redis_stack(
    redis_server: RedisServer, worker_env: dict[str, str], tmp_path: Path, transactional_db: None
) -> Iterator[Stack]:
    """daphne and a worker, both on the test's own Redis."""
    env = {**env_without(worker_env, "REDIS_URL"), "REDIS_URL": redis_server.url}
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    with running_stack(env, log_dir) as stack:
        yield stack


def processed(job_id: int) -> int:
    return ReindexJob.objects.values_list("processed_docs", flat=True).get(pk=job_id)


def test_a_redis_restart__pauses_the_job_page_then_it_resumes_and_catches_up_without_a_reload(
    redis_server: RedisServer,
    redis_stack: Stack,
    browser_page: Page,
    operator: User,
    make_corpus: Any,
    tmp_path: Path,
) -> None:
    page = browser_page
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    def on_console(message: ConsoleMessage) -> None:
        # The socket stays open through the outage, so no error at all is expected.
        if message.type == "error":
            problems.append(f"console: {message.text}")

    page.on("console", on_console)
    make_corpus(DOCS, "slow.jsonl")
    spec = JobSpec(
        source="jsonl:slow.jsonl",
        store="flaky(sqlite-vec,latency=100)",
        collection="redis-restart",
        batch_size=10,
        name="redis-restart",
    )
    job_id = create_job(spec).pk
    try:
        log_in(page, redis_stack, operator)
        page.goto(f"{redis_stack.base_url}/jobs/{job_id}/")
        navigations = track_navigations(page)
        status = page.locator("#live-status")
        bar = page.locator(f"#job-progress-{job_id}").get_by_role("progressbar")
        expect(status).to_have_attribute("data-live", "live")
        expect(page.locator(f"#job-progress-{job_id}")).to_have_attribute(
            "data-status", "running", timeout=DEADLINE_MS
        )
        expect(bar).not_to_have_attribute("aria-valuenow", "0", timeout=DEADLINE_MS)

        # 1. Redis goes away: the socket stays open and the page says so.
        redis_server.stop()
        expect(status).to_have_attribute("data-live", "paused", timeout=DEADLINE_MS)
        expect(status).to_have_text("live updates paused")
        # The worker goes on meanwhile (its publisher only warns): let it get well ahead.
        ahead = processed(job_id) + 50
        give_up = time.monotonic() + DEADLINE_MS / 1000
        while processed(job_id) < ahead and time.monotonic() < give_up:
            page.wait_for_timeout(200)  # keeps the page's own events flowing
        assert processed(job_id) >= ahead, "the worker stalled while Redis was away"
        assert ReindexJob.objects.get(pk=job_id).status == JobStatus.RUNNING

        # 2. Redis is back on the same port, empty: the socket re-joins its group, says "live"
        #    and catches up with what happened while it was away.
        redis_server.start()
        expect(status).to_have_attribute("data-live", "live", timeout=DEADLINE_MS)
        expect(status).to_have_text("live")
        shown = int(bar.get_attribute("aria-valuenow") or 0)
        assert shown >= ahead * 100 // DOCS, "the page did not catch up on resuming"
        keys = redis.Redis(port=redis_server.port).keys(f"*:group:{job_group(job_id)}")
        assert keys, "the socket did not re-join its group in the restarted Redis"

        # 3. It follows the job to its end (a completed job is never re-rendered by the tick:
        #    this comes through the group), and a fresh load shows the same.
        expect(page.locator(f"#job-progress-{job_id}")).to_have_attribute(
            "data-status", "completed", timeout=120_000
        )
        live_value = bar.get_attribute("aria-valuenow")
        assert navigations == [], f"the page navigated: {navigations}"
        assert page.evaluate("() => window.__noReload === true")
        page.screenshot(path=str(tmp_path / "live.png"), full_page=True)
        fresh = page.context.new_page()
        fresh.goto(f"{redis_stack.base_url}/jobs/{job_id}/")
        fresh_block = fresh.locator(f"#job-progress-{job_id}")
        assert fresh_block.get_attribute("data-status") == "completed"
        assert fresh_block.get_by_role("progressbar").get_attribute("aria-valuenow") == live_value
        assert problems == [], problems

        # 4. The job was unaffected by the outage: its publisher only warned.
        job = ReindexJob.objects.get(pk=job_id)
        figures = (job.processed_docs, job.failed_docs, job.batches_failed, job.retries)
        assert figures == (DOCS, 0, 0, 0), figures
        assert not BatchFailure.objects.filter(job_id=job_id).exists()
        claims = JobEvent.objects.filter(
            job_id=job_id, kind__in=[EventKind.CLAIMED, EventKind.RECLAIMED]
        )
        assert claims.count() == 1, list(claims.values_list("kind", "actor"))
        report = verify_job(job)
        assert (report["missing"], report["duplicates"], report["in_store"]) == (0, 0, DOCS), report
    except Exception:
        page.screenshot(path=str(tmp_path / "error.png"), full_page=True)
        print(redis_stack.logs())  # noqa: T201 - pytest shows it with the failure
        raise
