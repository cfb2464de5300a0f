"""Every retry reaches the job's `retries`: the reconnects of a `sql:` source behind a real TCP
proxy that cuts its connections, the openai embedder's dimension probe answered 503, and the
retries of the batch that tripped the breaker on a store that keeps failing."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from reindexer.batching import RetryPolicy
from reindexer.models import JobStatus, ReindexJob
from tests.embedding_server import OK, embedding_server
from tests.integration.conftest import Processes, finish, wait_until
from tests.integration.store_jobs import row
from tests.integration.test_sql_source_jobs import (
    ARTICLES,
    PG_ADDRESS,
    SLOW_STORE,
    TcpProxy,
    good_rows,
    postgres_source,
    use_source,
    verify,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MakeJob = Callable[..., ReindexJob]
# One line per retry of the sql source (reindexer/sources/sql.py logs each before it sleeps).
SQL_RETRY_LINE = re.compile(r"reindexer\.sources\.sql: sql source: retry \d+ after ")


@pytest.fixture
def proxied_source(settings: Any, processes: Processes) -> Iterator[TcpProxy]:
    """500 articles in a throwaway PostgreSQL database, read through a proxy the test can cut."""
    with postgres_source() as db:
        db.articles(good_rows(500))
        proxy = TcpProxy(PG_ADDRESS)
        name = db.url.rsplit("/", 1)[1]
        use_source(settings, processes, f"postgres://postgres@127.0.0.1:{proxy.port}/{name}")
        try:
            yield proxy
        finally:
            proxy.cut()  # its connections must be gone before the database is dropped


def test_sql_source__reconnects_after_its_connection_dropped_are_counted_in_the_job_retries(
    proxied_source: TcpProxy, make_job: MakeJob, processes: Processes
) -> None:
    job = make_job(ARTICLES, batch_size=10, store=SLOW_STORE)
    # A backoff long enough that a short cut is ridden out well before the breaker trips.
    worker = processes.worker("w-blink", env={"REINDEXER_RETRY_BACKOFF_SECONDS": "0.05"})
    wait_until(lambda: row(job).processed_docs >= 30, what="30 rows written")
    proxied_source.cut()
    time.sleep(0.4)  # the reader's next page meets a dead connection, then refused reconnects
    proxied_source.restore()
    code, _, err = finish(worker)
    assert code == 0, err

    done = row(job)
    assert done.status == JobStatus.COMPLETED, done.error
    assert (done.processed_docs, done.failed_docs) == (500, 0)
    made = len(SQL_RETRY_LINE.findall(err))
    assert made >= 1, f"the reader never retried; the cut came too late?\n{err}"
    assert done.retries == made  # nothing else retried: the store has latency, no faults
    report = verify(processes, done)
    assert (report["in_store"], report["missing"], report["duplicates"]) == (500, 0, 0)


def test_sql_source__the_reconnects_of_a_source_that_stays_away_are_counted_as_it_fails(
    proxied_source: TcpProxy, make_job: MakeJob, processes: Processes
) -> None:
    job = make_job(ARTICLES, batch_size=10, store=SLOW_STORE)
    worker = processes.worker("w-outage")
    wait_until(lambda: row(job).processed_docs >= 30, what="30 rows written")
    proxied_source.cut()
    code, _, err = finish(worker)
    assert code == 0, err

    failed = row(job)
    assert failed.status == JobStatus.FAILED
    threshold = RetryPolicy().breaker_threshold  # the reader's policy: the default one
    assert f"{threshold} transient failures in a row" in failed.error
    # The failure that trips the breaker is not retried; each one before it was.
    assert len(SQL_RETRY_LINE.findall(err)) == threshold - 1
    assert failed.retries == threshold - 1


def test_openai__two_503_answers_to_the_dimension_probe_are_two_job_retries(
    settings: Any, make_corpus: Callable[..., Any], make_job: MakeJob, processes: Processes
) -> None:
    # The schedule cycles: two 503s, then far more 200s than this job asks for.
    with embedding_server(schedule=(503, 503, *[OK] * 1000)) as server:
        settings.REINDEXER = dataclasses.replace(
            settings.REINDEXER, openai_base_url=server.base_url
        )
        job = make_job(make_corpus(12), embedder="openai:hash-384", batch_size=5)
        worker = processes.worker("w-probe", env={"REINDEXER_OPENAI_BASE_URL": server.base_url})
        code, _, err = finish(worker)
    assert code == 0, err

    done = row(job)
    assert done.status == JobStatus.COMPLETED, done.error
    assert server.served.statuses[:3] == [503, 503, OK]  # the probe: two refusals, one answer
    assert server.served.count(503) == 2
    assert done.retries == 2
    assert done.dimensions == 384


@pytest.mark.parametrize("max_retries", [1, 3])
def test_store__a_store_down_for_good_trips_the_breaker_and_counts_the_last_batch_retries(
    make_corpus: Callable[..., Any],
    make_job: MakeJob,
    run_burst_worker: Callable[..., None],
    max_retries: int,
) -> None:
    policy = RetryPolicy(max_retries=max_retries)
    threshold = policy.breaker_threshold
    # Every upsert fails transiently. The first batch's group is tried 1 + max_retries times,
    # then halved; each half again... The breaker trips on failure number `threshold`, which
    # is not retried; of the failures before it, all are retries but the last try of each group.
    tries_per_group = max_retries + 1
    expected = (threshold - 1) - (threshold - 1) // tries_per_group
    # The batch must be large enough that halving never reaches single documents first.
    batch = 2 ** (threshold // tries_per_group + 1)
    assert expected == {1: 4, 3: 9}[max_retries]  # max(8, 3 * (r + 1)): 8 for r=1, 12 for r=3

    job = make_job(
        make_corpus(batch * 2),
        store="flaky(sqlite-vec,transient=1)",
        batch_size=batch,
        max_retries=max_retries,
    )
    run_burst_worker("w-breaker")

    failed = row(job)
    assert failed.status == JobStatus.FAILED
    assert failed.error.startswith(f"store unreachable: {threshold} transient failures in a row")
    assert "simulated store timeout" in failed.error
    assert (failed.processed_docs, failed.batches_done) == (0, 0)  # the batch never committed
    assert failed.retries == expected
