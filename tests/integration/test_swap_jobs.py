"""Swap jobs end to end on sqlite-vec, run by the in-process burst worker: a first swap onto a
fresh alias, a second one moving it on, readers through `backend.open(alias)`; manual approval,
discard, a cutover gate that fails (the count outside the budget, a canary that cannot pass), a
cancel mid-write; rollback and prune through the command line."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from reindexer.backends import NoOptions
from reindexer.embedders.hashing import HashingEmbedder
from reindexer.errors import BackendFailed
from reindexer.jobs import cancel_job, force_cancel_job, resume_job, retry_failed
from reindexer.models import (
    AliasMove,
    EventKind,
    InvalidTransition,
    JobEvent,
    JobStatus,
    ReindexJob,
)
from reindexer.presenter import present
from reindexer.signals import batch_committed
from reindexer.stores import STORES, store_backend
from reindexer.stores.base import Hit, VectorStore
from reindexer.stores.delegating import DelegatingBackend, DelegatingStore
from reindexer.stores.sqlite_vec import SqliteVecBackend
from reindexer.swaps.actions import approve_swap
from tests.integration.conftest import Processes

pytestmark = pytest.mark.django_db(transaction=True)

MakeJob = Callable[..., ReindexJob]
Run = Callable[..., None]
DIMS = 384  # the hashing embedder's
ALIAS = "docs"


def words(i: int, prefix: str) -> str:
    """Words of document `i`'s own, so its vector stands apart from its neighbours'."""
    return f"{prefix} " + " ".join(f"w{i * 8 + k}" for k in range(8))


def write_corpus(data_dir: Path, name: str, prefix: str, n: int) -> str:
    """A JSONL corpus of `n` documents with ids `PREFIX-00000`...; its source spec."""
    with (data_dir / name).open("w", encoding="utf-8") as f:
        for i in range(n):
            doc = {"id": f"{prefix}-{i:05d}", "text": words(i, prefix), "metadata": {"n": i}}
            f.write(json.dumps(doc) + "\n")
    return f"jsonl:{name}"


def swap_job(make_job: MakeJob, data_dir: Path, prefix: str, n: int, **fields: Any) -> ReindexJob:
    source = write_corpus(data_dir, f"{prefix}-{n}.jsonl", prefix, n)
    fields.setdefault("collection", ALIAS)
    fields.setdefault("batch_size", 25)
    return make_job(source, mode="swap", **fields)


def run_swap(
    make_job: MakeJob, data_dir: Path, run: Run, prefix: str, n: int, **fields: Any
) -> ReindexJob:
    """A swap job run by the burst worker to its end (or to its wait for approval), re-read."""
    job = swap_job(make_job, data_dir, prefix, n, **fields)
    run()
    job.refresh_from_db()
    return job


def reader_ids(store: str = "sqlite-vec", alias: str = ALIAS) -> tuple[int, set[str]]:
    """What a reader of the alias sees: its count, and the prefixes of a search's ids."""
    opened = store_backend(store).open(alias, DIMS)
    try:
        vector = HashingEmbedder(DIMS).embed(["w8 w9 w10"])[0]
        return opened.count(), {hit.id.split("-")[0] for hit in opened.search(vector, k=5)}
    finally:
        opened.close()


def kinds(job: ReindexJob) -> list[str]:
    return list(job.events.order_by("at", "id").values_list("kind", flat=True))


def cli(*args: str) -> str:
    out = StringIO()
    call_command("reindex", *args, stdout=out)
    return out.getvalue()


def test_swap__first_swap_builds_its_own_collection_and_creates_the_alias(
    make_job: MakeJob, data_dir: Path, run_burst_worker: Run
) -> None:
    job = run_swap(make_job, data_dir, run_burst_worker, "old", 60)

    assert job.status == JobStatus.COMPLETED, job.error
    built = f"{ALIAS}__{job.pk}"
    assert job.verification == {
        "passed": True,
        "collection": built,
        "previous": None,
        "missing": 0,
        "duplicates": 0,
        "count": 60,
        "previous_count": None,
        "budget": 0,
        "canary": {"sampled": 20, "found": 20, "misses": []},
        "failures": [],
    }
    assert store_backend("sqlite-vec").alias_target(ALIAS) == built
    assert reader_ids() == (60, {"old"})
    [move] = AliasMove.objects.all()
    assert (move.store, move.alias, move.collection, move.previous, move.kind, move.job_id) == (
        "sqlite-vec",
        ALIAS,
        built,
        "",
        "swap",
        job.pk,
    )
    assert kinds(job)[-3:] == ["phase", "swapped", "completed"]
    swapped = job.events.get(kind=EventKind.SWAPPED)
    assert swapped.detail == f"alias {ALIAS} now serves {built} (a new alias)"
    assert list(job.phases.values_list("name", flat=True)) == [
        "counting",
        "writing",
        "verifying",
        "swapping",
    ]


def test_swap__second_swap_moves_the_alias_on_and_keeps_the_first_collection(
    make_job: MakeJob, data_dir: Path, run_burst_worker: Run
) -> None:
    first = run_swap(make_job, data_dir, run_burst_worker, "old", 60)
    second = run_swap(make_job, data_dir, run_burst_worker, "new", 55)

    assert second.status == JobStatus.COMPLETED, second.error
    v = second.verification
    assert (v["previous"], v["previous_count"], v["budget"], v["count"]) == (
        f"{ALIAS}__{first.pk}",
        60,
        6,  # ceil(0.1 * 60)
        55,
    )
    assert reader_ids() == (55, {"new"})
    backend = store_backend("sqlite-vec")
    assert backend.physical_collections(ALIAS) == [f"{ALIAS}__{first.pk}", f"{ALIAS}__{second.pk}"]
    assert second.events.get(kind=EventKind.SWAPPED).detail == (
        f"alias {ALIAS} now serves {ALIAS}__{second.pk} (was {ALIAS}__{first.pk})"
    )


def test_swap__manual_approval_waits_without_a_lease_then_swaps_on_approve(
    make_job: MakeJob, data_dir: Path, run_burst_worker: Run
) -> None:
    first = run_swap(make_job, data_dir, run_burst_worker, "old", 40)
    job = run_swap(make_job, data_dir, run_burst_worker, "new", 40, approve="manual")

    assert job.status == JobStatus.AWAITING_APPROVAL
    assert (job.lease_token, job.worker, job.finished_at) == (None, "", None)
    assert job.verification["passed"] is True
    assert reader_ids() == (40, {"old"})  # the alias still serves the first collection
    waiting = job.events.get(kind=EventKind.AWAITING_APPROVAL)
    assert waiting.detail == (
        f"{ALIAS}__{job.pk}: 40 documents, 40 in {ALIAS}__{first.pk} (budget 4);"
        " 0 missing, 0 duplicated; canary 20/20 found in their top 5"
    )
    status = cli("status", str(job.pk))
    assert "awaiting_approval" in status
    assert f"[awaiting approval: {ALIAS}__{job.pk}: 40 documents" in status
    assert f"`reindex approve {job.pk}` to swap" in status
    assert json.loads(cli("status", str(job.pk), "--json"))["verification"] == job.verification

    out = cli("approve", str(job.pk))
    assert out == (
        f"job {job.pk}: alias {ALIAS} now serves {ALIAS}__{job.pk} (was {ALIAS}__{first.pk})\n"
    )
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED and job.finished_at is not None
    assert reader_ids() == (40, {"new"})
    assert kinds(job)[-3:] == ["awaiting_approval", "swapped", "completed"]
    # The operator's Swap is the job's last phase, ended with it, as an automatic swap's is.
    assert job.phase == "swapping"
    phases = list(job.phases.order_by("started_at", "id").values_list("name", "detail"))
    assert [name for name, _ in phases][-2:] == ["verifying", "swapping"]
    assert phases[-1][1] == "approved by cli"
    assert not job.phases.filter(finished_at__isnull=True).exists()
    with pytest.raises(CommandError, match="only a swap job awaiting approval can be"):
        cli("approve", str(job.pk))


def test_swap__discard_drops_what_the_job_built_and_leaves_the_alias(
    make_job: MakeJob, data_dir: Path, run_burst_worker: Run
) -> None:
    first = run_swap(make_job, data_dir, run_burst_worker, "old", 30)
    job = swap_job(make_job, data_dir, "new", 30, approve="manual")
    other = run_swap(make_job, data_dir, run_burst_worker, "new", 31, approve="manual")
    backend = store_backend("sqlite-vec")
    assert backend.physical_collections(ALIAS) == [
        f"{ALIAS}__{first.pk}",
        f"{ALIAS}__{job.pk}",
        f"{ALIAS}__{other.pk}",
    ]

    assert cli("discard", str(job.pk)) == f"job {job.pk}: discarded; alias {ALIAS} left as it was\n"
    cancel_job(other)  # a cancel of a job awaiting approval is a discard
    for ended in (job, other):
        ended.refresh_from_db()
        assert ended.status == JobStatus.CANCELLED
        assert kinds(ended)[-2:] == ["cancelled", "discarded"]
    assert backend.physical_collections(ALIAS) == [f"{ALIAS}__{first.pk}"]
    assert backend.alias_target(ALIAS) == f"{ALIAS}__{first.pk}"
    assert reader_ids() == (30, {"old"})
    assert JobEvent.objects.get(job=job, kind=EventKind.DISCARDED).detail == (
        f"dropped its collection {ALIAS}__{job.pk} (discarded by cli); alias {ALIAS} left as it was"
    )


def test_swap__a_count_outside_the_error_budget_fails_the_gate_and_drops_the_collection(
    make_job: MakeJob, data_dir: Path, run_burst_worker: Run
) -> None:
    first = run_swap(make_job, data_dir, run_burst_worker, "old", 60)
    shrunk = run_swap(make_job, data_dir, run_burst_worker, "new", 30)

    assert shrunk.status == JobStatus.FAILED
    assert shrunk.error == (
        f"cutover gate failed: {ALIAS}__{shrunk.pk} holds 30 documents against 60 in"
        f" {ALIAS}__{first.pk}: 30 apart, more than the error budget of 6"
    )
    assert shrunk.verification["passed"] is False
    assert shrunk.verification["failures"] == [shrunk.error.removeprefix("cutover gate failed: ")]
    backend = store_backend("sqlite-vec")
    assert backend.physical_collections(ALIAS) == [f"{ALIAS}__{first.pk}"]
    assert backend.alias_target(ALIAS) == f"{ALIAS}__{first.pk}"
    assert reader_ids() == (60, {"old"})
    assert kinds(shrunk)[-2:] == ["failed", "discarded"]
    assert not AliasMove.objects.filter(job=shrunk).exists()


class BlindStore(DelegatingStore):
    """Searches return the collection's last documents whatever the query: no canary passes."""

    def search(self, vector: Any, k: int = 10) -> list[Hit]:
        docs = self.inner.documents(None, 10_000)[-k:]
        return [Hit(d.id, 1.0, d.text, d.metadata) for d in docs]


class BlindBackend(DelegatingBackend):
    def open(self, collection: str, dimensions: int) -> VectorStore:
        return BlindStore(self.inner.open(collection, dimensions))


@pytest.fixture
def blind_store() -> Iterator[str]:
    STORES.register("blind-sqlite-vec", NoOptions, lambda _: BlindBackend(SqliteVecBackend()))
    try:
        yield "blind-sqlite-vec"
    finally:
        STORES.unregister("blind-sqlite-vec")


def test_swap__a_canary_that_cannot_find_its_documents_fails_the_gate(
    make_job: MakeJob, data_dir: Path, run_burst_worker: Run, blind_store: str
) -> None:
    job = run_swap(make_job, data_dir, run_burst_worker, "old", 100, store=blind_store)

    assert job.status == JobStatus.FAILED
    canary = job.verification["canary"]
    # Every 5th document is sampled; the searches return the last 5, where only old-00095 is.
    assert (canary["sampled"], canary["found"], len(canary["misses"])) == (20, 1, 19)
    assert "old-00095" not in canary["misses"]
    assert job.error.startswith(
        "cutover gate failed: canary: 19 of 20 sampled documents were not in their own top 5"
        " (old-00000, old-00005, old-00010, old-00015, old-00020, …)"
    )
    backend = store_backend("sqlite-vec")
    assert backend.physical_collections(ALIAS) == []
    assert backend.alias_target(ALIAS) is None


def test_swap__a_cancel_mid_write_drops_the_partial_collection(
    make_job: MakeJob, data_dir: Path, run_burst_worker: Run
) -> None:
    first = run_swap(make_job, data_dir, run_burst_worker, "old", 30)
    job = swap_job(make_job, data_dir, "new", 200)

    def cancel_after_first_batch(sender: object, *, job: ReindexJob, **_: Any) -> None:
        if job.batches_done == 1:
            cancel_job(job)

    batch_committed.connect(cancel_after_first_batch, weak=False)
    try:
        run_burst_worker()
    finally:
        batch_committed.disconnect(cancel_after_first_batch)
    job.refresh_from_db()

    assert job.status == JobStatus.CANCELLED
    assert 0 < job.processed_docs < 200
    assert job.verification == {}
    backend = store_backend("sqlite-vec")
    assert backend.physical_collections(ALIAS) == [f"{ALIAS}__{first.pk}"]
    assert reader_ids() == (30, {"old"})
    assert JobEvent.objects.get(job=job, kind=EventKind.DISCARDED).detail == (
        f"dropped its collection {ALIAS}__{job.pk} (the job cancelled); alias {ALIAS} left as"
        " it was"
    )


def swaps(make_job: MakeJob, data_dir: Path, run: Run, sizes: Sequence[int]) -> list[int]:
    """A swap job per size, one after the other; their ids."""
    ids = []
    for n in sizes:
        ids.append(swap_job(make_job, data_dir, f"v{n}", n, max_failed_ratio=1.0).pk)
        run()
    return ids


def test_rollback_and_prune__through_the_command_line(
    make_job: MakeJob, data_dir: Path, run_burst_worker: Run
) -> None:
    a, b, c = swaps(make_job, data_dir, run_burst_worker, [20, 21, 22])
    backend = store_backend("sqlite-vec")

    assert cli("rollback", ALIAS) == f"alias {ALIAS} now serves {ALIAS}__{b} (was {ALIAS}__{c})\n"
    assert reader_ids() == (21, {"v21"})
    # Twice walks two swaps back, not to and fro.
    assert cli("rollback", ALIAS, "--store", "sqlite-vec") == (
        f"alias {ALIAS} now serves {ALIAS}__{a} (was {ALIAS}__{b})\n"
    )
    with pytest.raises(CommandError, match="the first collection it ever served"):
        cli("rollback", ALIAS)
    rollbacks = AliasMove.objects.filter(kind="rollback").order_by("at", "id")
    assert [(m.collection, m.previous, m.job_id) for m in rollbacks] == [
        (f"{ALIAS}__{b}", f"{ALIAS}__{c}", b),
        (f"{ALIAS}__{a}", f"{ALIAS}__{b}", a),
    ]

    # Serving a, the oldest: keep 1 keeps the newest (c) and the served one (a).
    assert cli("prune", ALIAS, "--keep", "1") == f"dropped {ALIAS}__{b}\n"
    assert backend.physical_collections(ALIAS) == [f"{ALIAS}__{a}", f"{ALIAS}__{c}"]
    assert cli("prune", ALIAS, "--keep", "0") == f"dropped {ALIAS}__{c}\n"
    assert cli("prune", ALIAS, "--keep", "0") == (
        f"alias {ALIAS}: nothing to prune (keeping the newest 0)\n"
    )
    assert reader_ids() == (20, {"v20"})
    assert JobEvent.objects.get(job_id=c, kind=EventKind.DISCARDED).detail == (
        f"pruned its collection {ALIAS}__{c}"
    )


def test_rollback__errors_are_one_line_on_stderr_with_exit_code_1(
    make_job: MakeJob, data_dir: Path, run_burst_worker: Run, processes: Processes
) -> None:
    [only] = swaps(make_job, data_dir, run_burst_worker, [10])
    done = processes.run("reindex", "rollback", ALIAS)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"CommandError: alias '{ALIAS}' serves {ALIAS}__{only}, the first collection it ever"
        " served: there is nothing earlier to roll back to\n"
    )
    missing = processes.run("reindex", "rollback", "nothing_here")
    assert (missing.returncode, missing.stderr.count("\n")) == (1, 1)
    assert "'nothing_here' is not an alias: nothing to roll back" in missing.stderr
    bad_store = processes.run("reindex", "prune", ALIAS, "--keep", "1", "--store", "nope")
    assert (bad_store.returncode, bad_store.stderr.count("\n")) == (1, 1)
    assert "unknown store 'nope'" in bad_store.stderr
    negative = processes.run("reindex", "prune", ALIAS, "--keep", "-1")
    assert negative.returncode == 1
    assert "keep must be from 0 to 1000, got -1" in negative.stderr


def test_approve__refused_once_the_alias_moved_since_the_verification(
    make_job: MakeJob, data_dir: Path, run_burst_worker: Run
) -> None:
    run_swap(make_job, data_dir, run_burst_worker, "old", 20)
    waiting = run_swap(make_job, data_dir, run_burst_worker, "new", 20, approve="manual")
    later = run_swap(make_job, data_dir, run_burst_worker, "new", 21)

    with pytest.raises(InvalidTransition, match=f"serves {ALIAS}__{later.pk} now, not"):
        approve_swap(waiting)
    waiting.refresh_from_db()
    assert waiting.status == JobStatus.AWAITING_APPROVAL
    assert store_backend("sqlite-vec").alias_target(ALIAS) == f"{ALIAS}__{later.pk}"


def test_approve__a_store_error_leaves_the_job_awaiting(
    make_job: MakeJob, data_dir: Path, run_burst_worker: Run
) -> None:
    job = run_swap(make_job, data_dir, run_burst_worker, "old", 20, approve="manual")
    backend = store_backend("sqlite-vec")
    built = f"{ALIAS}__{job.pk}"
    Path(backend.location(built)).unlink()  # the store now refuses to point the alias at it

    with pytest.raises(BackendFailed, match="it does not exist"):
        approve_swap(job, actor="ops")
    job.refresh_from_db()
    assert job.status == JobStatus.AWAITING_APPROVAL
    assert backend.alias_target(ALIAS) is None
    assert not AliasMove.objects.exists()


def test_force_cancel__drops_the_collection_a_dead_worker_was_building(
    make_job: MakeJob, data_dir: Path
) -> None:
    source = write_corpus(data_dir, "old.jsonl", "old", 10)
    job = make_job(source, status=JobStatus.RUNNING, heartbeat_age=120, mode="swap")
    backend = store_backend("sqlite-vec")
    built = f"{job.collection}__{job.pk}"
    backend.open(built, DIMS).close()  # what the dead worker had begun
    assert backend.physical_collections(job.collection) == [built]

    force_cancel_job(job)
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert backend.physical_collections(job.collection) == []
    assert kinds(job)[-2:] == ["cancelled", "discarded"]


def test_swap__failed_documents_are_not_missing_and_retry_into_the_built_collection(
    make_job: MakeJob, data_dir: Path, run_burst_worker: Run
) -> None:
    job = run_swap(
        make_job, data_dir, run_burst_worker, "old", 40, store="flaky(sqlite-vec,poison=old-00003)"
    )
    assert (job.status, job.failed_docs) == (JobStatus.COMPLETED, 1), job.error
    assert (job.verification["missing"], job.verification["count"]) == (0, 39)
    assert reader_ids() == (39, {"old"})

    retry = retry_failed(job)
    assert (retry.mode, retry.collection, retry.approve) == ("full", f"{ALIAS}__{job.pk}", "auto")
    with pytest.raises(InvalidTransition, match="cannot be resumed: a swap job that failed"):
        resume_job(job)


def test_status__a_job_awaiting_approval_is_labelled_so(
    make_job: MakeJob, data_dir: Path, run_burst_worker: Run
) -> None:
    job = run_swap(make_job, data_dir, run_burst_worker, "old", 10, approve="manual")
    view = present(ReindexJob.objects.get(pk=job.pk))
    assert (view.label, view.can_approve, view.can_discard, view.can_cancel) == (
        "awaiting approval",
        True,
        True,
        False,
    )


def test_swap__adopts_a_collection_reindexed_in_place_before_as_its_base(
    make_job: MakeJob, data_dir: Path, run_burst_worker: Run
) -> None:
    in_place = make_job(write_corpus(data_dir, "old.jsonl", "old", 30), collection=ALIAS)
    run_burst_worker()
    in_place.refresh_from_db()
    assert in_place.status == JobStatus.COMPLETED
    job = run_swap(make_job, data_dir, run_burst_worker, "new", 29)

    assert job.status == JobStatus.COMPLETED, job.error
    v = job.verification
    assert (v["previous"], v["previous_count"], v["budget"]) == (ALIAS, 30, 3)
    assert AliasMove.objects.get(job=job).previous == f"{ALIAS}__base"
    assert reader_ids() == (29, {"new"})
    assert (
        cli("rollback", ALIAS)
        == f"alias {ALIAS} now serves {ALIAS}__base (was {ALIAS}__{job.pk})\n"
    )
    assert reader_ids() == (30, {"old"})


@pytest.mark.slow
def test_swap__from_the_command_line_with_a_worker_subprocess(
    data_dir: Path, processes: Processes
) -> None:
    source = write_corpus(data_dir, "old.jsonl", "old", 50)
    started = processes.run(
        "reindex", "start", "--source", source, "--collection", ALIAS,
        "--mode", "swap", "--approve", "manual", "--batch-size", "20",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    job_id = int(started.stdout.strip().splitlines()[-1])
    worker = processes.run("reindex_worker", "--burst", "--worker-id", "w-swap", timeout=120)
    assert worker.returncode == 0, worker.stderr
    assert f"job {job_id} awaiting_approval" in worker.stderr

    status = processes.run("reindex", "status", str(job_id))
    assert status.returncode == 0
    assert f"[awaiting approval: {ALIAS}__{job_id}: 50 documents, no previous collection" in (
        status.stdout
    )
    approved = processes.run("reindex", "approve", str(job_id))
    assert (approved.returncode, approved.stdout) == (
        0,
        f"job {job_id}: alias {ALIAS} now serves {ALIAS}__{job_id} (a new alias)\n",
    )
    assert ReindexJob.objects.get(pk=job_id).status == JobStatus.COMPLETED
    assert reader_ids() == (50, {"old"})
    refused = processes.run("reindex", "discard", str(job_id))
    assert (refused.returncode, refused.stderr) == (
        1,
        f"CommandError: job {job_id} cannot be discarded: it is completed; only a swap job"
        " awaiting approval can be\n",
    )


def test_verify__a_swap_job_awaiting_approval_is_verified_on_its_own_collection(
    make_job: MakeJob, data_dir: Path, run_burst_worker: Run
) -> None:
    job = run_swap(make_job, data_dir, run_burst_worker, "new", 30, approve="manual")
    backend = store_backend("sqlite-vec")
    assert backend.alias_target(ALIAS) is None and not backend.exists(ALIAS)

    report = json.loads(cli("verify", str(job.pk), "--json"))
    assert (report["source_docs"], report["in_store"], report["missing"]) == (30, 30, 0)
    # Verifying created nothing: the first swap still finds the alias free, and approves.
    assert not backend.exists(ALIAS)
    approve_swap(job)
    assert backend.alias_target(ALIAS) == f"{ALIAS}__{job.pk}"


def test_verify__a_discarded_swap_reports_its_documents_missing_and_creates_nothing(
    make_job: MakeJob, data_dir: Path, run_burst_worker: Run
) -> None:
    job = run_swap(make_job, data_dir, run_burst_worker, "new", 12, approve="manual")
    cli("discard", str(job.pk))
    with pytest.raises(CommandError, match=f"job {job.pk} does not verify: 12 missing"):
        cli("verify", str(job.pk), "--json")
    backend = store_backend("sqlite-vec")
    assert not backend.exists(f"{ALIAS}__{job.pk}") and not backend.exists(ALIAS)


class MeddlingStore(DelegatingStore):
    """A store whose first search (the canary's) lets another swap move the alias first."""

    def __init__(self, inner: VectorStore, meddle: Callable[[], None]) -> None:
        super().__init__(inner)
        self.meddle = meddle

    def search(self, vector: Any, k: int = 10) -> list[Hit]:
        self.meddle()
        return self.inner.search(vector, k)


def test_swap__an_alias_moved_between_the_gate_and_the_cutover_is_left_alone(
    make_job: MakeJob, data_dir: Path, run_burst_worker: Run
) -> None:
    first = run_swap(make_job, data_dir, run_burst_worker, "old", 20, approve="manual")
    approved: list[ReindexJob] = []

    def approve_first_once() -> None:
        if not approved:
            approved.append(approve_swap(first, actor="ops"))

    class MeddlingBackend(DelegatingBackend):
        def open(self, collection: str, dimensions: int) -> VectorStore:
            return MeddlingStore(self.inner.open(collection, dimensions), approve_first_once)

    STORES.register("meddling-sqlite-vec", NoOptions, lambda _: MeddlingBackend(SqliteVecBackend()))
    try:
        second = run_swap(
            make_job, data_dir, run_burst_worker, "new", 20, store="meddling-sqlite-vec"
        )
    finally:
        STORES.unregister("meddling-sqlite-vec")

    assert approved and approved[0].status == JobStatus.COMPLETED
    assert second.status == JobStatus.FAILED
    assert second.error == (
        f"cutover refused: job {second.pk} cannot be swapped: alias {ALIAS} serves"
        f" {ALIAS}__{first.pk} now, not nothing as when the job was verified; start a new swap"
    )
    backend = store_backend("sqlite-vec")
    assert backend.alias_target(ALIAS) == f"{ALIAS}__{first.pk}"  # the approved swap stands
    assert not backend.exists(f"{ALIAS}__{second.pk}")  # the refused one's collection is gone
    assert list(AliasMove.objects.values_list("job_id", flat=True)) == [first.pk]


def test_prune__keeps_a_collection_a_queued_job_writes_by_name(
    make_job: MakeJob, data_dir: Path, run_burst_worker: Run
) -> None:
    first = run_swap(make_job, data_dir, run_burst_worker, "old", 10)
    second = run_swap(make_job, data_dir, run_burst_worker, "new", 10)
    # As a retry of the first swap's failures would: into its collection, by name, queued.
    make_job(write_corpus(data_dir, "more.jsonl", "more", 3), collection=f"{ALIAS}__{first.pk}")

    out = cli("prune", ALIAS, "--keep", "0")
    backend = store_backend("sqlite-vec")
    assert backend.physical_collections(ALIAS) == [f"{ALIAS}__{first.pk}", f"{ALIAS}__{second.pk}"]
    assert out == f"alias {ALIAS}: nothing to prune (keeping the newest 0)\n"
