"""A job page kept open while a real job goes through its phases (counting, writing, and the
indexing of the real pgvector store) never contradicts a reload: its phase panel and progress
block, read while the worker is held still, equal those of a freshly loaded page."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, Page, expect

from reindexer.jobs import create_job
from reindexer.models import JobStatus, Phase, ReindexJob
from reindexer.specs import JobSpec
from tests.browser.conftest import ConsoleErrors
from tests.browser.servers import Stack, env_without, running_stack
from tests.browser.test_dashboard_live import log_in
from tests.browser.test_live_equals_reload import paused, wait_until
from tests.pgvector_server import PgvectorServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Enough rows that the HNSW build of 384-dimension vectors takes a few seconds here.
DOCS = 20_000
BATCH = 2_000
SETTLE_S = 8.0  # the last push, or the 5 s tick, to reach the page

# A panel's text as a reader sees it; the running phase's duration and the progress block's
# figures that tick with the clock are masked (they differ between two reads a moment apart).
READ_JS = """
(selector) => {
  const el = document.querySelector(selector);
  if (!el) return null;
  const copy = el.cloneNode(true);
  const ticking = copy.querySelectorAll('[data-phase-state="running"] .phase-duration');
  for (const d of ticking) d.textContent = '*';
  for (const div of copy.querySelectorAll('dl.stats > div')) {
    const dt = div.querySelector('dt');
    if (['Rate', 'ETA', 'Elapsed', 'Heartbeat'].includes(dt && dt.textContent.trim())) {
      div.querySelector('dd').textContent = '*';
    }
  }
  return (el.dataset.phase || '') + ' | ' + copy.textContent.replace(/\\s+/g, ' ').trim();
}
"""

# Every phase the live page's panel showed, in order (its data-phase on each swap).
PHASE_WATCH_JS = """
(selector) => {
  window.__phases = [];
  const note = () => {
    const el = document.querySelector(selector);
    const phase = el ? el.dataset.phase : null;
    if (window.__phases[window.__phases.length - 1] !== phase) window.__phases.push(phase);
  };
  const all = {subtree: true, childList: true, attributes: true};
  new MutationObserver(note).observe(document.body, all);
  note();
}
"""


@pytest.fixture
def pg_stack(
    worker_env: dict[str, str],
    tmp_path: Path,
    transactional_db: None,
    pgvector_server: PgvectorServer,
    settings: Any,
) -> Iterator[Stack]:
    """daphne and a worker (relay mode: no Redis) with the pgvector store configured."""
    settings.REINDEXER = dataclasses.replace(settings.REINDEXER, pgvector_url=pgvector_server.url)
    env = {**env_without(worker_env, "REDIS_URL"), "REINDEXER_PGVECTOR_URL": pgvector_server.url}
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    with running_stack(env, log_dir) as running:
        yield running


def panels(job_id: int) -> list[str]:
    return [f"#job-phases-{job_id}", f"#job-progress-{job_id}", f"#job-settings-{job_id}"]


def read(page: Page, selectors: list[str]) -> dict[str, Any]:
    return {selector: page.evaluate(READ_JS, selector) for selector in selectors}


def assert_live_equals_reload(
    context: BrowserContext, live: Page, job_id: int, moment: str
) -> dict[str, Any]:
    selectors = panels(job_id)
    give_up_at = live.evaluate("performance.now()") + SETTLE_S * 1000
    while True:
        fresh = context.new_page()
        try:
            fresh.goto(live.url)
            expect(fresh.locator("#live-status")).to_have_attribute("data-live", "live")
            expected = read(fresh, selectors)
        finally:
            fresh.close()
        shown = read(live, selectors)
        if shown == expected or live.evaluate("performance.now()") > give_up_at:
            break
        live.wait_for_timeout(500)
    for selector in selectors:
        assert expected[selector] is not None, f"{moment}: {selector} missing after a reload"
        assert shown[selector] == expected[selector], (
            f"{moment}: {selector} differs from a reload\n"
            f"  live:   {shown[selector]}\n  reload: {expected[selector]}"
        )
    return shown


def job_row(job_id: int) -> ReindexJob:
    return ReindexJob.objects.get(pk=job_id)


def test_job_page__through_counting_writing_and_indexing_on_pgvector__equals_a_reload(
    pg_stack: Stack,
    browser_context: BrowserContext,
    console_errors: ConsoleErrors,
    operator: User,
    make_corpus: Any,
) -> None:
    make_corpus(DOCS, "phases.jsonl")
    live = browser_context.new_page()
    log_in(live, pg_stack, operator)
    with paused(pg_stack):
        job_id = create_job(
            JobSpec(
                source="jsonl:phases.jsonl",
                store="pgvector",
                collection=f"phases_live_{pg_stack.port}",
                batch_size=BATCH,
                name="phases-live",
            )
        ).pk
        live.goto(f"{pg_stack.base_url}/jobs/{job_id}/")
        expect(live.locator("#live-status")).to_have_attribute("data-live", "live")
        live.evaluate(PHASE_WATCH_JS, f"#job-phases-{job_id}")
        before = assert_live_equals_reload(browser_context, live, job_id, "before the start")
        assert "No phase yet" in before[f"#job-phases-{job_id}"]

    wait_until(
        lambda: job_row(job_id).phase == Phase.WRITING and job_row(job_id).processed_docs > 0,
        "the writing phase",
    )
    with paused(pg_stack, job_id):
        shown = assert_live_equals_reload(browser_context, live, job_id, "while writing")
        assert shown[f"#job-phases-{job_id}"].startswith("writing | Phases Counting")
        assert "documents" in shown[f"#job-phases-{job_id}"]

    wait_until(
        lambda: job_row(job_id).phase == Phase.INDEXING or job_row(job_id).is_finished,
        "the indexing phase",
    )
    job = job_row(job_id)
    assert job.status == JobStatus.RUNNING, (
        f"job {job_id} ended ({job.status}, {job.error!r}) before its indexing phase was seen"
    )
    with paused(pg_stack, job_id):
        shown = assert_live_equals_reload(browser_context, live, job_id, "while indexing")
        assert "Documents written; building search index" in shown[f"#job-progress-{job_id}"]
        assert shown[f"#job-phases-{job_id}"].startswith("indexing | ")
        assert "Indexing" in shown[f"#job-phases-{job_id}"]

    wait_until(lambda: job_row(job_id).is_finished, "the job's end", timeout_s=120)
    job = job_row(job_id)
    assert job.status == JobStatus.COMPLETED, job.error
    assert job.dimensions == 384
    final = assert_live_equals_reload(browser_context, live, job_id, "after the end")
    assert "building search index" not in final[f"#job-progress-{job_id}"]
    assert "running" not in final[f"#job-phases-{job_id}"]
    assert "384 dimensions" in final[f"#job-settings-{job_id}"]
    seen = [p for p in live.evaluate("window.__phases") if p]
    assert seen[-2:] == ["writing", "indexing"], seen
    assert list(job.phases.values_list("name", flat=True)) == ["counting", "writing", "indexing"]
    assert all(p.finished_at is not None for p in job.phases.all())
    assert not console_errors.unexpected()
