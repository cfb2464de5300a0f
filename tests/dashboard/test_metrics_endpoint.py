"""`GET /metrics` in the web process: the values match the job rows, and only staff may scrape."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from dashboard.models import ApiToken
from reindexer.models import JobStatus, ReindexJob, WorkerProcess
from tests.dashboard.slices import run_slice, sliced_job

pytestmark = pytest.mark.django_db

MakeJob = Callable[..., ReindexJob]
Samples = dict[tuple[tuple[str, str], ...], float]


@pytest.fixture
def staff(db: None) -> User:
    return User.objects.create_user("scraper", password="pw-scraper", is_staff=True)


@pytest.fixture
def staff_client(client: Client, staff: User) -> Client:
    client.force_login(staff)
    return client


def scrape(client: Client, **headers: str) -> dict[str, Samples]:
    """Every sample of a successful scrape, by sample name, then by its labels."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.content
    by_name: dict[str, Samples] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            by_name.setdefault(sample.name, {})[labels] = sample.value
    return by_name


def by_label(samples: Samples, label: str) -> dict[str, float]:
    return {dict(labels)[label]: value for labels, value in samples.items()}


def counters(job: ReindexJob, **values: int) -> None:
    ReindexJob.objects.filter(pk=job.pk).update(**values)


def test_jobs__counted_by_status_from_the_top_level_jobs_with_every_status_present(
    make_job: MakeJob, staff_client: Client
) -> None:
    make_job()
    make_job()
    make_job(status=JobStatus.RUNNING, collection="a")
    make_job(status=JobStatus.COMPLETED, processed=5, collection="b")
    parent, slices = sliced_job(make_job, slices=3, collection="c")
    run_slice(slices[0], "w-slice")  # slices, running or pending, are not jobs of their own

    jobs = by_label(scrape(staff_client)["reindexer_jobs"], "status")

    assert jobs == {
        "pending": 2.0,
        "running": 2.0,  # the job on "a" and the sliced job
        "completed": 1.0,
        "failed": 0.0,
        "cancelled": 0.0,
        **{s: 0.0 for s in JobStatus.values if s not in {"pending", "running", "completed"}},
    }
    assert set(jobs) == set(JobStatus.values)


def test_docs_and_retries__sums_of_the_top_level_jobs_counters(
    make_job: MakeJob, staff_client: Client
) -> None:
    done = make_job(status=JobStatus.COMPLETED, processed=100, failed=7, collection="a")
    counters(done, skipped_docs=13, retries=4)
    failed = make_job(status=JobStatus.FAILED, processed=30, failed=20, collection="b")
    counters(failed, retries=9)
    parent, slices = sliced_job(make_job, slices=2, collection="c")
    # A slice's counters also add up in its sliced job's: counted once.
    run_slice(slices[0], "w-slice", processed=3, failed=1)
    make_job()  # pending: nothing yet

    metrics = scrape(staff_client)

    rows = list(ReindexJob.objects.filter(parent__isnull=True))
    assert by_label(metrics["reindexer_docs_total"], "outcome") == {
        "written": sum(j.written_docs for j in rows),
        "failed": sum(j.failed_docs for j in rows),
        "skipped": sum(j.skipped_docs for j in rows),
    }
    assert by_label(metrics["reindexer_docs_total"], "outcome") == {
        "written": 80 + 10 + 2,
        "failed": 28.0,
        "skipped": 13.0,
    }
    assert metrics["reindexer_retries_total"] == {(): 13.0}


def test_heartbeat_age__one_gauge_per_running_job_aged_by_the_database_clock(
    make_job: MakeJob, staff_client: Client
) -> None:
    fresh = make_job(status=JobStatus.RUNNING, heartbeat_age=2, collection="a")
    stale = make_job(status=JobStatus.RUNNING, heartbeat_age=300, collection="b")
    make_job(status=JobStatus.COMPLETED, collection="c")  # ended: no gauge
    make_job()

    ages = by_label(scrape(staff_client)["reindexer_heartbeat_age_seconds"], "job")

    assert set(ages) == {str(fresh.pk), str(stale.pk)}
    now = timezone.now()
    for job in (fresh, stale):
        heartbeat = ReindexJob.objects.get(pk=job.pk).heartbeat_at
        assert heartbeat is not None
        # Generous: the scrape and this line read the clock a moment apart.
        assert ages[str(job.pk)] == pytest.approx((now - heartbeat).total_seconds(), abs=10)
    assert ages[str(fresh.pk)] < 60 < ages[str(stale.pk)]


def test_queue_depth__the_pending_jobs_a_worker_could_claim(
    make_job: MakeJob, staff_client: Client
) -> None:
    make_job(status=JobStatus.RUNNING, collection="held")
    make_job(collection="held")  # waits for the running job's collection: not claimable
    make_job(collection="free")
    make_job(collection="free-too")
    make_job(status=JobStatus.CANCELLED, collection="gone")
    # A stale running job is claimable too, but it is no longer queued.
    make_job(status=JobStatus.RUNNING, heartbeat_age=300, collection="stale")

    assert scrape(staff_client)["reindexer_queue_depth"] == {(): 2.0}


@pytest.mark.django_db(transaction=True)
def test_batch_histogram__sums_the_workers_tallies_from_their_registry_rows(
    staff_client: Client, make_corpus: Callable[..., Path], make_job: MakeJob
) -> None:
    first = make_job(make_corpus(30, name="one.jsonl"), batch_size=10, collection="one")
    call_command("reindex_worker", "--burst", "--worker-id", "w-one")
    second = make_job(make_corpus(12, name="two.jsonl"), batch_size=5, collection="two")
    call_command("reindex_worker", "--burst", "--worker-id", "w-two")
    batches = [ReindexJob.objects.get(pk=j.pk).batches_done for j in (first, second)]
    assert batches == [3, 3]

    samples = scrape(staff_client)
    assert samples["reindexer_batch_seconds_count"] == {(): 6.0}
    assert samples["reindexer_batch_seconds_bucket"][(("le", "+Inf"),)] == 6.0
    assert samples["reindexer_batch_seconds_sum"][()] > 0
    # Cumulative, bound by bound, as Prometheus reads `le`.
    bounds = sorted(
        (float(labels[0][1]), n) for labels, n in samples["reindexer_batch_seconds_bucket"].items()
    )
    assert [n for _, n in bounds] == sorted(n for _, n in bounds)
    # Each worker's row holds its own tally since it started.
    tallies = dict(WorkerProcess.objects.values_list("name", "batch_seconds"))
    assert {name: sum(t["buckets"]) for name, t in tallies.items()} == {"w-one": 3, "w-two": 3}


def test_batch_histogram__empty_with_no_worker_yet(staff_client: Client) -> None:
    samples = scrape(staff_client)
    assert samples["reindexer_batch_seconds_count"] == {(): 0.0}
    assert samples["reindexer_batch_seconds_bucket"][(("le", "+Inf"),)] == 0.0


def test_response__prometheus_text_format_never_cached(staff_client: Client) -> None:
    response = staff_client.get("/metrics")

    assert response["Content-Type"].startswith("text/plain; version=")
    assert "no-store" in response["Cache-Control"]
    assert "max-age=0" in response["Cache-Control"]


def test_response__openmetrics_when_the_scraper_asks_for_it(staff_client: Client) -> None:
    response = staff_client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().rstrip().endswith("# EOF")


# Who may scrape.


def test_auth__anonymous_gets_401_with_a_bearer_challenge(client: Client) -> None:
    response = client.get("/metrics")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert b"reindexer_" not in response.content


def test_auth__a_session_that_is_not_staff_gets_403(client: Client, operator: User) -> None:
    client.force_login(operator)  # may operate jobs, but is no staff member

    response = client.get("/metrics")

    assert response.status_code == 403
    assert b"reindexer_" not in response.content


def test_auth__a_staff_session_gets_the_metrics(staff_client: Client) -> None:
    assert "reindexer_jobs" in scrape(staff_client)


def test_auth__a_staff_users_token_gets_the_metrics(staff: User) -> None:
    raw = ApiToken.issue(staff, "prometheus")[1]

    metrics = scrape(Client(), Authorization=f"Bearer {raw}")

    assert "reindexer_queue_depth" in metrics
    assert ApiToken.objects.get(user=staff).last_used_at is not None


@pytest.mark.parametrize(
    "header",
    ["Bearer rxk_unknown-token", "Bearer ", "Bearer two words", "bearer rxk_" + "x" * 300],
)
def test_auth__a_bad_token_gets_401_even_beside_a_staff_session(
    staff_client: Client, header: str
) -> None:
    response = staff_client.get("/metrics", headers={"Authorization": header})

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_auth__a_revoked_token_gets_401(staff: User) -> None:
    token, raw = ApiToken.issue(staff, "prometheus")
    token.revoke()

    response = Client().get("/metrics", headers={"Authorization": f"Bearer {raw}"})

    assert response.status_code == 401


def test_auth__a_token_of_a_user_who_is_not_staff_gets_403(operator: User) -> None:
    raw = ApiToken.issue(operator, "prometheus")[1]

    response = Client().get("/metrics", headers={"Authorization": f"Bearer {raw}"})

    assert response.status_code == 403


def test_method__only_get(staff_client: Client) -> None:
    assert staff_client.post("/metrics").status_code == 405


def test_scrape__as_many_queries_for_thirty_jobs_as_for_three(
    make_job: MakeJob, staff_client: Client
) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            scrape(staff_client)
        return len(captured)

    for n in range(3):
        make_job(status=JobStatus.RUNNING, collection=f"few-{n}")
    few = queries()
    for n in range(27):
        make_job(status=JobStatus.RUNNING if n % 2 else JobStatus.PENDING, collection=f"many-{n}")
    many = queries()

    assert many == few
    # The session, the user, then jobs, heartbeats, queue, sums and the workers' tallies: one each.
    assert few == 7
