"""A real HTTP server on 127.0.0.1 that receives webhooks: it records each request and answers
from a script (codes, or a sleep), then 200."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float  # monotonic


@dataclass
class HookServer:
    """`script` holds the answers to the next requests in order: an HTTP code,
    ("sleep", seconds) to answer 200 only after that long, or ("hold", seconds) to answer 200
    once `release()` is called (at most that long): `holding` is set while one is held, so a
    test can act while a request is known to be in flight. Past it, every answer is 200."""

    host: str = "127.0.0.1"
    port: int = 0
    script: list[int | tuple[str, float]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    holding: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str = "/hook") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def next_answer(self) -> int | tuple[str, float]:
        with self.lock:
            return self.script.pop(0) if self.script else 200

    def record(self, request: Received) -> None:
        with self.lock:
            self.received.append(request)

    def release(self) -> None:
        """Answer the held requests (and any later "hold") at once."""
        self.released.set()

    def requests(self) -> list[Received]:
        with self.lock:
            return list(self.received)


def _handler(server: HookServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server protocol
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            server.record(
                Received(
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=json.loads(raw or b"{}"),
                    at=time.monotonic(),
                )
            )
            answer = server.next_answer()
            code = 200
            if isinstance(answer, tuple) and answer[0] == "hold":
                server.holding.set()
                server.released.wait(answer[1])
                server.holding.clear()
            elif isinstance(answer, tuple):
                time.sleep(answer[1])
            else:
                code = answer
            self.send_response(code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

    return Handler


@contextmanager
def hook_server(*script: int | tuple[str, float]) -> Iterator[HookServer]:
    server = HookServer(script=list(script))
    httpd = ThreadingHTTPServer((server.host, 0), _handler(server))
    httpd.daemon_threads = True
    server.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
