"""Starting the real stack (daphne + worker) and Debian's Chromium; shared with bench/latency.py."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Browser, Playwright

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALLERS = {"apt", "apt-get", "dpkg", "unattended-upgr"}

# Records each change of a job's progress bar (aria-valuenow) or status (data-status) with the
# wall-clock time of the change (performance.timeOrigin + performance.now(), comparable with the
# worker's clock). Swaps replace whole elements, so it rereads every bar on any change.
OBSERVER_JS = """
(() => {
  if (window.__progress) return;
  window.__progress = [];
  window.__noReload = true;
  const last = {};
  const scan = () => {
    const t = performance.timeOrigin + performance.now();
    for (const bar of document.querySelectorAll('[data-job-id] [role="progressbar"]')) {
      const holder = bar.closest('[data-job-id]');
      const key = holder.id || holder.dataset.jobId;
      const value = bar.getAttribute('aria-valuenow');
      const state = value + ' ' + holder.dataset.status;
      if (last[key] !== state) {
        last[key] = state;
        window.__progress.push(
          {t: t, job: Number(holder.dataset.jobId), value: Number(value),
           status: holder.dataset.status, el: holder.id});
      }
    }
  };
  new MutationObserver(scan).observe(
    document.body, {subtree: true, childList: true, attributes: true,
                    attributeFilter: ['aria-valuenow', 'data-status']});
  scan();
})
"""
# For Page.add_init_script: installs the observer on every page load.
OBSERVER_INIT_JS = f"document.addEventListener('DOMContentLoaded', {OBSERVER_JS.strip()});"


def installer_running() -> bool:
    """Whether apt or dpkg is running (Chromium may be on its way)."""
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if comm.read_text().strip() in INSTALLERS:
                return True
    return False


def wait_for_chromium(timeout: float = 300.0) -> str | None:
    """Chromium's path; waits while a package install is under way. None if it is missing."""
    deadline = time.monotonic() + timeout
    while not CHROMIUM.exists():
        if time.monotonic() > deadline or not installer_running():
            return None
        time.sleep(2)
    # The binary lands before dpkg finishes configuring the package.
    while installer_running() and time.monotonic() < deadline:
        time.sleep(1)
    return str(CHROMIUM)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Stack:
    """daphne and a worker, with their logs."""

    base_url: str
    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    port: int = 0
    env: dict[str, str] = field(default_factory=dict)
    startup_timeout: float = 30.0

    def start_daphne(self) -> None:
        """Start daphne on the stack's port (again, after kill_daphne)."""
        argv = [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(self.port)]
        name = "daphne" if "daphne" not in self.processes else f"daphne-{len(self.processes)}"
        self.processes[name] = daphne = _spawn(
            name, [*argv, "reindexer.asgi:application"], self.env, self.log_dir
        )
        try:
            _wait_for_port(self.port, daphne, self.startup_timeout)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{self.logs()}") from None

    def kill_daphne(self) -> None:
        """SIGKILL every daphne of the stack: its sockets drop, nothing is cleaned up."""
        for name, process in self.processes.items():
            if name.startswith("daphne") and process.poll() is None:
                process.kill()
                process.wait(timeout=10)

    def logs(self) -> str:
        parts = []
        for name in self.processes:
            path = self.log_dir / f"{name}.log"
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"--- {name} (last 3000 chars) ---\n{text[-3000:]}")
        return "\n".join(parts)


def _spawn(
    name: str, argv: list[str], env: dict[str, str], log_dir: Path
) -> subprocess.Popen[bytes]:
    log = (log_dir / f"{name}.log").open("wb")
    try:
        return subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()


def _stop(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"daphne did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


@contextlib.contextmanager
def running_stack(
    env: dict[str, str], log_dir: Path, *, worker: bool = True, startup_timeout: float = 30.0
) -> Iterator[Stack]:
    """daphne on a free port of 127.0.0.1 plus `reindex_worker`; both stopped on the way out."""
    port = free_port()
    env = {
        **env_without(env, "DJANGO_ALLOW_ASYNC_UNSAFE"),  # the servers must not need it
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
    }
    stack = Stack(
        base_url=f"http://127.0.0.1:{port}",
        log_dir=log_dir,
        port=port,
        env=env,
        startup_timeout=startup_timeout,
    )
    try:
        if worker:
            stack.processes["worker"] = _spawn(
                "worker",
                [sys.executable, str(REPO_ROOT / "manage.py"), "reindex_worker"],
                env,
                log_dir,
            )
        stack.start_daphne()
        yield stack
    finally:
        for name, process in reversed(stack.processes.items()):
            _stop(process, timeout=15 if name == "worker" else 10)


def launch_chromium(playwright: Playwright) -> Browser:
    """Debian's Chromium (Playwright cannot download its own here)."""
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
    )


def env_without(env: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in names}


class RedisServer:
    """A redis-server of a test's own, on its own port of 127.0.0.1, to stop and start again."""

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.port = free_port() if port is None else port
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> None:
        """Start it (no persistence: a restart forgets every key) and wait for PONG."""
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        self.process = _spawn(f"redis-{self.port}", argv, dict(os.environ), self.log_dir)
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not answer PING")
            time.sleep(0.05)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            _stop(process, timeout=10)

    def answers(self) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn,
        ):
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
        return False


@contextlib.contextmanager
def own_redis(log_dir: Path) -> Iterator[RedisServer]:
    """A started RedisServer, stopped on the way out whatever happened."""
    server = RedisServer(log_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
