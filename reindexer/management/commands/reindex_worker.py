"""`reindex_worker [--burst] [--worker-id ID]`: claim queued jobs and run them batch by batch.

With REINDEXER_METRICS_PORT set, the worker also serves its Prometheus metrics on that port.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from reindexer import conf
from reindexer.management.commands.reindex import OneLineErrorParser
from reindexer.metrics.server import MetricsServerError, WorkerMetricsServer
from reindexer.worker import Worker, options_from_settings


def worker_id(value: str) -> str:
    if not value or len(value) > 200 or not value.isprintable():
        raise argparse.ArgumentTypeError("worker id must be 1-200 printable characters")
    return value


class Command(BaseCommand):
    help = "Claim queued reindex jobs and run them; SIGTERM hands the current job back."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.__class__ = OneLineErrorParser  # usage errors: one line, exit code 1
        return parser

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--burst", action="store_true", help="exit once no job is left to claim"
        )
        parser.add_argument(
            "--worker-id",
            type=worker_id,
            default=None,
            help="name shown on claimed jobs (default host:pid)",
        )

    def handle(self, *args: Any, burst: bool, worker_id: str | None, **options: Any) -> None:
        worker = Worker(options_from_settings(worker_id, burst))
        with metrics_served():
            worker.install_signal_handlers()
            try:
                worker.run()
            finally:
                worker.restore_signal_handlers()


@contextlib.contextmanager
def metrics_served() -> Iterator[None]:
    """The worker's metrics server for its lifetime, if a port is set; bound before the first
    claim, so a port in use stops the worker before it takes a job."""
    port = conf.get().metrics_port
    if port is None:
        yield
        return
    try:
        server = WorkerMetricsServer(port).start()
    except MetricsServerError as exc:
        raise CommandError(str(exc)) from None
    try:
        yield
    finally:
        server.stop()
