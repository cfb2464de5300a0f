"""Keeping a job's lease alive from a background thread, also while a batch is slow."""

from __future__ import annotations

import logging
import threading
import uuid

from django.db import close_old_connections, connection

from reindexer.models import LeaseLost, ReindexJob

logger = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews the heartbeat every `interval` seconds until stopped or until the lease is lost."""

    def __init__(self, job: ReindexJob, token: uuid.UUID, interval: float) -> None:
        self.job = job
        self.token = token
        self.interval = interval
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-job-{job.pk}", daemon=True)

    def start(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    self.job.heartbeat(self.token)
                except LeaseLost:
                    logger.warning("job %s: lease lost; this worker will drop it", self.job.pk)
                    self.lost.set()
                    return
                except Exception:
                    # A database blink: try again next beat; the lease outlives a few misses.
                    logger.warning("job %s: heartbeat failed", self.job.pk, exc_info=True)
                    close_old_connections()
        finally:
            connection.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
