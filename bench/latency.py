"""Live-update and cancel latency, measured end to end in a real browser (a benchmark, not a test).

    .venv/bin/python bench/latency.py [--jobs 2] [--cancels 5] [--modes relay,redis]

For each mode (the default set-up: in-memory layer + the database relay; and Redis on
127.0.0.1:6379) it starts daphne and a worker on a throwaway SQLite database, then measures:

(a) commit → DOM: a trigger on the job table records every batch commit's `updated_at` (the
    worker's wall clock), and a MutationObserver in the page records each aria-valuenow change with
    performance.timeOrigin + performance.now() (the same machine's clock). Two figures:
    - "shown": for each value the page displayed, from the commit that produced it;
    - "every commit": for each commit, until the page shows it or a newer state (this includes the
      time a coalesced commit waits for the next push, so it is the staleness a user sees).
(b) cancel: from the click on "Cancel" (in the page's clock) to the worker's `cancelled` event, and
    to the page showing data-status="cancelled"; compared with the measured batch duration.

Environment (all optional):
- REINDEXER_BENCH_REDIS_URL: the Redis of the "redis" mode (default redis://127.0.0.1:6379/15);
- REINDEXER_BENCH_SOURCE_ROOTS: extra source roots after the throwaway data dir (`:`-separated);
  an inherited REINDEXER_SOURCE_ROOTS is replaced, as the bench reads only its own corpus.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

# The benchmark's own database on the local server, unless told another.
REDIS_URL = os.environ.get("REINDEXER_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
PASSWORD = "bench-password-1"  # noqa: S105 - a throwaway user in a throwaway database
TARGETS_P95 = {"redis": 0.250, "relay": 1.0}

TRIGGER_SQL = [
    "CREATE TABLE IF NOT EXISTS bench_commit "
    "(job_id INTEGER, processed INTEGER, total INTEGER, updated_at TEXT)",
    "CREATE TRIGGER IF NOT EXISTS bench_commit_log AFTER UPDATE OF processed_docs "
    "ON reindexer_reindexjob WHEN NEW.processed_docs != OLD.processed_docs BEGIN "
    "INSERT INTO bench_commit VALUES (NEW.id, NEW.processed_docs, NEW.total_docs, NEW.updated_at);"
    " END",
]


CLICK_CLOCK_JS = """() => document.addEventListener('click', () => {
  window.__clickAt = performance.timeOrigin + performance.now(); }, {capture: true})"""


def setup_django(data_dir: Path) -> None:
    os.environ.pop("REDIS_URL", None)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="reindexer.settings",
        REINDEXER_DATA_DIR=str(data_dir),
        REINDEXER_SOURCE_ROOTS=":".join(
            [
                str(data_dir),
                *filter(None, os.environ.get("REINDEXER_BENCH_SOURCE_ROOTS", "").split(":")),
            ]
        ),
        DATABASE_URL=f"sqlite:///{data_dir / 'bench.sqlite3'}",
        # This process queries the database while Playwright's sync API holds a loop; the servers
        # started below do not get this variable.
        DJANGO_ALLOW_ASYNC_UNSAFE="true",
    )
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        for statement in TRIGGER_SQL:
            cursor.execute(statement)


def make_user() -> Any:
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user("bench", password=PASSWORD)
    for codename in ("view_reindexjob", "operate_reindexjob"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def write_corpus(path: Path, n: int) -> None:
    import json

    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            text = f"document {i}: vector store embedding batch index search query {i % 97}"
            f.write(json.dumps({"id": f"doc-{i}", "text": text}) + "\n")


def queue_job(user: Any, source: str, store: str, batch_size: int, name: str) -> int:
    from reindexer.jobs import create_job
    from reindexer.specs import JobSpec

    spec = JobSpec(source=source, store=store, batch_size=batch_size, name=name, max_retries=0)
    job = create_job(spec, user=user)
    return int(job.pk)


def commits(job_id: int) -> list[tuple[float, int]]:
    """(wall-clock commit time, percent) of each batch of the job, in order."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT processed, total, updated_at FROM bench_commit WHERE job_id = %s "
            "ORDER BY processed",
            [job_id],
        )
        rows = cursor.fetchall()
    return [
        (
            datetime.fromisoformat(str(at)).replace(tzinfo=UTC).timestamp(),
            round(100 * processed / total) if total else 0,
        )
        for processed, total, at in rows
    ]


@dataclass
class ModeResult:
    mode: str
    shown: list[float]
    every_commit: list[float]
    cancel_worker: list[float]
    cancel_page: list[float]
    batch_seconds: list[float]
    cancel_batch_seconds: list[float]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def fmt(values: list[float]) -> str:
    if not values:
        return "no samples"
    return (
        f"p50 {pct(values, 50) * 1000:6.0f} ms   p95 {pct(values, 95) * 1000:6.0f} ms   "
        f"max {max(values) * 1000:6.0f} ms   (n={len(values)})"
    )


def log_in(page: Any, base_url: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=username]", "bench")
    page.fill("input[name=password]", PASSWORD)
    page.press("input[name=password]", "Enter")
    page.wait_for_url(f"{base_url}/")


def measure_progress(page: Any, base_url: str, user: Any, n: int) -> tuple[list[float], ...]:
    from playwright.sync_api import expect

    shown: list[float] = []
    every: list[float] = []
    batch: list[float] = []
    for i in range(n):
        job_id = queue_job(user, "jsonl:steady.jsonl", "flaky(sqlite-vec,latency=60)", 10, f"p{i}")
        page.goto(f"{base_url}/jobs/{job_id}/")
        block = page.locator(f"#job-progress-{job_id}")
        expect(block).to_have_attribute("data-status", "completed", timeout=120_000)
        records = [
            (r["t"] / 1000, r["value"])
            for r in page.evaluate("() => window.__progress")
            if r["el"] == f"job-progress-{job_id}"
        ]
        done = commits(job_id)
        if not records or not done:
            continue
        # Only commits made once the page (and its socket) were up: the first record is the
        # server-rendered state at load time, not a push.
        loaded = records[0][0] + 0.3
        pushes = records[1:]
        first_commit_of: dict[int, float] = {}
        for t_commit, value in done:
            first_commit_of.setdefault(value, t_commit)
        for t_dom, value in pushes:
            produced = first_commit_of.get(value)
            if produced is not None and produced > loaded:
                shown.append(t_dom - produced)
        for t_commit, value in done:
            if t_commit <= loaded:
                continue
            later = [t for t, v in pushes if v >= value and t >= t_commit - 0.05]
            if later:
                every.append(min(later) - t_commit)
        batch.extend(b[0] - a[0] for a, b in zip(done, done[1:], strict=False))
    return shown, every, batch


def measure_cancels(page: Any, base_url: str, user: Any, n: int) -> tuple[list[float], ...]:
    from playwright.sync_api import expect

    from reindexer.models import EventKind, JobEvent

    worker: list[float] = []
    shown: list[float] = []
    batch: list[float] = []
    for i in range(n):
        job_id = queue_job(user, "jsonl:slow.jsonl", "flaky(sqlite-vec,latency=200)", 10, f"c{i}")
        page.goto(f"{base_url}/jobs/{job_id}/")
        block = page.locator(f"#job-progress-{job_id}")
        expect(block).to_have_attribute("data-status", "running", timeout=30_000)
        expect(block.get_by_role("progressbar")).not_to_have_attribute("aria-valuenow", "0")
        # Land the click at a random point of a batch, as an operator would.
        time.sleep(0.05 * (i % 4))
        page.evaluate(CLICK_CLOCK_JS)
        page.once("dialog", lambda dialog: dialog.accept())
        block.get_by_role("button", name="Cancel").click()
        expect(block).to_have_attribute("data-status", "cancelled", timeout=30_000)
        clicked = page.evaluate("() => window.__clickAt") / 1000
        seen = [
            r["t"] / 1000
            for r in page.evaluate("() => window.__progress")
            if r["el"] == f"job-progress-{job_id}" and r["status"] == "cancelled"
        ]
        event = JobEvent.objects.filter(job_id=job_id, kind=EventKind.CANCELLED).first()
        if event is not None:
            worker.append(event.at.timestamp() - clicked)
        if seen:
            shown.append(seen[0] - clicked)
        done = commits(job_id)
        batch.extend(b[0] - a[0] for a, b in zip(done, done[1:], strict=False))
    return worker, shown, batch


def run_mode(mode: str, data_dir: Path, user: Any, jobs: int, cancels: int) -> ModeResult:
    from playwright.sync_api import sync_playwright

    from tests.browser.servers import OBSERVER_INIT_JS, launch_chromium, running_stack

    env = dict(os.environ)
    if mode == "redis":
        env["REDIS_URL"] = REDIS_URL
    log_dir = data_dir / f"logs-{mode}"
    log_dir.mkdir()
    with running_stack(env, log_dir) as stack, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context()
            context.add_init_script(OBSERVER_INIT_JS)
            page = context.new_page()
            log_in(page, stack.base_url)
            shown, every, batch = measure_progress(page, stack.base_url, user, jobs)
            cancel_worker, cancel_page, cancel_batch = measure_cancels(
                page, stack.base_url, user, cancels
            )
        finally:
            browser.close()
    return ModeResult(mode, shown, every, cancel_worker, cancel_page, batch, cancel_batch)


def report(result: ModeResult) -> bool:
    target = TARGETS_P95[result.mode]
    label = "Redis" if result.mode == "redis" else "default (in-memory layer + database relay)"
    p95 = pct(result.every_commit, 95)
    batch = _median(result.batch_seconds)
    cancel_batch = _median(result.cancel_batch_seconds)
    cancel_p50 = pct(result.cancel_worker, 50)
    ok_latency = p95 <= target
    ok_cancel = cancel_p50 < cancel_batch
    print(f"\n== {label}")
    print(f"  batch duration, progress jobs (median): {batch * 1000:.0f} ms")
    print(f"  commit -> DOM, states shown:     {fmt(result.shown)}")
    print(f"  commit -> DOM, every commit:     {fmt(result.every_commit)}")
    print(f"    target p95 <= {target * 1000:.0f} ms: {'met' if ok_latency else 'MISSED'}")
    print(f"  batch duration, cancelled jobs (median): {cancel_batch * 1000:.0f} ms")
    print(f"  click Cancel -> worker confirms: {fmt(result.cancel_worker)}")
    print(f"  click Cancel -> page shows it:   {fmt(result.cancel_page)}")
    print(f"    target p50 < one batch: {'met' if ok_cancel else 'MISSED'}")
    return ok_latency and ok_cancel


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=2, help="progress jobs per mode (50 batches)")
    parser.add_argument("--cancels", type=int, default=8, help="cancelled jobs per mode")
    parser.add_argument("--modes", default="relay,redis", help="relay,redis")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()

    from tests.browser.servers import wait_for_chromium
    from tests.live.redis_check import redis_reachable

    if wait_for_chromium() is None:
        print("/usr/bin/chromium is missing: run `make chromium` first", file=sys.stderr)
        return 1
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    with tempfile.TemporaryDirectory(prefix="reindexer-bench-") as tmp:
        data_dir = Path(tmp)
        setup_django(data_dir)
        write_corpus(data_dir / "steady.jsonl", 500)
        write_corpus(data_dir / "slow.jsonl", 5000)
        user = make_user()
        all_ok = True
        for mode in modes:
            if mode == "redis" and (problem := redis_reachable()) is not None:
                print(f"\n== Redis: NOT MEASURED, 127.0.0.1:6379 is not reachable ({problem})")
                all_ok = False
                continue
            started = time.monotonic()
            result = run_mode(mode, data_dir, user, args.jobs, args.cancels)
            all_ok = report(result) and all_ok
            print(f"  ({time.monotonic() - started:.0f} s)")
    return 1 if args.strict and not all_ok else 0


if __name__ == "__main__":
    sys.exit(main())
