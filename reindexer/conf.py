"""Typed access to the REINDEXER_* settings, read from the environment once."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

TRACE_ID_PLACEHOLDER = "{trace_id}"
# Where `runserver` and the Procfile serve the dashboard, for alert links when nothing says else.
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"


def _positive_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {raw!r}")
    return value


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {raw!r}")
    return value


def _choice(name: str, choices: tuple[str, ...], default: str) -> str:
    raw = os.environ.get(name, "").strip().lower() or default
    if raw not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _flag(*names: str) -> bool:
    """Whether any of these variables is set to a true value (1, true, yes, on)."""
    return any(os.environ.get(n, "").lower() in {"1", "true", "yes", "on"} for n in names)


def _meta_key(name: str, raw: str) -> str | None:
    """An HTTP header name as Django's request.META spells it ("X-Real-IP" -> "HTTP_X_REAL_IP")."""
    header = raw.strip().upper().replace("-", "_")
    if not header:
        return None
    if not header.replace("_", "").isalnum():
        raise ValueError(f"{name} must be a header name such as X-Real-IP, got {raw!r}")
    return header if header.startswith("HTTP_") else f"HTTP_{header}"


def _trace_url(name: str) -> str | None:
    """A URL template with {trace_id} (a Jaeger or Tempo page), checked at start."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    if TRACE_ID_PLACEHOLDER not in raw:
        raise ValueError(f"{name} must contain {TRACE_ID_PLACEHOLDER}, got {raw!r}")
    parts = urlsplit(raw.replace(TRACE_ID_PLACEHOLDER, "0"))
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError(f"{name} must be an http(s) URL, got {raw!r}")
    return raw


def _http_url(name: str) -> str | None:
    """An http(s) base URL such as http://127.0.0.1:8080/v1, checked at start; None if unset."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError(f"{name} must be an http(s) URL, got {raw!r}")
    return raw.rstrip("/")


def _port(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ValueError(f"{name} must be a port from 1 to 65535, got {raw!r}")
    return int(raw)


def _webhook_urls(name: str) -> tuple[str, ...]:
    """http(s) URLs separated by spaces, each checked at start (the value is not shown: a URL
    may hold a token)."""
    urls = tuple(os.environ.get(name, "").split())
    for index, url in enumerate(urls, start=1):
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError(f"{name}: URL {index} must be an http(s) URL")
    return urls


def _pgvector_url() -> str | None:
    """REINDEXER_PGVECTOR_URL, else DATABASE_URL when the job database is PostgreSQL."""
    explicit = os.environ.get("REINDEXER_PGVECTOR_URL", "").strip()
    if explicit:
        return explicit
    job_database = os.environ.get("DATABASE_URL", "").strip()
    if urlsplit(job_database).scheme in {"postgres", "postgresql", "pgsql"}:
        return job_database
    return None


@dataclass(frozen=True)
class ReindexerSettings:
    data_dir: Path
    source_roots: tuple[Path, ...]
    lease_seconds: float
    heartbeat_seconds: float
    retry_backoff_seconds: float = 0.1
    redis_url: str | None = None
    # Login throttling (django-axes): failures before a lock-out, and how long it lasts.
    login_failure_limit: int = 5
    login_cooloff_minutes: int = 15
    # A header that a trusted reverse proxy sets to the client's address; None: REMOTE_ADDR.
    client_ip_header: str | None = None
    # Behind TLS: secure cookies, HSTS, the SSL redirect and the proxy's protocol header.
    https: bool = False
    # A trace viewer's URL with {trace_id}: the job page links its trace there; None: plain text.
    trace_url: str | None = None
    # The database that `sql:` sources read (postgres:// or sqlite:///); None: `sql:` is refused.
    # Out of the repr: the URL may hold a password.
    sql_source_url: str | None = field(default=None, repr=False)
    # An OpenAI-compatible embeddings server (`openai:MODEL`): base URL and key. The key is a
    # secret: never in a repr, a spec, an event or an error.
    openai_base_url: str | None = None
    openai_api_key: str | None = field(default=None, repr=False)
    # The PostgreSQL database of the `pgvector` store: REINDEXER_PGVECTOR_URL, else the job
    # database when that is PostgreSQL; None: `pgvector` is refused. May hold a password.
    pgvector_url: str | None = field(default=None, repr=False)
    # The Milvus server of the `milvus` store (http://host:19530); None: `milvus` is refused.
    milvus_uri: str | None = field(default=None, repr=False)
    # Whether a job reads and embeds its next batch while the last one is written: "auto" where
    # that pays (an embedder or a store that releases the GIL), "on", or "off".
    pipeline: str = "auto"
    # How often an idle worker looks for work when nothing wakes it (LISTEN/NOTIFY on
    # PostgreSQL wakes it at once; SQLite has no such thing, so it polls at this pace).
    poll_seconds: float = 0.25
    # The port a worker serves its own Prometheus metrics on; None: it serves none.
    metrics_port: int | None = None
    # Webhooks that receive every job's alert events, besides those in the admin; a URL ending
    # in "#slack" gets Slack's format. URLs may carry tokens: out of the repr.
    webhook_urls: tuple[str, ...] = field(default=(), repr=False)
    # The dashboard's address as operators reach it, for the links in alerts (a webhook's
    # receiver is elsewhere: a relative link would lead nowhere).
    public_url: str = DEFAULT_PUBLIC_URL
    # Whether the web process sends alerts too (beside the workers): stalls of a job whose only
    # worker died, and a Swap clicked there, are reported without waiting for a worker.
    web_alerts: bool = True

    @classmethod
    def from_environ(cls) -> ReindexerSettings:
        data_dir = Path(os.environ.get("REINDEXER_DATA_DIR", "var")).resolve()
        roots_raw = os.environ.get("REINDEXER_SOURCE_ROOTS", "")
        roots = tuple(Path(p).resolve() for p in roots_raw.split(":") if p) or (data_dir,)
        lease = _positive_float("REINDEXER_LEASE_SECONDS", 30.0)
        heartbeat = _positive_float("REINDEXER_HEARTBEAT_SECONDS", 5.0)
        if heartbeat > lease / 2:
            # Otherwise one late beat makes a live job look stalled, and another worker takes it.
            raise ValueError(
                f"REINDEXER_HEARTBEAT_SECONDS ({heartbeat:g}) must be at most half of "
                f"REINDEXER_LEASE_SECONDS ({lease:g})"
            )
        return cls(
            data_dir=data_dir,
            source_roots=roots,
            lease_seconds=lease,
            heartbeat_seconds=heartbeat,
            retry_backoff_seconds=_positive_float("REINDEXER_RETRY_BACKOFF_SECONDS", 0.1),
            redis_url=os.environ.get("REDIS_URL") or None,
            login_failure_limit=_positive_int("REINDEXER_LOGIN_FAILURE_LIMIT", 5),
            login_cooloff_minutes=_positive_int("REINDEXER_LOGIN_COOLOFF_MINUTES", 15),
            client_ip_header=_meta_key(
                "REINDEXER_CLIENT_IP_HEADER", os.environ.get("REINDEXER_CLIENT_IP_HEADER", "")
            ),
            https=_flag("REINDEXER_HTTPS", "DJANGO_SECURE"),
            trace_url=_trace_url("REINDEXER_TRACE_URL"),
            sql_source_url=os.environ.get("REINDEXER_SQL_SOURCE_URL", "").strip() or None,
            openai_base_url=_http_url("REINDEXER_OPENAI_BASE_URL"),
            openai_api_key=os.environ.get("REINDEXER_OPENAI_API_KEY") or None,
            pgvector_url=_pgvector_url(),
            milvus_uri=os.environ.get("REINDEXER_MILVUS_URI", "").strip() or None,
            pipeline=_choice("REINDEXER_PIPELINE", ("auto", "on", "off"), "auto"),
            poll_seconds=_positive_float("REINDEXER_POLL_SECONDS", 0.25),
            metrics_port=_port("REINDEXER_METRICS_PORT"),
            webhook_urls=_webhook_urls("REINDEXER_WEBHOOK_URLS"),
            public_url=_http_url("REINDEXER_PUBLIC_URL") or DEFAULT_PUBLIC_URL,
            web_alerts=_choice("REINDEXER_WEB_ALERTS", ("on", "off"), "on") == "on",
        )


def get() -> ReindexerSettings:
    """The settings in force, as Django's settings module resolved them."""
    from django.conf import settings

    value: ReindexerSettings = settings.REINDEXER
    return value
