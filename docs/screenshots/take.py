"""Take the README's screenshots from the real stack: daphne, two workers and the demo jobs.

    .venv/bin/python docs/screenshots/take.py

It works in a throwaway data dir with its own SQLite database, and writes the PNGs beside itself.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PYTHON = sys.executable
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
PASSWORD = "screenshots-only"  # noqa: S105 - a throwaway account in a throwaway database
WIDTH = 1280


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(  # noqa: S603 - our own manage.py
        [PYTHON, "manage.py", *args], cwd=REPO, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"daphne did not listen on {port}")


def shoot(page: Page, url: str, name: str, *, wait: str | None = None) -> None:
    page.goto(url)
    if wait:
        page.wait_for_selector(wait)
    page.wait_for_timeout(500)
    page.screenshot(path=str(HERE / f"{name}.png"), full_page=True)
    print(f"wrote {HERE / name}.png")  # noqa: T201 - a script's output


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="reindexer-shots-") as data_dir:
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
        env.update(
            REINDEXER_DATA_DIR=data_dir,
            REINDEXER_SOURCE_ROOTS=data_dir,
            REINDEXER_LEASE_SECONDS="10",
            REINDEXER_HEARTBEAT_SECONDS="1",
        )
        manage(env, "migrate", "--noinput")
        manage(env, "reindex_demo")
        manage(
            env,
            "shell",
            "-c",
            "from django.contrib.auth.models import User; "
            f"u = User.objects.get(username='operator'); u.set_password({PASSWORD!r}); u.save()",
        )
        port = free_port()
        processes = [
            subprocess.Popen(  # noqa: S603
                [
                    str(Path(PYTHON).parent / "daphne"),
                    "-b",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "reindexer.asgi:application",
                ],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
            *(
                subprocess.Popen(  # noqa: S603
                    [PYTHON, "manage.py", "reindex_worker", "--worker-id", f"shots-worker-{n}"],
                    cwd=REPO,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for n in (1, 2)
            ),
        ]
        try:
            wait_for_port(port)
            base = f"http://127.0.0.1:{port}"
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": WIDTH, "height": 900})
                page.goto(f"{base}/accounts/login/")
                page.fill("input[name=username]", "operator")
                page.fill("input[name=password]", PASSWORD)
                page.click("button[type=submit], input[type=submit]")
                page.wait_for_url(f"{base}/")
                time.sleep(25)  # let the demo jobs run, fail and retry for a while
                flaky = page.locator("tr.job-row", has_text="flaky store drill").first
                job_id = flaky.get_attribute("data-job-id")
                shoot(page, f"{base}/", "list", wait="#summary-tiles")
                shoot(page, f"{base}/jobs/{job_id}/", "detail", wait=f"#job-chart-{job_id} svg")
                shoot(page, f"{base}/workers/", "workers")
                shoot(page, f"{base}/queue/", "queue")
                page.goto(f"{base}/jobs/{job_id}/failures/")
                group = page.locator("a[href*='type=']").first
                group.click()
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(HERE / "failure-group.png"), full_page=True)
                print(f"wrote {HERE / 'failure-group'}.png")  # noqa: T201
                browser.close()
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=30)


if __name__ == "__main__":
    main()
