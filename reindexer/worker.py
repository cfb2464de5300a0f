"""The worker loop: claim a job, run it, repeat; hand the job back on SIGTERM or SIGINT.

An idle worker sleeps until its bell rings (a NOTIFY on PostgreSQL, or a stop) or the poll
interval passes.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from django.db import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
    transaction,
)

from reindexer import conf, slicing, telemetry
from reindexer.alerts.dispatcher import start_dispatcher
from reindexer.engine import EngineOptions, JobRunner, Outcome
from reindexer.models import InvalidTransition, JobStuck, ReindexJob
from reindexer.orphans import cancel_orphans
from reindexer.progress import ProgressPublisher
from reindexer.reconnect import Backoff, log_failed_attempt
from reindexer.registry import WorkerRegistration
from reindexer.wakeup import start_listener

logger = logging.getLogger(__name__)

# Outcomes that end a job on this worker (the others hand it back or leave it to another).
# A swap job waiting for approval has ended its work here: it holds no lease.
ENDED_HERE = frozenset(
    {Outcome.COMPLETED, Outcome.FAILED, Outcome.CANCELLED, Outcome.AWAITING_APPROVAL}
)

SignalHandler = Callable[[int, FrameType | None], Any] | int | None


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class WorkerOptions:
    worker_id: str
    burst: bool = False
    poll_seconds: float = 0.25
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 5.0
    backoff_seconds: float = 0.1
    startup_jitter_seconds: float = 0.0


def claim_next(worker_id: str, lease_seconds: float) -> tuple[ReindexJob, uuid.UUID] | None:
    """Claim the oldest pending job, or a running one whose lease expired, for `worker_id`.

    Row locks (`skip_locked`) keep workers apart where the database has them; on SQLite the
    IMMEDIATE transaction serialises claims. Either way the guarded UPDATE in `claim` decides.
    `claimable()` skips jobs whose collection another running job writes; should one start
    between our read and our UPDATE, the one-writer constraint refuses the UPDATE, and we
    look again (the job is then skipped as held).
    """
    while True:
        # A read first: on SQLite the claim's transaction takes the write lock at BEGIN, which
        # idle workers polling four times a second would otherwise take from everybody.
        if not ReindexJob.objects.claimable(lease_seconds).exists():
            return None
        with transaction.atomic():
            job = (
                ReindexJob.objects.claimable(lease_seconds)
                .select_for_update(skip_locked=True)
                .first()
            )
            if job is None:
                return None
            try:
                token = job.claim(worker_id, lease_seconds=lease_seconds)
            except JobStuck as exc:
                logger.error("worker %s: %s", worker_id, exc)
                slicing.stop_whole_job(job, str(exc), worker_id)
                continue
            except InvalidTransition:
                continue  # another worker won it between our read and our update
            except IntegrityError:
                # The inner savepoint rolled back: another worker began writing its collection.
                continue
            return job, token


class Worker:
    def __init__(self, options: WorkerOptions) -> None:
        self.options = options
        # Set through request_stop(), which also rings the bell so that an idle wait ends.
        self.stop = threading.Event()
        # Rung by the listener on a notification, and by a stop: ends the idle wait at once.
        self.bell = threading.Event()
        self._waiting = False  # idle since the last job (logged once per idle spell)
        self._previous: dict[int, SignalHandler] = {}

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def restore_signal_handlers(self) -> None:
        """Put back the handlers found at install time (a worker run in-process must not leave its
        own behind: they would swallow the host's first Ctrl-C into a stopped worker's flag)."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def request_stop(self) -> None:
        """Stop after the current batch; an idle worker stops at once."""
        self.stop.set()
        self.bell.set()

    def _idle(self, registration: WorkerRegistration) -> None:
        """Wait for the bell, or for the poll interval, renewing the registry meanwhile.

        The bell is reset once the wait ends: the claim that follows sees whatever a ring
        announced, since NOTIFY is only delivered once its transaction has committed.
        """
        options = self.options
        if not self._waiting:
            self._waiting = True
            logger.info("worker %s: idle, waiting for a job", options.worker_id)
        deadline = time.monotonic() + options.poll_seconds
        while True:
            registration.beat_if_due()
            left = deadline - time.monotonic()
            if left <= 0 or self.bell.wait(min(left, options.heartbeat_seconds)):
                break
        self.bell.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        logger.info(
            "worker %s: %s received; finishing the current batch, then stopping",
            self.options.worker_id,
            signal.Signals(signum).name,
        )
        self.request_stop()
        # A second signal behaves as it would have without us.
        self.restore_signal_handlers()

    def run(self) -> int:
        """Process jobs until stopped (or, with `burst`, until nothing is left); returns a count."""
        options = self.options
        telemetry.configure_tracing(service_name="reindexer-worker")
        publisher = ProgressPublisher()
        engine_options = EngineOptions(
            heartbeat_seconds=options.heartbeat_seconds,
            backoff_seconds=options.backoff_seconds,
            lease_seconds=options.lease_seconds,
        )
        backoff = Backoff()
        failed_claims = processed = 0
        logger.info("worker %s started (burst=%s)", options.worker_id, options.burst)
        registration = WorkerRegistration(options.worker_id, options.heartbeat_seconds)
        registration.register()
        # Webhook alerts, on a thread and a connection of their own: never in the job's way.
        alerts = start_dispatcher(options.worker_id)
        # A burst worker never idles, so it has nothing to listen for.
        listener = (
            None
            if options.burst
            else start_listener(options.worker_id, self.bell, options.poll_seconds)
        )
        if options.startup_jitter_seconds:
            self.stop.wait(random.uniform(0, options.startup_jitter_seconds))  # noqa: S311
        try:
            while not self.stop.is_set():
                close_old_connections()
                try:
                    claimed = claim_next(options.worker_id, options.lease_seconds)
                except (OperationalError, InterfaceError) as exc:
                    # A database restart must not take every worker down with it.
                    failed_claims += 1
                    delay = backoff.delay(failed_claims)
                    what = f"worker {options.worker_id}: cannot claim, job database unavailable"
                    log_failed_attempt(logger, what, failed_claims, delay, exc)
                    connection.close()
                    self.stop.wait(delay)
                    continue
                failed_claims = 0
                if claimed is None:
                    if cancel_orphans(options.worker_id, options.lease_seconds):
                        continue
                    if options.burst:
                        break
                    self._idle(registration)
                    continue
                self._waiting = False
                while claimed is not None:
                    job, token = claimed
                    outcome = self._run_job(job, token, registration, publisher, engine_options)
                    processed += 1
                    # The worker that ended a sliced job's last slice finishes the sliced job.
                    ended_slice = job.parent_id is not None and outcome in ENDED_HERE
                    claimed = (
                        slicing.take_over(job.parent_id, options.worker_id)
                        if ended_slice and job.parent_id is not None
                        else None
                    )
        finally:
            # After the last job: its end is still sent (a bounded last pass).
            alerts.stop()
            if listener is not None:
                listener.close()
            registration.stopped()
            publisher.close()
            close_old_connections()
        return processed

    def _run_job(
        self,
        job: ReindexJob,
        token: uuid.UUID,
        registration: WorkerRegistration,
        publisher: ProgressPublisher,
        engine_options: EngineOptions,
    ) -> str:
        worker_id = self.options.worker_id
        registration.job_started(job)
        logger.info("worker %s: running job %s (%s)", worker_id, job.pk, job.name)
        publisher.publish(job.pk, force=True)
        if job.parent_id is not None:  # the sliced job's page shows who runs each slice
            publisher.publish(job.parent_id, force=True)
        outcome = JobRunner(
            job,
            token,
            worker_id,
            stop=self.stop,
            options=engine_options,
            publisher=publisher,
            bell=self.bell,  # a NOTIFY ends a pacing wait: a lifted limit applies at once
        ).run()
        logger.info("worker %s: job %s %s", worker_id, job.pk, outcome)
        registration.job_ended(finished=outcome in ENDED_HERE)
        return outcome


def options_from_settings(worker_id: str | None, burst: bool) -> WorkerOptions:
    settings = conf.get()
    return WorkerOptions(
        worker_id=worker_id or default_worker_id(),
        burst=burst,
        poll_seconds=settings.poll_seconds,
        lease_seconds=settings.lease_seconds,
        heartbeat_seconds=settings.heartbeat_seconds,
        backoff_seconds=settings.retry_backoff_seconds,
        startup_jitter_seconds=0.0 if burst else 0.5,
    )
