"""Many machines, for real: the job database and the pgvector store on one network host, a
worker on each of three others, and the test's own commands on a fifth (tests/netns.py).

Host "db" runs pgserver's PostgreSQL 16 with pgvector, inside its namespace, on its address:
database `reindexer` holds the jobs, `reindexer_vectors` the store. Hosts w1, w2 and w3 each run
one `reindex_worker`, with a short lease, on the data dir that they share through the file
system (the corpus). Nothing here reaches the database from the root namespace, where it is
refused: `reindex start/status/verify` and the test's own SQL (psql) run on host "ctl".

Cutting w1's link mid-slice makes a real partition: its connections time out (nothing refuses
them), its lease lapses on the database's clock, and another host reclaims its slice. Once w1 is
back it must write nothing more, fenced by the lease it lost.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pytest

from tests.integration.conftest import wait_until
from tests.netns import Network, network
from tests.pg_cluster import MANAGE, Cluster, migrate, pgserver_bin, running_cluster

pytestmark = [pytest.mark.slow, pytest.mark.backends]

HOSTS = ("db", "w1", "w2", "w3", "ctl")
WORKERS = ("w1", "w2", "w3")
JOBS_DB, VECTORS_DB = "reindexer", "reindexer_vectors"
PORT = 5432
DOCS, SLICES, BATCH = 300, 3, 10
# 10 batches of at least 300 ms per slice: seconds in which to cut a host mid-slice.
STORE = "flaky(pgvector,latency=300)"
LEASE_SECONDS = 4
SETTINGS = {
    "REINDEXER_LEASE_SECONDS": str(LEASE_SECONDS),
    "REINDEXER_HEARTBEAT_SECONDS": "1",
    "REINDEXER_RETRY_BACKOFF_SECONDS": "0.05",
    "REINDEXER_LOG_LEVEL": "INFO",
    "PYTHONUNBUFFERED": "1",
    "DJANGO_SETTINGS_MODULE": "reindexer.settings",
}
# What a worker logs when its job database stops answering (lease.py, engine.py, worker.py).
NOTICED_THE_SILENCE = (
    "heartbeat failed (attempt",
    "job database unavailable (attempt",
)
# What the worker logs as a job leaves it (worker.py): "worker w1: job 7 lease_lost".
LEFT_WITHOUT_ITS_LEASE = ("lease_lost", "abandoned")
JOB_COLUMNS = (
    "id, status, worker, processed_docs, failed_docs, skipped_docs, batches_done,"
    " batches_failed, retries, checkpoint, lease_token"
)


def write_corpus(path: Path, count: int, prefix: str) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i in range(count):
            doc = {"id": f"{prefix}-{i}", "text": f"document {i} of {prefix}", "metadata": {"n": i}}
            f.write(json.dumps(doc) + "\n")


def records_in(path: Path, bounds: dict[str, Any]) -> int:
    """The records of the byte range `bounds` of a JSONL file, counted here, not by the app."""
    with path.open("rb") as f:
        start = int(bounds["start"]["offset"])
        f.seek(start)
        # The last slice runs to the end of the file (its end is null).
        part = f.read() if bounds["end"] is None else f.read(int(bounds["end"]) - start)
    return sum(1 for line in part.splitlines() if line.strip())


@dataclass
class Site:
    """The installation across the hosts, and the test's ways into it (all through "ctl")."""

    net: Network
    cluster: Cluster
    data_dir: Path
    log_dir: Path
    env: dict[str, str]
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _log_files: list[IO[bytes]] = field(default_factory=list)

    def psql(self, sql: str, database: str = JOBS_DB) -> str:
        url = self.cluster.url(database)
        done = subprocess.run(  # noqa: S603 - pgserver's psql, our own SQL
            self.net["ctl"].command(
                str(self.cluster.bin_dir / "psql"),
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
                url,
            ),  # fmt: skip
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, f"psql on ctl: {done.stderr}"
        return done.stdout

    def rows(self, sql: str) -> list[dict[str, Any]]:
        """The rows of `sql` in the job database, as dicts (json_agg does the typing)."""
        found: list[dict[str, Any]] = json.loads(
            self.psql(f"SELECT coalesce(json_agg(q), '[]'::json) FROM ({sql}) q")  # noqa: S608
        )
        return found

    def manage(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - this interpreter and our manage.py
            self.net["ctl"].command(sys.executable, str(MANAGE), *argv),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start_worker(self, host: str) -> None:
        log = (self.log_dir / f"{host}.log").open("wb")
        self._log_files.append(log)
        self.workers[host] = subprocess.Popen(  # noqa: S603 - on host `host`, our worker
            self.net[host].command(
                sys.executable, str(MANAGE), "reindex_worker", "--worker-id", host
            ),
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def log(self, host: str) -> str:
        return (self.log_dir / f"{host}.log").read_text(errors="replace")

    def tails(self) -> str:
        """The end of every worker's log, for an assertion's message."""
        return "\n".join(f"--- {h}:\n{self.log(h)[-2500:]}" for h in self.workers)

    def stop_workers(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        for log in self._log_files:
            log.close()

    def start_job(self, corpus: str, collection: str) -> int:
        started = self.manage(
            "reindex", "start", "--source", f"jsonl:{corpus}", "--store", STORE,
            "--collection", collection, "--batch-size", str(BATCH), "--slices", str(SLICES),
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        return int(started.stdout.strip().splitlines()[-1])

    def status(self, job_id: int) -> dict[str, Any]:
        shown = self.manage("reindex", "status", str(job_id), "--json")
        assert shown.returncode == 0, shown.stderr
        found: dict[str, Any] = json.loads(shown.stdout)
        return found

    def verify(self, job_id: int) -> dict[str, Any]:
        verified = self.manage("reindex", "verify", str(job_id), "--json")
        assert verified.returncode == 0, verified.stderr
        report: dict[str, Any] = json.loads(verified.stdout)
        return report

    def job_status(self, job_id: int) -> str:
        sql = f"SELECT status FROM reindexer_reindexjob WHERE id = {int(job_id)}"  # noqa: S608
        found = self.rows(sql)
        return str(found[0]["status"]) if found else ""

    def slices(self, job_id: int) -> list[dict[str, Any]]:
        return self.rows(
            f"SELECT {JOB_COLUMNS}, slice_bounds, total_docs FROM reindexer_reindexjob"  # noqa: S608
            f" WHERE parent_id = {int(job_id)} ORDER BY slice_number"
        )

    def events(self, job_ids: list[int]) -> list[dict[str, Any]]:
        ids = ",".join(str(int(i)) for i in job_ids)
        return self.rows(
            "SELECT id, job_id, kind, actor, detail FROM reindexer_jobevent"  # noqa: S608
            f" WHERE job_id IN ({ids}) ORDER BY id"
        )

    def snapshot(self, job_id: int) -> dict[str, Any]:
        """Every row of the job database that a worker of `job_id` could have written."""
        ids = [job_id, *(s["id"] for s in self.slices(job_id))]
        in_ids = ",".join(str(int(i)) for i in ids)
        return {
            "jobs": self.rows(
                f"SELECT {JOB_COLUMNS} FROM reindexer_reindexjob"  # noqa: S608
                f" WHERE id IN ({in_ids}) ORDER BY id"
            ),
            "events": self.events(ids),
            "failures": self.rows(
                "SELECT id, job_id, doc_ids FROM reindexer_batchfailure"  # noqa: S608
                f" WHERE job_id IN ({in_ids}) ORDER BY id"
            ),
        }


def subprocess_env(cluster: Cluster, data_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        # The machine's own Redis and OTLP endpoints are not reachable from the hosts.
        if not k.startswith(("PYTEST_", "REDIS_", "OTEL_", "REINDEXER_", "DATABASE_URL"))
    }
    return {
        **env,
        **SETTINGS,
        "DATABASE_URL": cluster.url(JOBS_DB),
        "REINDEXER_PGVECTOR_URL": cluster.url(VECTORS_DB),
        "REINDEXER_DATA_DIR": str(data_dir),
        "REINDEXER_SOURCE_ROOTS": str(data_dir),
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """Every host up, the database on "db" migrated, one worker running on each worker host;
    all of it removed at the end, whatever happened."""
    data_dir = tmp_path_factory.mktemp("hosts-data")
    log_dir = tmp_path_factory.mktemp("hosts-logs")
    with network(HOSTS) as net:
        db = net["db"]
        bin_dir = pgserver_bin()
        with running_cluster(
            host=db.address, port=PORT, bin_dir=bin_dir, netns=db.netns, trusted_network=net.cidr
        ) as cluster:
            site = Site(net, cluster, data_dir, log_dir, subprocess_env(cluster, data_dir))
            try:
                site.psql(f"CREATE DATABASE {JOBS_DB}", database="postgres")
                site.psql(f"CREATE DATABASE {VECTORS_DB}", database="postgres")
                site.psql("CREATE EXTENSION vector", database=VECTORS_DB)
                migrate(cluster.url(JOBS_DB), data_dir, inside=net["ctl"].command())
                for host in WORKERS:
                    site.start_worker(host)
                yield site
            finally:
                site.stop_workers()


def test_a_sliced_job__completes_with_its_slices_run_on_several_hosts(site: Site) -> None:
    write_corpus(site.data_dir / "across.jsonl", DOCS, "across")
    job_id = site.start_job("across.jsonl", "hosts_across")

    wait_until(
        lambda: site.job_status(job_id) in {"completed", "failed", "cancelled"},
        timeout=60,
        interval=0.5,
        what=f"job {job_id} to end",
    )
    status = site.status(job_id)
    assert status["status"] == "completed", (status, site.tails())
    assert (status["processed_docs"], status["failed_docs"]) == (DOCS, 0), status
    ran_on = {part["worker"] for part in status["slices"]}
    assert len(status["slices"]) == SLICES, status["slices"]
    assert len(ran_on) >= 2 and ran_on <= set(WORKERS), status["slices"]
    report = site.verify(job_id)
    assert (report["missing"], report["duplicates"], report["in_store"]) == (0, 0, DOCS), report


def test_a_host_cut_off_mid_slice__its_slice_is_reclaimed_elsewhere_and_back_it_writes_nothing(
    site: Site, record_property: Callable[[str, object], None]
) -> None:
    corpus = site.data_dir / "cut.jsonl"
    write_corpus(corpus, DOCS, "cut")
    job_id = site.start_job(corpus.name, "hosts_cut")

    def w1_slice() -> list[dict[str, Any]]:
        return [
            s
            for s in site.slices(job_id)
            if s["worker"] == "w1" and s["status"] == "running" and s["processed_docs"] >= BATCH
        ]

    wait_until(lambda: bool(w1_slice()), timeout=30, interval=0.1, what="w1 a batch into a slice")
    victim = w1_slice()[0]["id"]
    site.net.cut("w1")
    cut_at = time.monotonic()

    # 1. After the lease, on the database's clock, another host takes the slice over.
    def reclaim() -> list[dict[str, Any]]:
        return [e for e in site.events([victim]) if e["kind"] == "reclaimed"]

    wait_until(lambda: bool(reclaim()), timeout=45, interval=0.5, what="w1's slice reclaimed")
    assert [e["actor"] for e in reclaim()] in (["w2"], ["w3"]), site.events([victim])
    reclaimed_at = reclaim()[0]["id"]
    wait_until(
        lambda: site.job_status(job_id) in {"completed", "failed", "cancelled"},
        timeout=60,
        interval=0.5,
        what=f"job {job_id} to end",
    )
    assert site.job_status(job_id) == "completed", site.tails()
    report = site.verify(job_id)
    assert (report["missing"], report["duplicates"], report["in_store"]) == (0, 0, DOCS), report
    # w1 notices by itself that the database went silent (keepalives, tcp_user_timeout)
    # rather than hanging on it for the kernel's 15 minutes.
    wait_until(
        lambda: any(line in site.log("w1") for line in NOTICED_THE_SILENCE),
        timeout=45,
        interval=0.5,
        what="w1 to notice that the job database went silent",
    )
    record_property("seconds_until_w1_noticed", round(time.monotonic() - cut_at, 1))
    before = site.snapshot(job_id)

    # 2. w1 comes back: it finds its lease gone, and goes idle having written nothing.
    back_at = datetime.now(UTC)
    site.net.restore("w1")

    def w1_gave_up() -> bool:
        return any(f"job {victim} {how}" in site.log("w1") for how in LEFT_WITHOUT_ITS_LEASE)

    def w1_idle_since_back() -> bool:
        beat = site.rows("SELECT heartbeat_at FROM reindexer_workerprocess WHERE name = 'w1'")
        return bool(beat) and datetime.fromisoformat(beat[0]["heartbeat_at"]) > back_at

    wait_until(w1_gave_up, timeout=45, interval=0.5, what="w1 to give its slice up")
    wait_until(w1_idle_since_back, timeout=30, interval=0.5, what="w1 idle, reconnected")
    after = site.snapshot(job_id)
    assert after == before, site.tails()
    late = site.rows(
        "SELECT id, job_id, kind FROM reindexer_jobevent"  # noqa: S608 - an id of ours
        f" WHERE actor = 'w1' AND id > {int(reclaimed_at)}"
    )
    assert late == [], late
    assert after["failures"] == [], after["failures"]

    part = next(s for s in site.slices(job_id) if s["id"] == victim)
    in_range = records_in(corpus, part["slice_bounds"])
    assert (part["processed_docs"], part["failed_docs"]) == (in_range, 0), part
    assert part["total_docs"] == in_range and part["status"] == "completed", part
    assert sum(s["processed_docs"] for s in site.slices(job_id)) == DOCS
    # Its in-flight batch may have reached the store meanwhile: the same vectors, by id.
    report = site.verify(job_id)
    assert (report["missing"], report["duplicates"], report["in_store"]) == (0, 0, DOCS), report
    assert "Traceback" not in site.log("w1"), site.log("w1")
