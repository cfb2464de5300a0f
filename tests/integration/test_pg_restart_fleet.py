"""PostgreSQL restarted (`pg_ctl restart -m fast`) under a fleet of workers: busy ones in the
slices of one job, and idle ones waiting on LISTEN.

The cluster is this module's own (tests/pg_cluster.py), so restarting it touches nobody else's
database; each test copies a migrated template. The test reads the database with psycopg,
riding the restart as the workers must.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Processes, wait_until
from tests.integration.fleet import Fleet
from tests.pg_cluster import Cluster, Database, copied_database, template_cluster

pytestmark = pytest.mark.slow

TEMPLATE = "reindexer_fleet_template"
DOCS, SLICES, BATCH = 600, 3, 10
# 20 batches of at least 150 ms per slice: each slice outlasts the restart by seconds.
SLOW_STORE = "flaky(sqlite-vec,latency=150)"
# A lease far longer than the restart: the jobs must ride it out, not be reclaimed.
LEASE = {"REINDEXER_LEASE_SECONDS": "30", "REINDEXER_HEARTBEAT_SECONDS": "1"}
# What a worker logs for each failed attempt to reach the database, with its backoff.
RECONNECTING = (
    "job database unavailable (attempt",
    "heartbeat failed (attempt",
    "cannot claim, job database unavailable (attempt",
)
LISTENERS_SQL = (
    "SELECT application_name FROM pg_stat_activity"
    " WHERE datname = current_database() AND application_name LIKE 'reindexer-listen:%%'"
    " AND query ILIKE 'LISTEN%%'"
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with template_cluster(TEMPLATE, tmp_path_factory.mktemp("migrate")) as c:
        yield c


@pytest.fixture
def db(cluster: Cluster) -> Iterator[Database]:
    with copied_database(cluster, TEMPLATE) as database:
        yield database


@pytest.fixture
def fleet_processes(
    db: Database, worker_env: dict[str, str], manage: list[str]
) -> Iterator[Processes]:
    procs = Processes({**worker_env, "DATABASE_URL": db.url}, manage)
    try:
        yield procs
    finally:
        procs.cleanup()


def start_job(processes: Processes, corpus: Path, data_dir: Path, *extra: str) -> int:
    started = processes.run(
        "reindex", "start", "--source", f"jsonl:{corpus.relative_to(data_dir)}",
        "--store", SLOW_STORE, "--batch-size", str(BATCH), *extra,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    return int(started.stdout.strip().splitlines()[-1])


def verify(processes: Processes, job_id: int) -> dict[str, Any]:
    verified = processes.run("reindex", "verify", str(job_id), "--json", timeout=60)
    assert verified.returncode == 0, verified.stderr
    report: dict[str, Any] = json.loads(verified.stdout)
    return report


def slices(db: Database, parent: int) -> list[dict[str, Any]]:
    columns = ("id", "status", "worker", "processed_docs", "total_docs", "batches_failed")
    found = db.rows(
        f"SELECT {', '.join(columns)} FROM reindexer_reindexjob"  # noqa: S608 - our columns
        " WHERE parent_id = %s ORDER BY slice_number",
        parent,
    )
    return [dict(zip(columns, values, strict=True)) for values in found]


def listeners(db: Database) -> set[str]:
    return {name for (name,) in db.rows(LISTENERS_SQL)}


def test_restart_mid_job__every_slice_rides_it_out_and_the_sliced_job_completes_clean(
    db: Database,
    fleet_processes: Processes,
    make_corpus: Any,
    data_dir: Path,
    record_property: Any,
) -> None:
    job_id = start_job(fleet_processes, make_corpus(DOCS), data_dir, "--slices", str(SLICES))
    fleet = Fleet(fleet_processes, LEASE)
    workers = [f"w{n}" for n in range(1, SLICES + 1)]
    for worker in workers:
        fleet.start(worker)

    def each_worker_in_a_slice() -> bool:
        running = [s for s in slices(db, job_id) if s["status"] == "running"]
        busy = {s["worker"] for s in running if s["processed_docs"] >= BATCH}
        return busy == set(workers)

    wait_until(each_worker_in_a_slice, timeout=60, what="every worker a batch into its slice")
    at_restart = db.processed(job_id)
    db.cluster.restart()

    wait_until(
        lambda: db.job(job_id, "status") == ("completed",), timeout=120, what="the job to end"
    )
    logs = fleet.stop()
    assert 0 < at_restart < DOCS, "the restart was not mid-job, so nothing was tested"
    assert db.job(job_id, "status", "processed_docs", "failed_docs", "batches_failed") == (
        "completed", DOCS, 0, 0,
    ), fleet.tail()  # fmt: skip

    parts = slices(db, job_id)
    assert [s["status"] for s in parts] == ["completed"] * SLICES, parts
    assert [s["batches_failed"] for s in parts] == [0] * SLICES, parts
    assert sum(s["processed_docs"] for s in parts) == DOCS, parts
    ids = [job_id, *(s["id"] for s in parts)]
    failures = db.rows(
        "SELECT job_id, message FROM reindexer_batchfailure WHERE job_id = ANY(%s)", ids
    )
    assert failures == [], failures
    for part in parts:
        kinds = [kind for kind, _ in db.events(part["id"])]
        # The restart failed no slice and took none from its worker.
        assert "failed" not in kinds and "reclaimed" not in kinds, kinds
        assert kinds.count("claimed") == 1, kinds

    for worker, log in logs.items():
        assert any(line in log for line in RECONNECTING), f"{worker} never retried:\n{log}"
        assert "retrying in" in log, log
        assert "Traceback" not in log, log
    report = verify(fleet_processes, job_id)
    assert (report["missing"], report["duplicates"], report["in_store"]) == (0, 0, DOCS), report
    record_property("processed_at_restart", at_restart)


def test_restart_while_idle__the_workers_listen_again_and_take_a_job_queued_after_it(
    db: Database, fleet_processes: Processes, make_corpus: Any, data_dir: Path
) -> None:
    fleet = Fleet(fleet_processes, LEASE)
    workers = ["idle-1", "idle-2"]
    for worker in workers:
        fleet.start(worker)
    expected = {f"reindexer-listen:{worker}" for worker in workers}
    wait_until(lambda: listeners(db) == expected, what="each idle worker to LISTEN")

    db.cluster.restart()
    # Every session died with the server: these are new LISTEN connections.
    wait_until(lambda: listeners(db) == expected, timeout=30, what="each worker to LISTEN again")
    job_id = start_job(fleet_processes, make_corpus(100), data_dir)
    wait_until(
        lambda: db.job(job_id, "status") == ("completed",), timeout=60, what="the new job to end"
    )

    assert all(proc.poll() is None for proc in fleet.workers.values()), "a worker died"
    logs = fleet.stop()
    claims = [actor for kind, actor in db.events(job_id) if kind == "claimed"]
    assert len(claims) == 1 and claims[0] in workers, db.events(job_id)
    for worker, log in logs.items():
        assert "LISTEN connection lost" in log, f"{worker}:\n{log}"
        assert "listening for new jobs again" in log, f"{worker}:\n{log}"
        assert "Traceback" not in log, f"{worker}:\n{log}"
    report = verify(fleet_processes, job_id)
    assert (report["missing"], report["duplicates"], report["in_store"]) == (0, 0, 100), report
