"""Keeping a job's lease alive from a background thread, also while a batch is slow."""

from __future__ import annotations

import logging
import threading
import time
import uuid

from django.db import close_old_connections, connection
from django.utils import timezone

from reindexer import registry
from reindexer.models import LeaseLost, ReindexJob
from reindexer.reconnect import log_failed_attempt

logger = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews the heartbeat every `interval` seconds until stopped or until the lease is lost.

    Each renewal also renews the registry row of the worker holding the job (advisory).
    """

    def __init__(self, job: ReindexJob, token: uuid.UUID, interval: float) -> None:
        self.job = job
        self.token = token
        self.interval = interval
        self.lost = threading.Event()
        # When this keeper last renewed the lease, on this host's monotonic clock: it tells the
        # engine how long its lease outlives a database blink (the heartbeat itself is the
        # database's clock, which this host's may not agree with).
        self.renewed_monotonic: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-job-{job.pk}", daemon=True)

    def start(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def _run(self) -> None:
        failures = 0
        try:
            while not self._stop.wait(self.interval):
                try:
                    sent = time.monotonic()
                    self.job.heartbeat(self.token)
                except LeaseLost:
                    logger.warning("job %s: lease lost; this worker will drop it", self.job.pk)
                    self.lost.set()
                    return
                except Exception as exc:
                    # A database blink: try again next beat; the lease outlives a few misses.
                    failures += 1
                    what = f"job {self.job.pk}: heartbeat failed"
                    log_failed_attempt(logger, what, failures, self.interval, exc)
                    close_old_connections()
                else:
                    self.renewed_monotonic = sent
                    failures = 0
                    registry.renew(self.job.worker, timezone.now())
        finally:
            connection.close()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
