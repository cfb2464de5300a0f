"""The job database blinks mid-job: the worker that holds the lease rides the blink out.

These tests run a PostgreSQL 15 cluster of their own, so that they may restart it without
touching anybody else's database, and a TCP gate in front of it that cuts one worker off while
the test and other workers still get through. A trigger stamps every batch commit, which gives
the stall.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Processes, finish, wait_for_output, wait_until
from tests.pg_cluster import Cluster, Database, copied_database, free_port, template_cluster

pytestmark = pytest.mark.slow

TEMPLATE = "reindexer_blink_template"
DOCS = 400
SLOW_STORE = "flaky(sqlite-vec,latency=50)"
LONG_LEASE = {"REINDEXER_LEASE_SECONDS": "30", "REINDEXER_HEARTBEAT_SECONDS": "1"}

# Stamps each batch commit (a change of batches_done) with the database's own clock.
COMMIT_LOG_SQL = """
CREATE TABLE blink_commits (batches_done integer, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION blink_log_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO blink_commits (batches_done) VALUES (NEW.batches_done);
    RETURN NEW;
END $$;
CREATE TRIGGER blink_commit AFTER UPDATE OF batches_done ON reindexer_reindexjob
    FOR EACH ROW WHEN (NEW.batches_done IS DISTINCT FROM OLD.batches_done)
    EXECUTE FUNCTION blink_log_commit();
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The cluster, with a migrated template database that each test copies."""
    with template_cluster(TEMPLATE, tmp_path_factory.mktemp("migrate"), COMMIT_LOG_SQL) as c:
        yield c


class Gate:
    """A TCP forwarder to the cluster: `shut()` refuses new connections and cuts the open ones,
    as a database that went away would; `open()` lets them through again, on the same port."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target_port = target_port
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def open(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def shut(self) -> None:
        if self._listener is not None:
            # shutdown() wakes the accept() blocked in the other thread; close() alone does not.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                return  # shut
            with self._lock:
                self._sockets += [client, server]
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@dataclass
class Blink:
    """One test's database in the cluster, its gate, and subprocesses through either."""

    db: Database
    gate: Gate
    direct: Processes  # straight to the cluster
    gated: Processes  # through the gate

    @property
    def cluster(self) -> Cluster:
        return self.db.cluster

    def rows(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        return self.db.rows(sql, *params)

    def job(self, job_id: int, *columns: str) -> tuple[Any, ...]:
        return self.db.job(job_id, *columns)

    def processed(self, job_id: int) -> int:
        return self.db.processed(job_id)

    def events(self, job_id: int) -> list[tuple[str, str]]:
        return self.db.events(job_id)

    def start_job(self, corpus: Path, data_dir: Path) -> int:
        started = self.direct.run(
            "reindex", "start", "--source", f"jsonl:{corpus.relative_to(data_dir)}",
            "--store", SLOW_STORE, "--batch-size", "10",
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        return int(started.stdout.strip().splitlines()[-1])

    def verify(self, job_id: int) -> dict[str, Any]:
        verified = self.direct.run("reindex", "verify", str(job_id), "--json")
        assert verified.returncode == 0, verified.stderr
        report: dict[str, Any] = json.loads(verified.stdout)
        return report

    def longest_commit_gap(self) -> float:
        stamps = [at for (at,) in self.rows("SELECT at FROM blink_commits ORDER BY at")]
        gaps: list[float] = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
        return max(gaps)


@pytest.fixture
def blink(cluster: Cluster, worker_env: dict[str, str], manage: list[str]) -> Iterator[Blink]:
    with copied_database(cluster, TEMPLATE) as db:
        gate = Gate(cluster.port)
        gate.open()
        direct = Processes({**worker_env, "DATABASE_URL": db.url}, manage)
        gated = Processes({**worker_env, "DATABASE_URL": cluster.url(db.name, gate.port)}, manage)
        try:
            yield Blink(db, gate, direct, gated)
        finally:
            direct.cleanup()
            gated.cleanup()
            gate.shut()


def stderr_of(proc: subprocess.Popen[str], read_so_far: str) -> tuple[int, str]:
    code, _, rest = finish(proc, timeout=120)
    return code, read_so_far + rest


def test_restart__the_worker_holding_the_lease_resumes_from_its_checkpoint_without_a_reclaim(
    blink: Blink,
    make_corpus: Callable[..., Path],
    data_dir: Path,
    record_property: Callable[[str, object], None],
) -> None:
    job_id = blink.start_job(make_corpus(DOCS), data_dir)
    worker = blink.direct.worker("w-blink", env=LONG_LEASE)
    wait_until(lambda: blink.processed(job_id) >= 50, timeout=60, what="50 documents done")

    at_restart = blink.processed(job_id)
    blink.cluster.restart()

    code, err = stderr_of(worker, "")
    assert code == 0, err
    assert blink.job(job_id, "status", "processed_docs") == ("completed", DOCS), err
    assert at_restart < DOCS, "the job ended before the restart, so nothing was tested"
    kinds = [kind for kind, _ in blink.events(job_id)]
    assert "reclaimed" not in kinds and kinds.count("claimed") == 1, kinds
    assert "job database unavailable" in err or "heartbeat failed" in err, err
    assert "Traceback" not in err, err
    report = blink.verify(job_id)
    assert (report["missing"], report["duplicates"], report["in_store"]) == (0, 0, DOCS), report

    # A figure for the report, not an assertion: the machine is shared and its pace varies.
    stall = blink.longest_commit_gap()
    record_property("stall_seconds", round(stall, 2))
    print(f"longest gap between batch commits: {stall:.2f} s\n{err}")  # noqa: T201 - with -rP


def test_cut_off__a_worker_whose_lease_was_reclaimed_meanwhile_drops_the_job(
    blink: Blink, make_corpus: Callable[..., Path], data_dir: Path
) -> None:
    job_id = blink.start_job(make_corpus(DOCS), data_dir)
    holder = blink.gated.worker("w-holder", env=LONG_LEASE)
    wait_until(lambda: blink.processed(job_id) >= 50, timeout=60, what="50 documents done")

    blink.gate.shut()
    seen = wait_for_output(holder, "job database unavailable (attempt 2")
    # A worker that still reaches the database, with a short lease, takes the job over.
    rescuer_env = {"REINDEXER_LEASE_SECONDS": "2", "REINDEXER_HEARTBEAT_SECONDS": "0.5"}
    wait_until(
        lambda: bool(blink.rows(
            "SELECT 1 FROM reindexer_reindexjob WHERE id = %s"
            " AND heartbeat_at < now() - interval '3 seconds'", job_id
        )),
        what="the holder's heartbeat to go stale for the rescuer",
    )  # fmt: skip
    rescuer = blink.direct.worker("w-rescuer", env=rescuer_env)
    wait_until(lambda: ("reclaimed", "w-rescuer") in blink.events(job_id), what="the reclaim")
    blink.gate.open()

    code, err = stderr_of(holder, seen)
    assert code == 0, err
    assert f"job {job_id}: lease lost while the job database was away" in err, err
    assert f"job {job_id} lease_lost" in err, err
    assert "Traceback" not in err, err
    code, _, rescuer_err = finish(rescuer, timeout=120)
    assert code == 0, rescuer_err
    assert blink.job(job_id, "status", "worker") == ("completed", "w-rescuer")
    report = blink.verify(job_id)
    assert (report["missing"], report["duplicates"], report["in_store"]) == (0, 0, DOCS), report


def test_cut_off__longer_than_the_lease_leaves_the_job_to_it_then_one_line_per_failed_claim(
    blink: Blink, make_corpus: Callable[..., Path], data_dir: Path
) -> None:
    job_id = blink.start_job(make_corpus(DOCS), data_dir)
    short_lease = {"REINDEXER_LEASE_SECONDS": "2", "REINDEXER_HEARTBEAT_SECONDS": "0.5"}
    holder = blink.gated.worker("w-holder", env=short_lease)
    wait_until(lambda: blink.processed(job_id) >= 50, timeout=60, what="50 documents done")

    blink.gate.shut()
    seen = wait_for_output(holder, "cannot claim, job database unavailable (attempt 2")
    blink.gate.open()

    code, err = stderr_of(holder, seen)
    assert code == 0, err
    assert "giving up" in err and f"job {job_id} abandoned" in err, err
    assert "Traceback" not in err, err
    # Each failed attempt is one line, numbered in order.
    claims = [line for line in err.splitlines() if "cannot claim" in line]
    numbers = [int(line.split("(attempt ")[1].split(",")[0]) for line in claims]
    assert numbers == list(range(1, len(numbers) + 1)), claims
    # Once the lease had lapsed, the same worker reclaimed its job and finished it.
    assert [e for e in blink.events(job_id) if e[0] in {"claimed", "reclaimed"}] == [
        ("claimed", "w-holder"),
        ("reclaimed", "w-holder"),
    ]
    assert blink.job(job_id, "status") == ("completed",)
    report = blink.verify(job_id)
    assert (report["missing"], report["duplicates"], report["in_store"]) == (0, 0, DOCS), report
