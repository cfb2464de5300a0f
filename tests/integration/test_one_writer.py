"""One writer per collection: enforced by the database, honoured by the claim, seen in the queue."""

from __future__ import annotations

import io
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.test import Client

from reindexer.models import JobStatus, ReindexJob, WorkerProcess
from reindexer.queue import waiting_for
from reindexer.worker import claim_next
from tests.integration.conftest import Processes, claimed, finish, wait_until

MakeJob = Callable[..., ReindexJob]
Corpus = Callable[..., Path]
LEASE = 30.0


def row(job: ReindexJob) -> ReindexJob:
    return ReindexJob.objects.get(pk=job.pk)


@pytest.mark.django_db
def test_constraint__the_database_refuses_a_second_running_job_on_the_same_collection(
    make_job: MakeJob,
) -> None:
    make_job(status="running", collection="shared")
    second = make_job(collection="shared")
    with pytest.raises(IntegrityError), transaction.atomic():
        claimed(second)
    assert row(second).status == JobStatus.PENDING


@pytest.mark.django_db
def test_constraint__the_same_collection_name_in_another_store_is_another_writer(
    make_job: MakeJob,
) -> None:
    make_job(status="running", collection="shared")
    other_store = make_job(collection="shared", store="flaky(sqlite-vec)")
    claimed(other_store)
    assert row(other_store).status == JobStatus.RUNNING


@pytest.mark.django_db
def test_claim_next__skips_a_job_whose_collection_is_being_written_and_takes_the_next(
    make_job: MakeJob,
) -> None:
    holder = make_job(status="running", collection="shared")
    blocked = make_job(collection="shared")
    free = make_job(collection="elsewhere")
    result = claim_next("w2", LEASE)
    assert result is not None
    assert result[0].pk == free.pk
    assert row(blocked).status == JobStatus.PENDING
    assert claim_next("w3", LEASE) is None
    assert waiting_for(row(blocked)) == holder.pk


@pytest.mark.django_db
def test_claim_next__the_waiting_job_starts_once_the_writer_ends(make_job: MakeJob) -> None:
    first = make_job(collection="shared")
    second = make_job(collection="shared")
    one = claim_next("w1", LEASE)
    assert one is not None and one[0].pk == first.pk
    assert claim_next("w2", LEASE) is None
    one[0].complete(one[1], "w1")
    two = claim_next("w2", LEASE)
    assert two is not None and two[0].pk == second.pk


@pytest.mark.django_db
def test_claim_next__a_stale_writer_is_reclaimed_before_the_job_waiting_behind_it(
    make_job: MakeJob,
) -> None:
    waiting = make_job(collection="shared")
    stale = make_job(status="running", collection="shared", heartbeat_age=LEASE + 5)
    # The waiting job is older, so first in claim order, but its collection is held.
    assert waiting.created_at < stale.created_at
    result = claim_next("w-rescuer", LEASE)
    assert result is not None
    assert result[0].pk == stale.pk
    assert row(stale).worker == "w-rescuer"
    assert row(waiting).status == JobStatus.PENDING


@pytest.mark.django_db
def test_waiting_for__a_later_pending_job_waits_for_the_one_ahead_of_it_on_its_collection(
    make_job: MakeJob,
) -> None:
    first = make_job(collection="shared")
    second = make_job(collection="shared")
    alone = make_job(collection="alone")
    assert waiting_for(first) is None
    assert waiting_for(second) == first.pk
    assert waiting_for(alone) is None


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_workers__the_second_job_on_a_collection_waits_then_runs_and_both_are_clean(
    make_corpus: Corpus,
    make_job: MakeJob,
    processes: Processes,
    client: Client,
    viewer: User,
) -> None:
    corpus = make_corpus(600)
    # About 6 s of writing for the first job: time for the second worker to start and wait.
    store = "flaky(sqlite-vec,latency=100)"
    first = make_job(corpus, batch_size=10, store=store, collection="shared")
    second = make_job(corpus, batch_size=10, store=store, collection="shared")
    fast = {"REINDEXER_HEARTBEAT_SECONDS": "0.2"}
    w1 = processes.worker("w-one", burst=False, env=fast)
    wait_until(lambda: row(first).status == JobStatus.RUNNING, what="the first job to start")
    w2 = processes.worker("w-two", burst=False, env=fast)
    wait_until(
        lambda: WorkerProcess.objects.filter(name="w-two").exists(),
        what="the second worker to register",
    )

    client.force_login(viewer)
    page = client.get("/queue/").content.decode()
    assert row(first).status == JobStatus.RUNNING, "the first job ended before the check"
    assert f"waiting for #{first.pk}" in page
    assert row(second).status == JobStatus.PENDING

    wait_until(lambda: row(second).status == JobStatus.COMPLETED, timeout=60, what="the second job")
    a, b = row(first), row(second)
    assert a.status == JobStatus.COMPLETED
    assert a.finished_at is not None and b.started_at is not None
    assert b.started_at >= a.finished_at
    for job in (a, b):
        assert (job.processed_docs, job.failed_docs) == (600, 0)
        verify = processes.run("reindex", "verify", str(job.pk), "--json")
        assert verify.returncode == 0, verify.stderr
        report = json.loads(verify.stdout)
        assert (report["in_store"], report["missing"], report["duplicates"]) == (600, 0, 0)

    for proc in (w1, w2):
        proc.send_signal(signal.SIGTERM)
        code, _, err = finish(proc)
        assert code == 0, err
    assert sum(WorkerProcess.objects.values_list("jobs_done", flat=True)) == 2


@pytest.mark.django_db
def test_status_json__gives_waiting_for_of_each_pending_job_and_null_for_the_others(
    make_job: MakeJob,
) -> None:
    holder = make_job(status="running", collection="shared")
    behind = make_job(collection="shared")
    free = make_job(collection="other")

    def status(*argv: str) -> Any:
        out = io.StringIO()
        call_command("reindex", "status", *argv, "--json", stdout=out)
        return json.loads(out.getvalue())

    rows = {row["id"]: row["waiting_for"] for row in status()}
    assert rows == {holder.pk: None, behind.pk: holder.pk, free.pk: None}
    assert status(str(behind.pk))["waiting_for"] == holder.pk
    assert status(str(holder.pk))["waiting_for"] is None
