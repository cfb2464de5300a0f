"""`reindex start|status|cancel|resume|retry-failed|throttle|verify|watch|search|approve|discard|
rollback|prune`: the operator's CLI."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any, NoReturn, TextIO, cast

from django.core.management.base import BaseCommand, CommandError, CommandParser

from reindexer import conf, specs
from reindexer.errors import ReindexerError
from reindexer.jobs import (
    cancel_job,
    create_job,
    force_cancel_job,
    limit_text,
    rate_from_text,
    resume_job,
    retry_failed,
    set_throttle,
)
from reindexer.models import InvalidTransition, ReindexJob
from reindexer.orphans import cancel_orphans
from reindexer.presenter import job_status, present
from reindexer.queue import annotated_waiting_for, with_waiting_for
from reindexer.search import MAX_K, search
from reindexer.specs import JobSpec
from reindexer.swaps import actions as swaps
from reindexer.swaps.gate import summary
from reindexer.verify import verify_job, verify_problems
from reindexer.watch import watch_job

MAX_JOB_ID = 2**63 - 1
# The actor of the cancels that `status` ends for want of a worker.
STATUS_ACTOR = "cli"


class OneLineErrorParser(CommandParser):
    """Reports a usage error as one line on stderr with exit code 1 (DESIGN.md, "Exit codes").

    argparse would print the whole usage and exit 2; operators and scripts get one line instead.
    """

    def error(self, message: str) -> NoReturn:
        if self.called_from_command_line:
            self.exit(1, f"{self.prog}: error: {message}\n")
        raise CommandError(f"Error: {message}")


def whole_number(what: str, low: int, high: int, bounds: str) -> Callable[[str], int]:
    """An argparse type: a whole number from `low` to `high`, with errors that name `what`."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{what} must be a whole number, got {value!r}"
            ) from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"{what} must be {bounds}, got {number}")
        return number

    return parse


job_id = whole_number("job id", 1, MAX_JOB_ID, "a positive whole number")


def number(what: str) -> Callable[[str], float]:
    """An argparse type: any number; JobSpec checks its range with the rest of the spec."""

    def parse(value: str) -> float:
        try:
            return float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {value!r}") from None

    return parse


def add_spec_arguments(parser: CommandParser) -> None:
    """One option per JobSpec field (`--batch-size` for batch_size), typed as the field is.

    Only the options given reach JobSpec, which fills in the defaults and checks every bound.
    """
    for name, info in JobSpec.model_fields.items():
        what = name.replace("_", " ")
        parse: Callable[[str], Any] = str
        kind = specs.number_type(info)
        if kind is int:
            parse = whole_number(what, -MAX_JOB_ID, MAX_JOB_ID, "a whole number")
        elif kind is float:
            parse = number(what)
        hint = ""
        if kind is not None:
            low, high = specs.bounds(name)
            hint += f" ({low:g} to {high:g})"
        if not info.is_required() and info.get_default() not in ("", None):
            hint += f" (default: {info.get_default()})"
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=parse,
            choices=specs.choices(info) or None,
            required=info.is_required(),
            default=argparse.SUPPRESS,
            help=(info.description or "") + hint,
        )


def get_job(job_id: int) -> ReindexJob:
    try:
        return ReindexJob.objects.get(pk=job_id)
    except ReindexJob.DoesNotExist:
        raise CommandError(f"no job with id {job_id}") from None


class Command(BaseCommand):
    help = "Queue, inspect, cancel, resume, retry and verify reindex jobs."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        # The top-level parser reports unknown options and a missing ACTION: one line too.
        parser.__class__ = OneLineErrorParser
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(
            dest="action", required=True, metavar="ACTION", parser_class=OneLineErrorParser
        )

        start = actions.add_parser("start", help="queue a job; prints its id last")
        add_spec_arguments(start)

        status = actions.add_parser("status", help="one job, or every job")
        status.add_argument("job_id", nargs="?", type=job_id)
        status.add_argument("--json", action="store_true")

        cancel = actions.add_parser(
            "cancel", help="cancel a pending job, or ask a running one to stop"
        )
        cancel.add_argument("job_id", type=job_id)
        cancel.add_argument(
            "--force",
            action="store_true",
            help="cancel a running job whose lease expired, without its worker",
        )

        for name, text in [
            ("resume", "continue a failed job from its checkpoint, with its counters"),
            ("retry-failed", "queue the documents of the unresolved failures"),
            ("watch", "a live progress bar until the job ends"),
        ]:
            actions.add_parser(name, help=text).add_argument("job_id", type=job_id)

        throttle = actions.add_parser(
            "throttle", help="set, change or lift a pending or running job's rate limit"
        )
        throttle.add_argument("job_id", type=job_id)
        # Checked by reindexer.jobs, as the API and the dashboard check it.
        throttle.add_argument("rate", metavar="RATE", help="documents per second; 0: no limit")

        verify = actions.add_parser("verify", help="compare the source's ids with the store's")
        verify.add_argument("job_id", type=job_id)
        verify.add_argument("--json", action="store_true")

        for name, text in [
            ("approve", "swap: move the alias of a job awaiting approval to what it built"),
            ("discard", "drop what a job awaiting approval built; its alias stays as it is"),
        ]:
            actions.add_parser(name, help=text).add_argument("job_id", type=job_id)

        back = actions.add_parser(
            "rollback", help="move an alias back to what it served before its last swap"
        )
        back.add_argument("alias", metavar="ALIAS")
        back.add_argument("--store", default="sqlite-vec")

        prune = actions.add_parser(
            "prune", help="drop an alias's physical collections but the newest N and its own"
        )
        prune.add_argument("alias", metavar="ALIAS")
        prune.add_argument(
            "--keep",
            required=True,
            type=whole_number("keep", 0, swaps.MAX_KEEP, f"from 0 to {swaps.MAX_KEEP}"),
        )
        prune.add_argument("--store", default="sqlite-vec")

        find = actions.add_parser("search", help="the k nearest documents of a collection")
        find.add_argument("--store", required=True)
        find.add_argument("--collection", required=True)
        find.add_argument("--embedder", default="hashing")
        find.add_argument("--k", type=whole_number("k", 1, MAX_K, f"from 1 to {MAX_K}"), default=10)
        find.add_argument("--json", action="store_true")
        find.add_argument("text")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            getattr(self, "do_" + action.replace("-", "_"))(**options)
        except (ReindexerError, InvalidTransition) as exc:
            raise CommandError(str(exc)) from exc

    def do_start(self, **o: Any) -> None:
        job = create_job(JobSpec.parse({k: o[k] for k in JobSpec.model_fields if k in o}))
        self.stdout.write(f"queued job {job.pk}: {job.name}")
        self.stdout.write(str(job.pk))

    def do_status(self, *, job_id: int | None, json: bool, **_: Any) -> None:
        # A job asked to cancel whose worker died is shown cancelled, not "cancelling" forever,
        # even when no worker runs to sweep for it.
        cancel_orphans(STATUS_ACTOR, conf.get().lease_seconds)
        # waiting_for: one query for every job (an annotation), not one per job; the slices
        # of every sliced job in one more. Without an id, the jobs as operators queued them.
        chosen = (
            ReindexJob.objects.filter(pk=get_job(job_id).pk)
            if job_id is not None
            else ReindexJob.objects.top_level()
        )
        jobs = list(with_waiting_for(chosen).prefetch_related("slice_jobs"))
        rows = [{**job_status(job), "waiting_for": annotated_waiting_for(job)} for job in jobs]
        if json:
            self.stdout.write(_dumps(rows[0] if job_id is not None else rows))
            return
        for row in rows:
            total = row["total_docs"] if row["total_docs"] is not None else "?"
            self.stdout.write(
                f"{row['id']:>5}  {row['status']:<10} {row['progress'] * 100:5.1f}%  "
                f"{row['processed_docs']}/{total} processed, {row['failed_docs']} failed  "
                f"{row['name']}"
                + _slices_line(row)
                + _rate_line(row)
                + (f"  [{row['error']}]" if row["error"] else "")
                + _awaiting_line(row)
                + (_last_error(row) if row["status"] in ("pending", "running") else "")
            )

    def do_cancel(self, *, job_id: int, force: bool, **_: Any) -> None:
        if force:
            job = force_cancel_job(get_job(job_id))
            self.stdout.write(f"job {job.pk}: force-cancelled")
            return
        job = cancel_job(get_job(job_id))
        if job.status == "cancelled":
            done = "cancelled"
        elif present(job).stalled:
            done = (
                f"cancel requested, but its worker {job.worker} is not responding; "
                f"use `reindex cancel --force {job.pk}`"
            )
        else:
            done = "cancel requested; the worker stops at the next batch"
        self.stdout.write(f"job {job.pk}: {done}")

    def do_resume(self, *, job_id: int, **_: Any) -> None:
        job = resume_job(get_job(job_id))
        self.stdout.write(
            f"job {job.pk}: queued to resume from {job.processed_docs} processed documents"
        )

    def do_retry_failed(self, *, job_id: int, **_: Any) -> None:
        retry = retry_failed(get_job(job_id))
        self.stdout.write(f"queued job {retry.pk}: {retry.name}")
        self.stdout.write(str(retry.pk))

    def do_throttle(self, *, job_id: int, rate: str, **_: Any) -> None:
        done = set_throttle(
            get_job(job_id), rate_from_text(rate) if rate.strip() else rate, user=None
        )
        self.stdout.write(done.message)

    def do_verify(self, *, job_id: int, json: bool, **_: Any) -> None:
        report = verify_job(get_job(job_id))
        if json:
            self.stdout.write(_dumps(report))
        else:
            for key, value in report.items():
                self.stdout.write(f"{key}: {value}")
        # After the report, so that a script gets both the figures and an exit code to rely on.
        problems = verify_problems(report)
        if problems:
            raise CommandError(f"job {job_id} does not verify: {problems}")

    def do_watch(self, *, job_id: int, **_: Any) -> None:
        # The raw stream, not Django's OutputWrapper: the wrapper appends a newline to every write,
        # which would turn rich's in-place redraws into a scroll of half-drawn bars on a terminal.
        watch_job(get_job(job_id), cast(TextIO, self.stdout._out))

    def do_approve(self, *, job_id: int, **_: Any) -> None:
        job = swaps.approve_swap(get_job(job_id))
        move = job.alias_moves.order_by("-at", "-id").first()
        was = f"was {move.previous}" if move and move.previous else "a new alias"
        served = move.collection if move else "?"
        self.stdout.write(f"job {job.pk}: alias {job.collection} now serves {served} ({was})")

    def do_discard(self, *, job_id: int, **_: Any) -> None:
        job = swaps.discard_swap(get_job(job_id))
        self.stdout.write(f"job {job.pk}: discarded; alias {job.collection} left as it was")

    def do_rollback(self, *, alias: str, store: str, **_: Any) -> None:
        move = swaps.rollback(store, alias)
        self.stdout.write(
            f"alias {alias} now serves {move.collection} (was {move.previous or 'nothing'})"
        )

    def do_prune(self, *, alias: str, keep: int, store: str, **_: Any) -> None:
        dropped = swaps.prune(store, alias, keep)
        for name in dropped:
            self.stdout.write(f"dropped {name}")
        if not dropped:
            self.stdout.write(f"alias {alias}: nothing to prune (keeping the newest {keep})")

    def do_search(
        self, *, store: str, collection: str, embedder: str, k: int, json: bool, text: str, **_: Any
    ) -> None:
        results = search(store, collection, text, embedder=embedder, k=k)
        if json:
            self.stdout.write(_dumps([result.as_json() for result in results]))
            return
        for result in results:
            start = " ".join(result.text.split())[:80]
            self.stdout.write(f"{result.distance:8.4f}  {result.id:<24} {start}")


def _slices_line(row: dict[str, Any]) -> str:
    """A sliced job's slices in brief ("4 slices: 2 running, 2 completed"), or what a slice is."""
    if row["slice_of"] is not None:
        return f"  (slice {row['slice_number']} of job {row['slice_of']})"
    if row["slice_count"] <= 1:
        return ""
    states: dict[str, int] = {}
    for slice_row in row["slices"]:
        states[slice_row["status"]] = states.get(slice_row["status"], 0) + 1
    if not states:
        return f"  ({row['slice_count']} slices, not split yet)"
    brief = ", ".join(f"{n} {status}" for status, n in states.items())
    return f"  ({row['slice_count']} slices: {brief})"


def _rate_line(row: dict[str, Any]) -> str:
    """The rate beside the limit, for a job that has one ("  180 docs/s (limit 200)")."""
    limit = row["max_docs_per_second"]
    if limit is None:
        return ""
    rate = row["docs_per_second"]
    shown = "-" if rate is None else f"{rate:,.1f}"
    return f"  {shown} docs/s (limit {limit_text(limit)})"


def _awaiting_line(row: dict[str, Any]) -> str:
    """A swap job waiting for an operator: its verification, and what to run next."""
    if row["status"] != "awaiting_approval":
        return ""
    checked = summary(row["verification"]) if row["verification"] else "verified"
    return (
        f"  [awaiting approval: {checked}; `reindex approve {row['id']}` to swap,"
        f" `reindex discard {row['id']}` to drop it]"
    )


def _last_error(row: dict[str, Any]) -> str:
    """What a job still going on met last, so a stuck one tells its story."""
    if not row["last_error"]:
        return ""
    return f"  [last error at {row['last_error_at']}: {row['last_error']}]"


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=None, sort_keys=False)
