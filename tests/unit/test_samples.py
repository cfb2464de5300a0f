"""A job's samples against the real database: when one is due, how the series stays bounded, how a
resumed job carries it on, the current rate it gives, and that a failed write never fails a job."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from pytest_django import DjangoAssertNumQueries

from reindexer.models import JobSample, JobStatus, ReindexJob
from reindexer.samples import (
    EVENT_INTERVAL,
    MAX_SAMPLES,
    RECENT_KEPT,
    SAMPLE_INTERVAL,
    JobSampler,
    Point,
    current_rate,
    recent_points,
    series,
    thinned,
)

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def running(make_job: Callable[..., ReindexJob]) -> ReindexJob:
    return make_job(status=JobStatus.RUNNING, total=1_000_000)


def commit(job: ReindexJob, docs: int = 100, failed: int = 0, retries: int = 0) -> None:
    """What the engine's committer does to the job in memory after a batch."""
    job.processed_docs += docs
    job.failed_docs += failed
    job.retries += retries


def times(job: ReindexJob) -> list[datetime]:
    return list(JobSample.objects.filter(job=job).order_by("at").values_list("at", flat=True))


def test_sampler__starts_the_series_with_the_job_as_it_stands(running: ReindexJob) -> None:
    running.processed_docs = 300
    JobSampler(running, now=T0)
    (sample,) = JobSample.objects.filter(job=running)
    assert (sample.at, sample.processed, sample.failed, sample.retries) == (T0, 300, 0, 0)


def test_sampler__records_at_most_one_sample_per_interval(running: ReindexJob) -> None:
    sampler = JobSampler(running, now=T0)
    for tenth in range(1, 201):  # 20 s of commits, ten a second
        commit(running)
        sampler.note(running, now=T0 + timedelta(seconds=tenth / 10))
    assert times(running) == [T0 + SAMPLE_INTERVAL * i for i in range(5)]
    assert JobSample.objects.filter(job=running).last().processed == 200 * 100  # type: ignore[union-attr]


def test_sampler__records_a_batch_with_failures_or_retries_at_once(running: ReindexJob) -> None:
    sampler = JobSampler(running, now=T0)
    commit(running)
    sampler.note(running, now=T0 + EVENT_INTERVAL / 2)  # too soon, even with news
    commit(running, failed=3)
    sampler.note(running, now=T0 + EVENT_INTERVAL)
    commit(running)
    sampler.note(running, now=T0 + EVENT_INTERVAL * 2)  # nothing new: waits for the interval
    commit(running, retries=2)
    sampler.note(running, now=T0 + EVENT_INTERVAL * 3)
    rows = list(JobSample.objects.filter(job=running).values_list("at", "failed", "retries"))
    assert rows == [
        (T0, 0, 0),
        (T0 + EVENT_INTERVAL, 3, 0),
        (T0 + EVENT_INTERVAL * 3, 3, 2),
    ]


def test_sampler__thinning_keeps_the_series_bounded_over_100k_commits(
    running: ReindexJob,
) -> None:
    sampler = JobSampler(running, now=T0)
    largest = 0
    for second in range(1, 100_001):  # a batch a second for 28 hours
        commit(running, docs=10, failed=1 if second % 5000 == 0 else 0)
        sampler.note(running, now=T0 + timedelta(seconds=second))
        if second % 1000 == 0:
            largest = max(largest, JobSample.objects.filter(job=running).count())
    kept = times(running)
    assert largest <= MAX_SAMPLES
    assert len(kept) <= MAX_SAMPLES
    assert kept[0] == T0  # the start stays
    # The newest stay dense, for the current rate and the sparklines...
    recent = kept[-RECENT_KEPT:]
    assert all(b - a == SAMPLE_INTERVAL for a, b in zip(recent, recent[1:], strict=False))
    # ...and the older ones cover the whole run evenly: no gap wider than twice the typical one.
    gaps = sorted(b - a for a, b in zip(kept[:-RECENT_KEPT], kept[1:-RECENT_KEPT], strict=False))
    assert gaps[-1] <= gaps[len(gaps) // 2] * 2
    assert gaps[-1] < timedelta(minutes=30)


def test_sampler__a_new_sampler_on_a_resumed_job_continues_the_same_series(
    running: ReindexJob,
) -> None:
    first = JobSampler(running, now=T0)
    for second in range(1, 3001, 5):
        commit(running)
        first.note(running, now=T0 + timedelta(seconds=second))
    before = times(running)
    # Another worker reclaims it from a fresh copy of the row, a minute later.
    resumed = ReindexJob.objects.get(pk=running.pk)
    resumed.processed_docs = running.processed_docs
    restart = T0 + timedelta(seconds=3060)
    second_sampler = JobSampler(resumed, now=restart)
    for second in range(3061, 6001, 5):
        commit(resumed)
        second_sampler.note(resumed, now=T0 + timedelta(seconds=second))
    after = times(resumed)
    assert len(after) <= MAX_SAMPLES
    assert restart in after  # the restart is marked
    assert after[0] == before[0]  # one series, from the job's start
    assert sum(t < restart for t in after) > 0


def test_thinned__keeps_the_first_and_the_newest_and_drops_only_past_the_bound() -> None:
    stamps = [T0 + SAMPLE_INTERVAL * i for i in range(MAX_SAMPLES)]
    assert thinned(stamps) == []
    stamps.append(T0 + SAMPLE_INTERVAL * MAX_SAMPLES)
    dropped = thinned(stamps)
    assert dropped
    assert 0 not in dropped
    assert all(i < len(stamps) - RECENT_KEPT for i in dropped)
    assert len(stamps) - len(dropped) <= MAX_SAMPLES - RECENT_KEPT // 2


@pytest.fixture
def refusing_samples() -> Iterator[None]:
    """The database refuses every new sample (a trigger), as a full or failing disk would."""
    table = JobSample._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION refuse_sample() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                f"CREATE TRIGGER refuse_sample BEFORE INSERT ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION refuse_sample()"
            )
        else:
            cursor.execute(
                f"CREATE TRIGGER refuse_sample BEFORE INSERT ON {table} "
                "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            )
    yield
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"DROP TRIGGER refuse_sample ON {table}")
            cursor.execute("DROP FUNCTION refuse_sample()")
        else:
            cursor.execute("DROP TRIGGER refuse_sample")


def test_sampler__a_failed_write_is_logged_and_the_job_goes_on(
    running: ReindexJob, refusing_samples: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="reindexer.samples"):
        sampler = JobSampler(running, now=T0)
        commit(running)
        sampler.note(running, now=T0 + SAMPLE_INTERVAL)
    assert not JobSample.objects.filter(job=running).exists()
    assert [r.getMessage() for r in caplog.records] == [
        f"job {running.pk}: could not start its samples",
        f"job {running.pk}: could not record a sample",
    ]
    # The connection is still usable: the job's own work carries on.
    assert ReindexJob.objects.filter(pk=running.pk).exists()


def test_series__ends_with_the_job_rows_final_counters(
    make_job: Callable[..., ReindexJob],
) -> None:
    job = make_job(status=JobStatus.COMPLETED, total=500, processed=500, failed=2)
    start = job.started_at
    assert start is not None and job.finished_at is not None
    JobSample.objects.create(job=job, at=start, processed=0, failed=0, retries=0)
    points = series(job)
    assert points[0] == Point(start, 0, 0, 0)
    assert points[-1] == Point(job.finished_at, 500, 2, job.retries)


def test_current_rate__is_the_rate_since_the_newest_sample_a_minute_old(
    running: ReindexJob,
) -> None:
    now = T0 + timedelta(minutes=3)
    running.processed_docs = 9_000
    recent = [
        Point(T0 + timedelta(seconds=90), 1_000, 0, 0),
        Point(now - timedelta(seconds=70), 2_000, 0, 0),  # the newest a minute old or more
        Point(now - timedelta(seconds=30), 5_000, 0, 0),
    ]
    assert current_rate(running, recent, now) == pytest.approx(7_000 / 70)


def test_current_rate__of_a_young_job_runs_from_its_first_sample(running: ReindexJob) -> None:
    running.processed_docs = 400
    recent = [Point(T0, 0, 0, 0), Point(T0 + timedelta(seconds=10), 200, 0, 0)]
    assert current_rate(running, recent, T0 + timedelta(seconds=20)) == pytest.approx(20.0)


def test_current_rate__is_unknown_without_samples_or_when_not_running(
    make_job: Callable[..., ReindexJob],
) -> None:
    done = make_job(status=JobStatus.COMPLETED, total=5, processed=5)
    assert current_rate(done, [Point(T0, 0, 0, 0)], T0 + timedelta(seconds=5)) is None
    running = make_job(status=JobStatus.RUNNING, collection="other")
    assert current_rate(running, [], T0) is None


def test_recent_points__reads_every_running_job_in_one_query(
    make_job: Callable[..., ReindexJob], django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    jobs = [make_job(status=JobStatus.RUNNING, collection=f"c{i}") for i in range(5)]
    jobs.append(make_job(status=JobStatus.COMPLETED, collection="done", processed=5))
    for job in jobs:
        for k in range(3):
            JobSample.objects.create(
                job=job, at=T0 + timedelta(seconds=k), processed=k, failed=0, retries=0
            )
    JobSample.objects.create(
        job=jobs[0], at=T0 - timedelta(hours=1), processed=0, failed=0, retries=0
    )
    with django_assert_num_queries(1):
        points = recent_points(jobs, T0 + timedelta(seconds=10))
    assert set(points) == {job.pk for job in jobs[:5]}
    assert all([p.processed for p in pts] == [0, 1, 2] for pts in points.values())
