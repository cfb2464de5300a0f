"""A job's phases on the dashboard: the detail page's step list (from JobPhase rows made by the
PhaseTracker on a claimed job), "written" told apart from "searchable", `data-phase` on the
list, the live push, and the queries each costs."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from dashboard.consumers import JobConsumer
from dashboard.partials import render_detail_push
from reindexer.jobs import force_cancel_job
from reindexer.models import JobStatus, Phase, ReindexJob
from reindexer.phases import PhaseTracker

pytestmark = pytest.mark.django_db

WORKER = "worker-test"
INDEX_DETAIL = "building index: loading tuples"


def tracker(job: ReindexJob) -> PhaseTracker:
    assert job.lease_token is not None
    return PhaseTracker(job, job.lease_token, WORKER)


@pytest.fixture
def indexing_job(make_job: Callable[..., ReindexJob]) -> ReindexJob:
    """A running job that counted, wrote its 5 documents and is building its index."""
    job = make_job(status=JobStatus.RUNNING, total=5, processed=5)
    phases = tracker(job)
    phases.enter(Phase.COUNTING)
    phases.enter(Phase.WRITING, total=5)
    phases.enter(Phase.INDEXING, total=50_000, detail="building index: initializing")
    phases.report(Phase.INDEXING, done=12_000, total=50_000, detail=INDEX_DETAIL)
    job.refresh_from_db()
    return job


def steps(page: str) -> dict[str, str]:
    """Each step's text by phase name, whitespace collapsed."""
    found = re.findall(
        r'<li class="phase-step[^"]*" data-phase-name="(\w+)"[^>]*>(.*?)</li>', page, re.S
    )
    return {name: " ".join(re.sub(r"<[^>]+>", " ", body).split()) for name, body in found}


def states(page: str) -> dict[str, str]:
    return dict(re.findall(r'data-phase-name="(\w+)" data-phase-state="(\w+)"', page))


def test_detail__lists_each_phase_with_its_end_or_running_and_its_progress(
    viewer_client: Client, indexing_job: ReindexJob
) -> None:
    page = html.unescape(viewer_client.get(f"/jobs/{indexing_job.pk}/").content.decode())
    assert list(steps(page)) == ["counting", "writing", "indexing"]
    assert states(page) == {"counting": "done", "writing": "done", "indexing": "running"}
    shown = steps(page)
    assert "5 documents" in shown["counting"]
    assert "5 of 5 documents" in shown["writing"]
    assert f"{INDEX_DETAIL} 12,000 of 50,000" in shown["indexing"]
    assert "running" in shown["indexing"] and "running" not in shown["writing"]
    assert 'value="24"' in page  # 12,000 of 50,000
    # Written is not searchable yet: the progress block says so, beside its 100%.
    progress = page[page.index(f'id="job-progress-{indexing_job.pk}"') :]
    progress = progress[: progress.index("</section>")]
    assert "100%" in progress
    assert "Documents written; building search index" in progress
    assert 'data-phase="indexing"' in progress


def test_detail__a_finished_job_no_longer_says_building(
    viewer_client: Client, indexing_job: ReindexJob
) -> None:
    tracker(indexing_job).finish(Phase.INDEXING, "index built in 3.0 s")
    indexing_job.complete(indexing_job.lease_token, WORKER)  # type: ignore[arg-type]
    page = html.unescape(viewer_client.get(f"/jobs/{indexing_job.pk}/").content.decode())
    assert set(states(page).values()) == {"done"}
    assert "building search index" not in page
    assert "index built in 3.0 s" in steps(page)["indexing"]


def test_detail__force_cancelled_job_shows_its_open_phase_ended_with_the_job(
    viewer_client: Client, make_job: Callable[..., ReindexJob]
) -> None:
    job = make_job(status=JobStatus.RUNNING, total=5, processed=2, heartbeat_age=120)
    phases = tracker(job)
    phases.enter(Phase.COUNTING)
    phases.enter(Phase.WRITING, total=5)
    force_cancel_job(job)
    job.refresh_from_db()
    assert job.phases.get(name=Phase.WRITING).finished_at == job.finished_at, "ends with the job"
    page = viewer_client.get(f"/jobs/{job.pk}/").content.decode()
    assert states(page)["writing"] == "done"
    writing = page[page.index('data-phase-name="writing"') :]
    writing = writing[: writing.index("</li>")]
    assert "running" not in writing
    assert job.finished_at is not None
    ended = job.finished_at.replace(microsecond=0).isoformat()
    assert f'datetime="{ended}"' in writing.split("→")[1], writing


def test_detail__escapes_the_phase_detail(
    viewer_client: Client, make_job: Callable[..., ReindexJob]
) -> None:
    job = make_job(status=JobStatus.RUNNING, total=5, processed=5)
    phases = tracker(job)
    phases.enter(Phase.WRITING, total=5)
    phases.enter(Phase.INDEXING, total=10, detail="")
    phases.report(Phase.INDEXING, done=1, total=10, detail='<img src=x onerror="alert(1)">')
    page = viewer_client.get(f"/jobs/{job.pk}/").content.decode()
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page


def test_detail__before_the_start_says_no_phase_yet(
    viewer_client: Client, make_job: Callable[..., ReindexJob]
) -> None:
    job = make_job()
    page = viewer_client.get(f"/jobs/{job.pk}/").content.decode()
    assert f'id="job-phases-{job.pk}"' in page
    assert "No phase yet" in page


def test_list__each_row_carries_its_current_phase(
    viewer_client: Client, indexing_job: ReindexJob, make_job: Callable[..., ReindexJob]
) -> None:
    pending = make_job()
    page = viewer_client.get("/").content.decode()
    assert re.search(rf'data-job-id="{indexing_job.pk}"[^>]*data-phase="indexing"', page)
    assert re.search(rf'data-job-id="{pending.pk}"[^>]*data-phase=""', page)
    row = page[page.index(f'id="job-row-{indexing_job.pk}"') :]
    assert "indexing" in row[: row.index("</tr>")]


def test_detail_push__carries_the_phase_panel_and_sends_it_again_on_a_new_report(
    indexing_job: ReindexJob,
) -> None:
    push = render_detail_push(indexing_job)
    assert f'id="job-phases-{indexing_job.pk}"' in push.phases
    assert 'hx-swap-oob="true"' in push.phases
    assert push.phases in push.html()
    consumer: Any = JobConsumer()
    assert push.phases in consumer._changed_panels(push)
    tracker(indexing_job).report(Phase.INDEXING, done=30_000, total=50_000, detail=INDEX_DETAIL)
    again = render_detail_push(indexing_job)
    changed = consumer._changed_panels(again)
    assert again.phases in changed
    assert "30,000 of 50,000" in changed


def test_detail_push__skips_the_unchanged_phase_panel(indexing_job: ReindexJob) -> None:
    tracker(indexing_job).finish(Phase.INDEXING, "index built in 3.0 s")
    indexing_job.complete(indexing_job.lease_token, WORKER)  # type: ignore[arg-type]
    consumer: Any = JobConsumer()
    first = render_detail_push(indexing_job)
    assert first.phases in consumer._changed_panels(first)
    assert consumer._changed_panels(render_detail_push(indexing_job)) == ""


def _phase_queries(queries: list[dict[str, Any]]) -> list[str]:
    return [q["sql"] for q in queries if "jobphase" in q["sql"].lower()]


def test_queries__one_for_the_phases_of_a_detail_page_whatever_their_number(
    viewer_client: Client, indexing_job: ReindexJob, make_job: Callable[..., ReindexJob]
) -> None:
    fresh = make_job(status=JobStatus.RUNNING, total=5)
    tracker(fresh).enter(Phase.COUNTING)
    counts = []
    for job in (fresh, indexing_job):
        with CaptureQueriesContext(connection) as captured:
            assert viewer_client.get(f"/jobs/{job.pk}/").status_code == 200
        assert len(_phase_queries(captured.captured_queries)) == 1
        counts.append(len(captured))
    assert counts[0] == counts[1]


def test_queries__the_list_reads_no_phase_rows(
    viewer_client: Client,
    indexing_job: ReindexJob,
    make_job: Callable[..., ReindexJob],
    django_assert_num_queries: Any,
) -> None:
    viewer_client.get("/")  # warm the session
    with CaptureQueriesContext(connection) as one:
        viewer_client.get("/")
    assert _phase_queries(one.captured_queries) == []
    for n in range(3):
        job = make_job(status=JobStatus.RUNNING, total=5, collection=f"phases-{n}")
        phases = tracker(job)
        phases.enter(Phase.COUNTING)
        phases.enter(Phase.WRITING, total=5)
    with django_assert_num_queries(len(one)):
        page = viewer_client.get("/").content.decode()
    assert page.count('data-phase="writing"') == 3
