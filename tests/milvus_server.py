"""A real Milvus for the tests: `milvus-lite server --data-dir ...` on 127.0.0.1.

Used by the store contract suite, the milvus job tests, the search tests and the bench. The
server speaks the same gRPC API as a Milvus cluster; only one process may open a data dir, so
every client (test process, worker subprocesses) goes through this server.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

# The venv's console script, beside the interpreter running the tests.
MILVUS_LITE = Path(sys.executable).parent / "milvus-lite"
START_SECONDS = 60.0
START_ATTEMPTS = 3
STOP_SECONDS = 15.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: SIGTERM when the test process dies, so no server outlives a killed run."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


class MilvusServer:
    """A server in its own folder; `url` is what REINDEXER_MILVUS_URI takes."""

    url: str

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data_dir = folder / "data"
        self.log = folder / "milvus-lite.log"
        folder.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._start()

    def _start(self) -> None:
        if not MILVUS_LITE.exists():
            pytest.fail(f"cannot start Milvus: {MILVUS_LITE} is missing (pip install milvus-lite)")
        argv = [str(MILVUS_LITE), "server", "--data-dir", str(self.data_dir)]
        argv += ["--host", "127.0.0.1", "--port", str(self.port)]
        for attempt in range(1, START_ATTEMPTS + 1):
            with self.log.open("ab") as log:
                self._proc = subprocess.Popen(
                    argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
                )
            if self._wait_ready(last_attempt=attempt == START_ATTEMPTS):
                return
            # milvus-lite 3.2 sometimes aborts as it starts while clients reconnect (gRPC
            # "epoll_wait error: Bad file descriptor", SIGABRT, about 1 start in 8 here): the
            # server binary's crash, not the store's; start it again on the same data.
            warnings.warn(f"milvus-lite aborted at start (attempt {attempt}); again", stacklevel=2)

    def _wait_ready(self, *, last_attempt: bool) -> bool:
        """Until the server answers a real call (list_collections), or fail naming why.

        False when it aborted (SIGABRT) and another attempt is left."""
        # Imported here: heavy, so only the tests that use Milvus pay for it.
        from pymilvus import MilvusClient  # type: ignore[import-untyped]

        from reindexer.stores.milvus import GRPC_OPTIONS

        assert self._proc is not None
        deadline = time.monotonic() + START_SECONDS
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                if self._proc.returncode == -signal.SIGABRT and not last_attempt:
                    return False
                pytest.fail(
                    f"milvus-lite server exited with code {self._proc.returncode} on port "
                    f"{self.port}; its log ends:\n{_tail(self.log)}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                client = MilvusClient(uri=self.url, timeout=5, grpc_options=GRPC_OPTIONS)
                try:
                    client.list_collections()
                finally:
                    client.close()
                return True
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
                last = f"{type(exc).__name__}: {exc}"
                time.sleep(0.1)
        self.stop()
        pytest.fail(
            f"milvus-lite server on port {self.port} did not answer within {START_SECONDS:g}s"
            f" ({last}); its log ends:\n{_tail(self.log)}"
        )

    @property
    def pid(self) -> int:
        """The running server's process id (for tests that pause it with SIGSTOP)."""
        assert self._proc is not None, "the Milvus server is stopped"
        return self._proc.pid

    def restart(self) -> None:
        """Stop the server and start it again on the same folder and port (data kept)."""
        self.stop()
        self._start()

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=STOP_SECONDS)


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusServer]:
    server = MilvusServer(tmp_path_factory.mktemp("milvus"))
    try:
        yield server
    finally:
        server.stop()
