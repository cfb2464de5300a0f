"""A sliced job's page kept open while two real workers run its four slices never contradicts a
reload: its slices table (each slice's status, progress and worker) and its progress block,
read while both workers are held still, equal those of a freshly loaded page; and the page
logs no error. In both live modes: the relay (no Redis) and Redis."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, Page, expect

from reindexer.jobs import create_job
from reindexer.models import JobStatus, ReindexJob
from reindexer.specs import JobSpec
from tests.browser.conftest import ConsoleErrors
from tests.browser.servers import REPO_ROOT, Stack, _spawn
from tests.browser.test_dashboard_live import log_in
from tests.browser.test_live_equals_reload import holds_no_lock, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DOCS = 240
SLICES = 4
# 60 documents a slice in batches of 10, 250 ms each: a slice runs about 1.5 s, the job a few.
STORE = "flaky(sqlite-vec,latency=250)"
BATCH = 10
SETTLE_S = 8.0  # a push, or the hub's 5 s tick, reaching the page
WORKERS = ("worker", "worker-2")

# What the page shows of the job: its progress block's state and bar, and each slice row's
# number, status, worker, bar and processed count (no ages: they tick with the clock).
READ_JS = """
(jobId) => {
  const progress = document.querySelector('#job-progress-' + jobId);
  const table = document.querySelector('#job-slices-' + jobId);
  if (!progress || !table) return null;
  const bar = progress.querySelector('[role=progressbar]');
  const rows = [...table.querySelectorAll('tr.slice-row')].map((row) => [
    row.dataset.sliceNumber, row.dataset.status, row.dataset.worker,
    row.querySelector('[role=progressbar]').getAttribute('aria-valuenow'),
    row.querySelector('.slice-processed').textContent.replace(/\\s+/g, ' ').trim(),
  ]);
  const note = table.querySelector('.slices-pending');
  return {
    status: progress.dataset.status,
    label: progress.dataset.label,
    percent: bar.getAttribute('aria-valuenow'),
    slices: rows,
    note: note ? note.textContent.trim() : null,
  };
}
"""


def add_second_worker(stack: Stack) -> None:
    """A second `reindex_worker` beside the stack's own, stopped with the stack."""
    stack.processes["worker-2"] = _spawn(
        "worker-2",
        [sys.executable, str(REPO_ROOT / "manage.py"), "reindex_worker"],
        stack.env,
        stack.log_dir,
    )


@contextmanager
def both_paused(stack: Stack) -> Iterator[None]:
    """Both workers stopped where they stand, outside any transaction, then resumed."""
    workers = [stack.processes[name] for name in WORKERS]
    for _ in range(100):
        for worker in workers:
            worker.send_signal(signal.SIGSTOP)
        if holds_no_lock(None):
            break
        for worker in workers:
            worker.send_signal(signal.SIGCONT)
        time.sleep(0.03)
    else:
        pytest.fail("the workers never stopped outside a transaction")
    try:
        yield
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGCONT)


def read(page: Page, job_id: int) -> Any:
    return page.evaluate(READ_JS, job_id)


def assert_live_equals_reload(context: BrowserContext, live: Page, job_id: int, moment: str) -> Any:
    give_up = time.monotonic() + SETTLE_S
    while True:
        fresh = context.new_page()
        try:
            fresh.goto(live.url)
            expect(fresh.locator("#live-status")).to_have_attribute("data-live", "live")
            expected = read(fresh, job_id)
        finally:
            fresh.close()
        shown = read(live, job_id)
        if shown == expected or time.monotonic() > give_up:
            break
        time.sleep(0.3)
    assert expected is not None, f"{moment}: no progress block or slices table after a reload"
    assert shown == expected, (
        f"{moment}: differs from a reload\n  live:   {shown}\n  reload: {expected}"
    )
    return shown


def slices_of(job_id: int) -> list[ReindexJob]:
    return list(ReindexJob.objects.filter(parent_id=job_id).order_by("slice_number"))


def test_sliced_job_page__followed_live_through_two_workers__equals_a_reload(
    stack: Stack,
    browser_context: BrowserContext,
    console_errors: ConsoleErrors,
    operator: User,
    make_corpus: Any,
) -> None:
    make_corpus(DOCS, "sliced.jsonl")
    add_second_worker(stack)
    live = browser_context.new_page()
    log_in(live, stack, operator)

    with both_paused(stack):
        job_id = create_job(
            JobSpec(
                source="jsonl:sliced.jsonl",
                store=STORE,
                collection=f"sliced_{stack.port}",
                batch_size=BATCH,
                slices=SLICES,
                name="sliced-live",
            )
        ).pk
        live.goto(f"{stack.base_url}/jobs/{job_id}/")
        expect(live.locator("#live-status")).to_have_attribute("data-live", "live")
        before = assert_live_equals_reload(browser_context, live, job_id, "before the split")
        assert before["slices"] == [] and f"{SLICES} slices" in before["note"]

    # Mid-run: at least one slice has written, others are still to go.
    wait_until(
        lambda: (
            any(s.processed_docs > 0 for s in slices_of(job_id))
            and not all(s.status == JobStatus.COMPLETED for s in slices_of(job_id))
        ),
        "a slice under way",
        timeout_s=60,
    )
    with both_paused(stack):
        during = assert_live_equals_reload(browser_context, live, job_id, "mid-run")
        assert [row[0] for row in during["slices"]] == ["1", "2", "3", "4"]
        assert any(row[1] == "running" and row[2] for row in during["slices"]), during

    wait_until(
        lambda: ReindexJob.objects.get(pk=job_id).status == JobStatus.COMPLETED,
        "the sliced job's completion",
        timeout_s=90,
    )
    after = assert_live_equals_reload(browser_context, live, job_id, "after the completion")
    assert after["status"] == "completed" and after["percent"] == "100"
    assert {row[1] for row in after["slices"]} == {"completed"}
    assert {row[3] for row in after["slices"]} == {"100"}
    # Each slice keeps the name of the worker that ran it, as its row showed.
    assert all(s.worker for s in slices_of(job_id))
    assert ReindexJob.objects.get(pk=job_id).processed_docs == DOCS
