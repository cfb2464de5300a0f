"""Resume in a real browser: a store outage fails a job live on its page, the outage ends, the
operator clicks Resume, and the page follows the same job to completion, equal to a reload;
then Re-run opens the form prefilled with its settings. Against daphne and a real worker."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from reindexer.jobs import create_job
from reindexer.models import EventKind, JobStatus, ReindexJob
from reindexer.specs import JobSpec
from tests.browser.servers import Stack
from tests.browser.test_dashboard_live import log_in
from tests.conftest import REPO_ROOT
from tests.integration.conftest import wait_until
from tests.integration.store_outage import (
    BREAKER_SECONDS,
    OUTAGE_DOCS,
    OUTAGE_SPEC,
    exclusive_lock,
    store_file,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FINISH_MS = 60_000
# Twice the integration tests' corpus: the job must still be running once the page is open.
DOCS = 2 * OUTAGE_DOCS


def verify(job: ReindexJob, env: dict[str, str]) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "manage.py"), "reindex", "verify", str(job.pk), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, int] = json.loads(done.stdout)
    return report


def test_resume__the_operator_resumes_a_job_the_outage_failed_and_the_page_follows_it(
    stack: Stack,
    browser_page: Page,
    operator: User,
    make_corpus: Callable[..., Path],
    data_dir: Path,
    worker_env: dict[str, str],
    tmp_path: Path,
) -> None:
    page = browser_page
    make_corpus(DOCS)
    spec = JobSpec.parse({"source": "jsonl:docs.jsonl", "name": "outage", **OUTAGE_SPEC})
    try:
        log_in(page, stack, operator)
        job = create_job(spec)  # once logged in, so that its page opens while it runs
        page.goto(f"{stack.base_url}/jobs/{job.pk}/")
        expect(page.locator("[ws-connect]")).to_have_count(1)
        block = page.locator(f"#job-progress-{job.pk}")
        timeline = page.locator(f"#job-timeline-{job.pk}")

        # 1. The outage: the store's file is locked until the breaker fails the job, live.
        wait_until(lambda: ReindexJob.objects.get(pk=job.pk).batches_done >= 2, what="two batches")
        with exclusive_lock(store_file(data_dir, job)):
            expect(block).to_have_attribute(
                "data-status", "failed", timeout=int(BREAKER_SECONDS * 1000)
            )
        expect(block.locator(".error-box")).to_contain_text("store unreachable")
        expect(block.locator(".error-box")).to_contain_text("database is locked")
        expect(timeline.locator(".event-failed")).to_contain_text("database is locked")
        at_failure = ReindexJob.objects.get(pk=job.pk).processed_docs
        assert 0 < at_failure < DOCS
        page.screenshot(path=str(tmp_path / "1-failed.png"), full_page=True)

        # 2. The outage is over: Resume, and the page follows the same job to the end.
        block.get_by_role("button", name="Resume").click()
        expect(page.locator("#flash")).to_contain_text(f"Job #{job.pk} queued to resume")
        expect(block).to_have_attribute("data-status", "completed", timeout=FINISH_MS)
        expect(block.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
        expect(block.get_by_role("button", name="Resume")).to_have_count(0)
        expect(timeline.locator(".event-resumed")).to_contain_text(
            f"resuming from {at_failure} processed; it had failed: store unreachable"
        )
        expect(timeline.locator(".event-checkpoint_resumed")).to_contain_text(
            f"resuming after {at_failure} documents"
        )
        expect(block.get_by_role("link", name="Re-run")).to_have_count(1)
        page.screenshot(path=str(tmp_path / "2-resumed.png"), full_page=True)

        done = ReindexJob.objects.get(pk=job.pk)
        assert ReindexJob.objects.count() == 1
        assert (done.status, done.processed_docs, done.failed_docs) == (
            JobStatus.COMPLETED,
            DOCS,
            0,
        )
        kinds = list(done.events.order_by("at", "id").values_list("kind", flat=True))
        assert kinds.index(EventKind.FAILED) < kinds.index(EventKind.RESUMED), kinds
        report = verify(done, worker_env)
        assert (report["missing"], report["duplicates"], report["in_store"]) == (
            0,
            0,
            DOCS,
        )

        # 3. What the live page shows is what a reload shows.
        live = {
            "progress": block.inner_text(),
            "timeline": timeline.inner_text(),
        }
        page.reload()
        assert block.inner_text() == live["progress"]
        assert timeline.inner_text() == live["timeline"]

        # 4. Re-run opens the form with the job's settings, to edit; nothing is queued yet.
        block.get_by_role("link", name="Re-run").click()
        page.wait_for_url(f"{stack.base_url}/jobs/new/?from={job.pk}")
        form = page.locator("#new-job-form")
        expect(form.locator("[name=name]")).to_have_value("outage (re-run)")
        expect(form.locator("[name=store]")).to_have_value(str(OUTAGE_SPEC["store"]))
        expect(form.locator("[name=batch_size]")).to_have_value(str(OUTAGE_SPEC["batch_size"]))
        assert ReindexJob.objects.count() == 1
    except Exception:
        page.screenshot(path=str(tmp_path / "error.png"), full_page=True)
        print(stack.logs())  # noqa: T201 - pytest shows it with the failure
        raise
