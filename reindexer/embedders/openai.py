"""`openai:MODEL`: any server that speaks the OpenAI embeddings protocol (POST {base}/embeddings).

OpenAI itself, Text Embeddings Inference, vLLM, Ollama, LiteLLM and Infinity all do. The server
and its key come from the settings (REINDEXER_OPENAI_BASE_URL, REINDEXER_OPENAI_API_KEY); a spec
names only the model. Failures are raised as the errors the engine classifies: 429 and 5xx and an
unreachable server are transient (429 carries its Retry-After), a rejected text is the document's
fault, and a refused key, an unknown model or vectors of other dimensions fail the job.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Self

import numpy as np
import requests

from reindexer import conf
from reindexer.backends import ParsedSpec
from reindexer.embedders.base import Vectors
from reindexer.errors import (
    AUTH,
    BAD_RESPONSE,
    DIMENSIONS,
    UNKNOWN_MODEL,
    BackendFailed,
    PermanentError,
    RateLimited,
    SpecError,
    TransientError,
    is_transient,
    retry_after,
)

BASE_URL_SETTING = "REINDEXER_OPENAI_BASE_URL"
# OpenAI's own limit of inputs per request; a server with a lower one answers 413 and we halve.
DEFAULT_MAX_INPUTS = 2048
# A Retry-After beyond this is clipped: the job would rather retry (and count) than look stuck.
MAX_RETRY_AFTER_SECONDS = 60.0
REQUEST_TIMEOUT_SECONDS = 60.0
# The dimensions are needed to open the store, before any batch: that probe retries on its own.
PROBE_ATTEMPTS = 5
PROBE_TEXT = "dimensions"
_BODY_EXCERPT = 300
_BATCH_LIMIT = re.compile(r"batch size|too many inputs", re.IGNORECASE)


def openai_configured() -> bool:
    return conf.get().openai_base_url is not None


@dataclass(frozen=True, slots=True)
class OpenAIOptions:
    """`openai:MODEL`; the server must be configured when the job is created."""

    model: str

    @classmethod
    def from_spec(cls, spec: ParsedSpec) -> Self:
        model = spec.arg.strip()
        if not model:
            raise SpecError("openai embedder needs a model: openai:MODEL", field="embedder")
        if not conf.get().openai_base_url:
            raise SpecError(
                f"openai embedder needs the setting {BASE_URL_SETTING} (the server's base URL,"
                " e.g. https://api.openai.com/v1)",
                field="embedder",
            )
        return cls(model)


class InputLimitExceeded(Exception):
    """The server takes fewer inputs per request than were sent (HTTP 413)."""


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: a number of seconds or an HTTP date; None when absent or garbled."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _excerpt(response: requests.Response) -> str:
    """The server's error message, short: the `error.message` of a JSON body, else its text."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    message: Any = None
    if isinstance(body, dict):
        error = body.get("error")
        message = error.get("message") if isinstance(error, dict) else error
    text = str(message) if message else response.text
    return " ".join(text.split())[:_BODY_EXCERPT]


class OpenAIEmbedder:
    """Embeds through POST {base_url}/embeddings; learns its dimensions from the first answer."""

    releases_gil = True  # it waits on a socket

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key: str | None = None,
        *,
        max_inputs: int = DEFAULT_MAX_INPUTS,
        timeout: float = REQUEST_TIMEOUT_SECONDS,
        probe_backoff_seconds: float = 0.5,
    ) -> None:
        self.name = f"openai:{model}"
        self.model = model
        self.url = f"{base_url.rstrip('/')}/embeddings"
        self.max_inputs = max_inputs
        self._timeout = timeout
        self._probe_backoff = probe_backoff_seconds
        self._session = requests.Session()
        self._session.headers["Content-Type"] = "application/json"
        if api_key:
            self._session.headers["Authorization"] = f"Bearer {api_key}"
        self._dimensions: int | None = None
        self.retries = 0

    def __repr__(self) -> str:
        # Never the session's headers: they hold the key.
        return f"OpenAIEmbedder(model={self.model!r}, url={self.url!r})"

    @property
    def dimensions(self) -> int:
        if self._dimensions is None:
            self._probe()
        assert self._dimensions is not None  # noqa: S101 - _probe sets it or raises
        return self._dimensions

    @dimensions.setter
    def dimensions(self, expected: int) -> None:
        """Pin the width: an answer of another width then fails the job (cause DIMENSIONS)."""
        self._dimensions = expected

    def _probe(self) -> None:
        """One small request, retried while transient, so the store can open with the dimensions."""
        for attempt in range(1, PROBE_ATTEMPTS + 1):
            try:
                self.embed([PROBE_TEXT])
                return
            except Exception as exc:
                if not is_transient(exc) or attempt == PROBE_ATTEMPTS:
                    raise
                self.retries += 1
                backoff = self._probe_backoff * 2.0 ** (attempt - 1)
                time.sleep(max(backoff, retry_after(exc)))

    def embed(self, texts: Sequence[str]) -> Vectors:
        rows: list[Vectors] = []
        start = 0
        while start < len(texts):
            chunk = texts[start : start + self.max_inputs]
            try:
                rows.append(self._request(chunk))
            except InputLimitExceeded:
                if len(chunk) == 1:
                    raise PermanentError(
                        f"embedding server at {self.url} refused one text as too large (413)"
                    ) from None
                # Remembered for the rest of the job: the next batches are split from the start.
                self.max_inputs = max(1, len(chunk) // 2)
                continue
            start += len(chunk)
        if not rows:
            return np.zeros((0, self._dimensions or 0), dtype=np.float32)
        return np.concatenate(rows) if len(rows) > 1 else rows[0]

    def _request(self, texts: Sequence[str]) -> Vectors:
        payload = {"model": self.model, "input": list(texts), "encoding_format": "float"}
        try:
            response = self._session.post(self.url, json=payload, timeout=self._timeout)
        except requests.RequestException as exc:
            # Refused, reset, timed out, DNS: the server may come back; the writer retries.
            raise TransientError(
                f"embedding server at {self.url} unreachable: {type(exc).__name__}: {exc}"
            ) from exc
        self._raise_for_status(response, len(texts))
        return self._vectors(response, len(texts))

    def _raise_for_status(self, response: requests.Response, sent: int) -> None:
        status = response.status_code
        if status < 400:
            return
        where = f"embedding server at {self.url} answered {status}"
        if status == 429:
            wait = parse_retry_after(response.headers.get("Retry-After"))
            asked = f", retry after {wait:g}s" if wait is not None else ""
            raise RateLimited(f"{where} (rate limited{asked})", retry_after=wait)
        detail = _excerpt(response)
        # TEI answers 413; others say so in a 400/422 ("batch size 64 > maximum allowed ...").
        if status == 413 or (status in (400, 422) and sent > 1 and _BATCH_LIMIT.search(detail)):
            raise InputLimitExceeded(f"{where} for {sent} inputs: {detail}")
        if status >= 500 or status == 408:
            raise TransientError(f"{where}: {detail}")
        if status in (401, 403):
            raise BackendFailed(f"{where}: check REINDEXER_OPENAI_API_KEY: {detail}", cause=AUTH)
        if status == 404:
            raise BackendFailed(
                f"{where}: no model {self.model!r} or no embeddings endpoint there: {detail}",
                cause=UNKNOWN_MODEL,
            )
        # 400, 422...: the server refused these texts (too long, empty); bisection finds which.
        raise PermanentError(f"{where}: {detail}")

    def _vectors(self, response: requests.Response, sent: int) -> Vectors:
        try:
            data = response.json()["data"]
            ordered = sorted(data, key=lambda item: int(item["index"]))
            vectors = np.asarray([item["embedding"] for item in ordered], dtype=np.float32)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise BackendFailed(
                f"embedding server at {self.url} sent no embeddings list: {type(exc).__name__}",
                cause=BAD_RESPONSE,
            ) from exc
        if vectors.ndim != 2 or len(vectors) != sent:
            raise BackendFailed(
                f"embedding server at {self.url} sent {len(vectors)} embeddings for {sent} texts",
                cause=BAD_RESPONSE,
            )
        width = int(vectors.shape[1])
        if self._dimensions is None:
            self._dimensions = width
        elif width != self._dimensions:
            raise BackendFailed(
                f"model {self.model!r} sent {width} dimensions after {self._dimensions}",
                cause=DIMENSIONS,
            )
        # Not every server normalises (the protocol does not say); the Embedder contract does.
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        result: Vectors = vectors / norms
        return result

    def close(self) -> None:
        self._session.close()


def open_openai(options: OpenAIOptions) -> OpenAIEmbedder:
    settings = conf.get()
    if not settings.openai_base_url:  # checked at creation; the worker's settings may differ
        raise SpecError(f"openai embedder needs the setting {BASE_URL_SETTING}")
    return OpenAIEmbedder(
        options.model,
        settings.openai_base_url,
        settings.openai_api_key,
        probe_backoff_seconds=settings.retry_backoff_seconds,
    )
