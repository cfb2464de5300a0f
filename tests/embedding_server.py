"""A real HTTP server on 127.0.0.1 that speaks the OpenAI embeddings protocol, for tests.

POST /v1/embeddings with {"model", "input": [texts]} answers {"data": [{"index", "embedding"}]},
computed by the hashing embedder. A `schedule` of statuses, cycled one per request, makes it
answer 429 (with Retry-After) or 503 on cue; `input_limit` makes it answer 413 (or `limit_status`)
to larger requests, as Text Embeddings Inference does; `api_key` makes it demand
`Authorization: Bearer KEY`; `go_away_after=N` makes it stop listening after N embeddings
answers, so that later connections are refused, as from a server that died.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from reindexer.embedders.hashing import HashingEmbedder

OK = 200


@dataclass
class Served:
    """What the server saw: the status of each answer, and the size of each request it took."""

    statuses: list[int] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)

    def count(self, status: int) -> int:
        return self.statuses.count(status)


class EmbeddingServer:
    def __init__(
        self,
        *,
        schedule: Sequence[int] = (OK,),
        retry_after: str = "1",
        input_limit: int | None = None,
        dimensions: int = 384,
        api_key: str | None = None,
        model: str = "hash-384",
        go_away_after: int | None = None,
        limit_status: int = 413,
    ) -> None:
        self.served = Served()
        self._statuses = itertools.cycle(schedule)
        self._retry_after = retry_after
        self._input_limit = input_limit
        self._embedder = HashingEmbedder(dimensions)
        self._api_key = api_key
        self._model = model
        self._go_away_after = go_away_after
        self._limit_status = limit_status
        self.gone = threading.Event()
        self._lock = threading.Lock()
        self._stop_lock = threading.Lock()
        self._stopped = False
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        """What REINDEXER_OPENAI_BASE_URL is set to, as for OpenAI: the URL up to /v1."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def start(self) -> EmbeddingServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening; idempotent (a server that went away is stopped again at the end)."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def answer(
        self, headers: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, dict[str, str], Any]:
        """The status, extra headers and JSON body for one request (serialised by the lock)."""
        with self._lock:
            self.served.authorizations.append(headers.get("authorization", ""))
            if (
                self._api_key is not None
                and headers.get("authorization") != f"Bearer {self._api_key}"
            ):
                return self._record(401, {}, {"error": {"message": "Incorrect API key provided"}})
            if body.get("model") != self._model:
                return self._record(
                    404, {}, {"error": {"message": f"model {body.get('model')!r} not found"}}
                )
            texts = body.get("input")
            if isinstance(texts, str):
                texts = [texts]
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                return self._record(422, {}, {"error": {"message": "input must be strings"}})
            if self._input_limit is not None and len(texts) > self._input_limit:
                message = (
                    f"batch size {len(texts)} > maximum allowed batch size {self._input_limit}"
                )
                return self._record(
                    self._limit_status, {}, {"error": message, "error_type": "Validation"}
                )
            status = next(self._statuses)
            if status == 429:
                return self._record(
                    429,
                    {"Retry-After": self._retry_after},
                    {"error": {"message": "Rate limit reached"}},
                )
            if status != OK:
                return self._record(status, {}, {"error": {"message": "model overloaded"}})
            self.served.batch_sizes.append(len(texts))
            if (
                self._go_away_after is not None
                and len(self.served.batch_sizes) >= self._go_away_after
            ):
                self.gone.set()
            vectors = self._embedder.embed(texts)
            data = [
                {"object": "embedding", "index": i, "embedding": [float(x) for x in vector]}
                for i, vector in enumerate(vectors)
            ]
            usage = {"prompt_tokens": 0, "total_tokens": 0}
            return self._record(
                OK, {}, {"object": "list", "data": data, "model": self._model, "usage": usage}
            )

    def _record(
        self, status: int, headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        self.served.statuses.append(status)
        return status, headers, body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                if self.path != "/v1/embeddings":
                    self._send(404, {}, {"error": {"message": f"no route {self.path}"}})
                    return
                length = int(self.headers.get("Content-Length", "0"))
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self._send(400, {}, {"error": {"message": "body is not JSON"}})
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                self._send(*server.answer(headers, body if isinstance(body, dict) else {}))

            def _send(self, status: int, headers: dict[str, str], body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                if server.gone.is_set():
                    # Close the kept-alive connection too, so the client's next request is refused.
                    self.send_header("Connection", "close")
                    self.close_connection = True
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)
                if server.gone.is_set():
                    threading.Thread(target=server.stop, daemon=True).start()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
                """Quiet: the test reads `served`, not a log."""

        return Handler


@contextmanager
def embedding_server(**options: Any) -> Iterator[EmbeddingServer]:
    """An EmbeddingServer running for the duration of the block."""
    server = EmbeddingServer(**options).start()
    try:
        yield server
    finally:
        server.stop()
